"""
The JSON routes of the HTTP API (DESIGN.md §9.5): submit, read, stream, act.

Each route is one or two queue operations; the store does the file work in
its I/O threads, and hands out descriptors that this module streams with
aiofiles (outputs here, uploads in `_http_body`).
"""

from __future__ import annotations

import datetime as dt
import os
import pathlib
import typing
from collections.abc import AsyncIterator

import aiofiles
from aiofiles.threadpool.binary import AsyncBufferedReader
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from . import _ids, _names, _stats, tasks
from ._http_base import Problem, Settings, job_id_of, problem_of
from ._http_body import OPTIONS, Multipart, read_json
from ._json import JSON, dumps
from ._text import printable
from ._wakeups import signals
from .errors import FsJobsError, InvalidJob, JobNotFound
from .model import Job, converter, state_json
from .states import JobState, JobStatus
from .store import UploadStage

#: bytes per read when streaming an output file
CHUNK = 256 * 1024
#: the most jobs one ``GET /jobs`` page holds
MAX_PAGE = 1000
#: the longest a cancel waits for a running job to stop, in seconds
MAX_CANCEL_WAIT = 60.0


def served_task(settings: Settings, name: str) -> tasks.Task[..., typing.Any]:
    """A registered task whose queue has this app's root; 404 for any other name."""
    task = tasks.find(name)
    if task is None or getattr(task.queue, "root", None) != settings.queue.root:
        raise Problem(404, "not_found", f"no task {printable(name)!r} is served here")
    return task


def build_job(
    task: tasks.Task[..., typing.Any], options: dict[str, JSON], uploads: dict[str, pathlib.Path]
) -> tuple[Job, str]:
    """The job a submission asks for, with the task's defaults, and the queue it goes to."""
    unknown = sorted(set(options) - OPTIONS)
    if unknown:
        raise Problem(422, "invalid", f"unknown options {unknown}: expected {sorted(OPTIONS)}")
    fields: dict[str, typing.Any] = dict(task.job_defaults)
    for key in ("priority", "max_attempts", "timeout", "unique_key"):
        if key in options:
            fields[key] = options[key]
    when = options.get("scheduled_at")
    if when is not None:
        if not isinstance(when, str):
            raise Problem(422, "invalid", "scheduled_at must be an ISO 8601 string")
        try:
            fields["scheduled_at"] = dt.datetime.fromisoformat(when)
        except ValueError as exc:
            raise Problem(422, "invalid", f"scheduled_at: {printable(exc)}") from exc
    kwargs = options.get("kwargs", {})
    if not isinstance(kwargs, dict):
        raise Problem(422, "invalid", "kwargs must be a JSON object")
    queue = options.get("queue") or getattr(task.queue, "name", "default")
    try:
        _names.check_name("queue", queue)
        job = Job(func=task.task_name, kwargs=kwargs, uploads=dict(uploads), **fields)
        task.check_kwargs(job.kwargs, uploads=job.uploads)
    except (InvalidJob, TypeError, ValueError) as exc:
        raise Problem(422, "invalid", printable(exc)) from exc
    assert isinstance(queue, str)
    return job, queue


