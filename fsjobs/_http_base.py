"""
What the HTTP modules share: the app's settings, JSON responses, and how an
fsjobs error becomes an HTTP status.

Every error the API returns is JSON ``{"error": code, "message": text}``;
routes raise `Problem` and the app's handler writes it.
"""

from __future__ import annotations

import typing

import attrs
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from . import _ids
from ._text import printable
from .errors import (
    FormatError,
    InvalidJob,
    JobNotFound,
    StoreError,
    StoreFull,
    UniqueKeyBusy,
    UniqueKeyConflict,
    UnknownTask,
)
from .queue import Queue

#: the default cap on a request body other than uploaded files (kwargs are at most 1 MiB)
MAX_BODY = 2 * 1024 * 1024
#: how long a busy unique key asks the client to wait before it tries again, in seconds
BUSY_RETRY_AFTER = 1


@attrs.frozen
class Settings:
    """One app's configuration; nothing here touches the disk."""

    queue: Queue
    token: str | None = None
    #: cap on a JSON body, and on the non-file fields of a multipart body (413 past it)
    max_body: int = MAX_BODY
    #: cap on each uploaded file, or None for none (413 past it)
    max_upload: int | None = None
    #: how long a dashboard sign-in lasts, in seconds
    session_seconds: int = 12 * 3600


class Problem(Exception):
    """An error answer: the status, a short code and a message, as JSON."""

    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        headers: typing.Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.headers = dict(headers or {})

    def response(self) -> Response:
        return problem_response(self.status, self.error, self.message, self.headers)


def problem_response(
    status: int, error: str, message: str, headers: typing.Mapping[str, str] | None = None
) -> JSONResponse:
    """``{"error": error, "message": message}`` with `status`."""
    return JSONResponse({"error": error, "message": message}, status, headers=dict(headers or {}))


def problem_of(exc: BaseException) -> Problem | None:
    """The HTTP answer to an fsjobs error raised by a queue operation; None if it has none."""
    text = printable(exc)
    if isinstance(exc, Problem):
        return exc
    if isinstance(exc, JobNotFound | UnknownTask):
        return Problem(404, "not_found", text)
    if isinstance(exc, UniqueKeyBusy):
        return Problem(503, "busy", text, {"Retry-After": str(BUSY_RETRY_AFTER)})
    if isinstance(exc, UniqueKeyConflict):
        return Problem(409, "conflict", text)
    if isinstance(exc, StoreFull):
        return Problem(507, "store_full", text)
    if isinstance(exc, FormatError):
        return Problem(503, "format", text)
    if isinstance(exc, StoreError):
        return Problem(500, "store_error", text)
    if isinstance(exc, InvalidJob | ValueError | TypeError):
        return Problem(422, "invalid", text)
    return None


def job_id_of(request: Request) -> str:
    """The ``{id}`` of the path: a well-formed job id, else 404 (no such job can exist)."""
    job_id = request.path_params["id"]
    if not isinstance(job_id, str) or not _ids.is_job_id(job_id):
        raise Problem(404, "not_found", f"no job {printable(job_id)!r}")
    return job_id


def root_path(request: Request) -> str:
    """Where the app is mounted (``""`` at the top): every link and redirect starts with it."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def route_path(scope: typing.Mapping[str, typing.Any]) -> str:
    """The request's path inside the app, without the prefix it is mounted at."""
    path = str(scope.get("path", ""))
    root = str(scope.get("root_path", "")).rstrip("/")
    if root and (path == root or path.startswith(root + "/")):
        return path[len(root) :] or "/"
    return path
