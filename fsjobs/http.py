"""
The HTTP API and the dashboard, as an ASGI app (the ``fsjobs[http]`` extra).

::

    from fsjobs.http import create_app

    app = create_app(queue, token="s3cret")     # mount it in Starlette or FastAPI
    # or from a shell:  fsjobs serve myapp.tasks --root /srv/jobs --token-file token.txt

Routes (JSON in and out; every error is ``{"error": code, "message": text}``):

==========================================  ===================================================
``POST /jobs/{task}``                       submit: JSON options, or multipart with uploads;
                                            201 ``{"job_id", "status"}`` (200: a unique key
                                            named an existing job)
``GET /jobs/{id}``                          the job's state, as ``fsjobs show --json``
``GET /jobs/{id}/results``                  a final job's status, result, error and outputs;
                                            409 before
``GET /jobs/{id}/outputs/{name}``           an output file, streamed
``GET /jobs/{id}/events``                   Server-Sent Events: ``event: state`` on connect
                                            and on each change, until a final state
``POST /jobs/{id}/cancel|retry|hold|release``  as the Queue methods; 200 with the state after
``GET /jobs?status=&queue=&limit=&cursor=``  a page of jobs, newest first, and ``next_cursor``
``GET /queues``, ``GET /stats``             counts per queue and status, pauses and caps
``POST /queues/{q}/pause|resume``           pause or resume a queue; 200 with its pause and caps
``GET /metrics``, ``GET /health``           Prometheus text; liveness
``/``, ``/ui/...``, ``/login``              the dashboard and its sign-in form
==========================================  ===================================================

Built on Starlette: the small ASGI toolkit FastAPI itself is made of, so the app
mounts natively in either; it brings routing, streaming responses and a test
client, and needs only anyio. The app reads nothing from the disk before its
first request, so it may be mounted where lifespan events never arrive.
"""

from __future__ import annotations

import typing

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ._http_api import Api
from ._http_auth import AuthMiddleware, login_routes
from ._http_base import MAX_BODY, Problem, Settings, problem_of, problem_response
from ._http_pages import Pages
from ._text import printable
from .errors import FsJobsError
from .queue import Queue

__all__ = ["create_app"]


def create_app(
    queue: Queue,
    *,
    token: str | None = None,
    max_body: int = MAX_BODY,
    max_upload: int | None = None,
    session_seconds: int = 12 * 3600,
) -> Starlette:
    """
    The HTTP API and dashboard of `queue`'s root, as an ASGI app.

    It serves the tasks registered (``@queue.task``) on a Queue of the same root;
    a job goes to the body's ``queue``, else to its task's queue. With `token`,
    every route but ``/login`` and ``/health`` needs ``Authorization: Bearer
    <token>`` or the dashboard's session cookie (valid `session_seconds`).
    `max_body` caps a JSON body and the non-file fields of a multipart one (413
    past it); `max_upload` caps each uploaded file (None: no cap).
    """
    if token is not None and not token.strip():
        raise ValueError("the token must not be empty")
    if max_body < 1 or (max_upload is not None and max_upload < 0):
        raise ValueError("max_body must be positive, max_upload positive or None")
    settings = Settings(
        queue=queue,
        token=token,
        max_body=max_body,
        max_upload=max_upload,
        session_seconds=session_seconds,
    )
    api, pages, login = Api(settings), Pages(settings), login_routes(settings)
    routes = [
        Route("/health", api.health, methods=["GET"]),
        Route("/login", login["show"], methods=["GET"]),
        Route("/login", login["sign_in"], methods=["POST"]),
        Route("/logout", login["sign_out"], methods=["POST"]),
        Route("/jobs", api.list, methods=["GET"]),
        Route("/jobs/{task}", api.submit, methods=["POST"]),
        Route("/jobs/{id}", api.get, methods=["GET"]),
        Route("/jobs/{id}/results", api.results, methods=["GET"]),
        Route("/jobs/{id}/outputs/{name}", api.output, methods=["GET"]),
        Route("/jobs/{id}/events", api.events, methods=["GET"]),
        Route("/jobs/{id}/logs", api.logs, methods=["GET"]),
        Route("/jobs/{id}/{action}", api.act, methods=["POST"]),
        Route("/queues", api.queues, methods=["GET"]),
        Route("/queues/{queue}/{action}", api.queue_act, methods=["POST"]),
        Route("/stats", api.stats, methods=["GET"]),
        Route("/metrics", api.metrics, methods=["GET"]),
        Route("/", pages.overview, methods=["GET"]),
        Route("/ui/jobs", pages.jobs, methods=["GET"]),
        Route("/ui/jobs/{id}", pages.job, methods=["GET"]),
        Route("/ui/jobs/{id}/{action}", pages.action, methods=["POST"]),
        Route("/ui/queues/{queue}/{action}", pages.queue_action, methods=["POST"]),
    ]
    handlers: dict[typing.Any, typing.Any] = {
        Problem: _problem,
        FsJobsError: _fsjobs_error,
        HTTPException: _http_exception,
        Exception: _internal,
    }
    return Starlette(
        routes=routes,
        middleware=[Middleware(AuthMiddleware, settings=settings)],
        exception_handlers=handlers,
    )


async def _problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return exc.response()


async def _fsjobs_error(request: Request, exc: Exception) -> Response:
    problem = problem_of(exc)
    if problem is None:
        return await _internal(request, exc)
    return problem.response()


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return problem_response(exc.status_code, code, printable(exc.detail), exc.headers)


async def _internal(request: Request, exc: Exception) -> Response:
    return problem_response(500, "internal", "internal error: see the server's log")