class Api:
    """The JSON endpoints of one app."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.queue = settings.queue
        self.store = settings.queue.store

    # -- submit ----------------------------------------------------------------------------

    async def submit(self, request: Request) -> Response:
        """``POST /jobs/{task}``: 201: a new job; 200: a unique key named an existing one."""
        task = served_task(self.settings, request.path_params["task"])
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        stage: UploadStage | None = None
        try:
            if kind == "multipart/form-data":
                body = Multipart(request, self.settings)
                try:
                    await body.read()
                finally:
                    stage = body.stage
                options = body.options
            elif kind in ("application/json", ""):
                options = await read_json(request, self.settings)
            else:
                raise Problem(
                    415, "unsupported_media_type", "send application/json or multipart/form-data"
                )
            uploads = {}
            if stage is not None:  # where the files are now: the push moves them, not reads them
                folder = pathlib.Path(self.store.root, _names.TMP, stage.folder)
                uploads = {name: folder / name for name in stage.names}
            job, queue = build_job(task, options, uploads)
            published: list[str] = []
            try:
                (job_id,) = await self.queue.io(
                    self.store.push_many, [(job, queue)], published, [stage]
                )
            except FsJobsError as exc:
                problem = problem_of(exc)
                if problem is None:
                    raise
                raise problem from exc
        finally:
            if stage is not None:
                await self.queue.io(self.store.discard_uploads, stage)
        signals.pushed(self.queue.root)
        if job_id in published:
            now = self.queue.clock.now()
            ahead = job.scheduled_at is not None and job.scheduled_at > now
            status = JobStatus.SCHEDULED if ahead else JobStatus.PENDING
            return JSONResponse({"job_id": job_id, "status": status.value}, 201)
        state = await self.queue.get(job_id)
        return JSONResponse({"job_id": job_id, "status": state.status.value}, 200)

    # -- reading ---------------------------------------------------------------------------

    async def get(self, request: Request) -> Response:
        """``GET /jobs/{id}``: the job's state, as ``fsjobs show --json``."""
        state = await self.queue.get(job_id_of(request))
        return JSONResponse(state_json(state))

    async def results(self, request: Request) -> Response:
        """``GET /jobs/{id}/results``: the outcome of a final job; 409 before."""
        state = await self.queue.get(job_id_of(request))
        if not state.is_done:
            raise Problem(409, "not_final", f"job {state.id} is {state.status.value}")
        return JSONResponse(
            {
                "status": state.status.value,
                "result": state.result,
                "error": None if state.error is None else converter.unstructure(state.error),
                "outputs": list(state.outputs),
            }
        )

    async def output(self, request: Request) -> Response:
        """``GET /jobs/{id}/outputs/{name}``: the file, streamed; 404 if there is none."""
        job_id = job_id_of(request)
        name = request.path_params["name"]
        try:
            _names.check_name("output", name)
        except InvalidJob as exc:
            raise Problem(422, "invalid", printable(exc)) from exc
        try:
            fd = await self.queue.io(self.store.open_output, job_id, name)
        except FileNotFoundError as exc:
            raise Problem(404, "not_found", f"job {job_id} has no output {name!r}") from exc
        size = os.fstat(fd).st_size
        # Wrapped at once: if the response is never sent, the file object still closes it.
        file = await aiofiles.open(fd, "rb")
        return StreamingResponse(
            _stream_file(file),
            media_type="application/octet-stream",
            headers={
                "Content-Length": str(size),
                "Content-Disposition": f'attachment; filename="{name}"',
                "X-Content-Type-Options": "nosniff",
            },
        )

    async def logs(self, request: Request) -> Response:
        """``GET /jobs/{id}/logs?attempt=N``: what attempt N (default: the newest) wrote."""
        job_id = job_id_of(request)
        text = request.query_params.get("attempt")
        attempt = None if not text else _int_param(text, "attempt", 1, 1, 1_000_000)
        body = await self.queue.logs(job_id, attempt)
        return PlainTextResponse(
            body, headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
        )

    async def events(self, request: Request) -> Response:
        """``GET /jobs/{id}/events``: Server-Sent Events, one per change, until a final state."""
        job_id = job_id_of(request)
        await self.queue.get(job_id)  # 404 now rather than an empty stream
        return StreamingResponse(
            self._event_stream(job_id),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def _event_stream(self, job_id: str) -> AsyncIterator[str]:
        try:
            async for state in self.queue.watch(job_id, interval=None):
                yield f"event: state\ndata: {dumps(state_json(state))}\n\n"
        except JobNotFound:
            return  # pruned while watched: the stream just ends

    async def list(self, request: Request) -> Response:
        """``GET /jobs?status=&queue=&limit=&cursor=``: a page, newest first; the next cursor."""
        params = request.query_params
        status = params.get("status") or None
        if status is not None and status not in {s.value for s in JobStatus}:
            raise Problem(422, "invalid", f"unknown status {printable(status)!r}")
        queue = params.get("queue") or "*"
        if queue != "*":
            _check_name_422("queue", queue)
        limit = _int_param(params.get("limit"), "limit", 100, 1, MAX_PAGE)
        cursor = params.get("cursor") or None
        if cursor is not None and not _ids.is_job_id(cursor):
            raise Problem(422, "invalid", f"invalid cursor {printable(cursor)!r}")
        page = await self.queue.list_jobs(status, limit, queue=queue, cursor=cursor)
        return JSONResponse(
            {"jobs": [state_json(s) for s in page], "next_cursor": page.next_cursor}
        )

    async def queues(self, request: Request) -> Response:
        """``GET /queues``: every queue under the root, with its counts, pause and caps."""
        stats = await self.queue.io(_stats.collect, self.store)
        return JSONResponse(
            {
                "queues": [
                    {"name": name, "counts": _counts(info), **_flow(info)}
                    for name, info in stats.queues.items()
                ]
            }
        )

    async def stats(self, request: Request) -> Response:
        """``GET /stats``: counts per queue and status, and live workers."""
        stats = await self.queue.io(_stats.collect, self.store)
        return JSONResponse(
            {
                "queues": {
                    name: {
                        "counts": _counts(info),
                        "oldest_pending_s": info.oldest_pending_s,
                        **_flow(info),
                    }
                    for name, info in stats.queues.items()
                },
                "workers_alive": stats.workers_alive,
            }
        )

    async def metrics(self, request: Request) -> Response:
        """``GET /metrics``: the Prometheus text format."""
        stats = await self.queue.io(_stats.collect, self.store)
        return PlainTextResponse(
            _stats.prometheus(stats), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    async def health(self, request: Request) -> Response:
        """``GET /health``: the server answers (no disk access, no credentials)."""
        return JSONResponse({"status": "ok"})

    # -- actions ---------------------------------------------------------------------------

    async def act(self, request: Request) -> Response:
        """``POST /jobs/{id}/(cancel|retry|hold|release)``: 200 with the state after it."""
        state = await act(self.settings, request, request.path_params["action"])
        return JSONResponse(state_json(state))

    async def queue_act(self, request: Request) -> Response:
        """``POST /queues/{q}/(pause|resume)``: 200 with the queue's flow control after it."""
        name = request.path_params["queue"]
        changed = await queue_act(self.settings, name, request.path_params["action"])
        info = await self.queue.info(name)
        return JSONResponse({"queue": name, "changed": changed, **converter.unstructure(info)})


async def queue_act(settings: Settings, name: str, action: str) -> bool:
    """Pause or resume the queue `name`; whether that changed it (422 for a bad name)."""
    _check_name_422("queue", name)
    if action == "pause":
        return await settings.queue.pause(name)
    if action == "resume":
        return await settings.queue.resume(name)
    raise Problem(404, "not_found", f"no action {printable(action)!r}")


async def act(
    settings: Settings, request: Request, action: str, cancel_wait: float = 10.0
) -> JobState:
    """
    Carry out one operator action as the Queue method of that name; the job's state
    after it. An action that changes nothing (cancelling a final job, holding a
    running one) is no error: the state shows what is. Retrying a job that is not
    failed, timed out or cancelled, or whose unique key is taken, is 409. A cancel
    waits for a running job to stop for ``?timeout=`` seconds, else `cancel_wait`.
    """
    queue = settings.queue
    job_id = job_id_of(request)
    params = request.query_params
    if action == "cancel":
        wait = _float_param(params.get("timeout"), "timeout", cancel_wait, 0.0, MAX_CANCEL_WAIT)
        await queue.get(job_id)
        await queue.cancel(job_id, timeout=wait)
    elif action == "retry":
        more = _int_param(params.get("attempts"), "attempts", 1, 1, _names.MAX_ATTEMPTS_LIMIT)
        await queue.get(job_id)
        try:
            return await queue.retry(job_id, more)
        except InvalidJob as exc:  # not retryable in its state
            raise Problem(409, "conflict", printable(exc)) from exc
    elif action == "hold":
        await queue.hold(job_id)
    elif action == "release":
        await queue.get(job_id)
        await queue.release(job_id)
    else:
        raise Problem(404, "not_found", f"no action {printable(action)!r}")
    return await queue.get(job_id)


def _counts(info: _stats.QueueStats) -> dict[str, int]:
    return {status.value: n for status, n in info.counts.items()}


def _flow(info: _stats.QueueStats) -> dict[str, JSON]:
    """A queue's pause and caps (and why its settings cannot be used, if they cannot)."""
    out: dict[str, JSON] = {
        "paused": info.info.paused,
        "concurrency": info.info.concurrency,
        "rate": info.info.rate,
    }
    if info.settings_problem is not None:
        out["settings_problem"] = info.settings_problem
    return out


async def _stream_file(file: AsyncBufferedReader) -> AsyncIterator[bytes]:
    """A file the store opened, read in chunks with aiofiles, then closed."""
    try:
        while chunk := await file.read(CHUNK):
            yield chunk
    finally:
        await file.close()


def _check_name_422(kind: str, name: str) -> None:
    try:
        _names.check_name(kind, name)
    except InvalidJob as exc:
        raise Problem(422, "invalid", printable(exc)) from exc


def _int_param(text: str | None, name: str, default: int, low: int, high: int) -> int:
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise Problem(422, "invalid", f"{name} must be a whole number") from None
    if not low <= value <= high:
        raise Problem(422, "invalid", f"{name} must be {low}..{high}")
    return value


def _float_param(text: str | None, name: str, default: float, low: float, high: float) -> float:
    if text is None or text == "":
        return default
    try:
        value = float(text)
    except ValueError:
        raise Problem(422, "invalid", f"{name} must be a number of seconds") from None
    if not low <= value <= high:  # also refuses NaN
        raise Problem(422, "invalid", f"{name} must be {low}..{high}")
    return value
