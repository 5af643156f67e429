"""
One attempt of a claimed job: from its `Context` to its `Outcome`.

The worker claims and publishes; `Runner` runs the task in between: it finds
the task by name, builds its context and arguments, runs it on the event loop
(async tasks) or in a thread (sync tasks) under the attempt's timeout, and turns
what happened into an outcome: completed with a JSON result, retried after a
backoff, or failed, timed out or cancelled for good.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import math
import threading
import traceback
import typing

from . import tasks
from ._clock import Clock, to_ms
from ._json import dumps
from ._text import printable
from .context import Context
from .errors import ResultNotSerializable, Retry, UnknownTask
from .model import DEFAULT_BACKOFF, MAX_RESULT_BYTES, to_json_result
from .queue import Queue
from .states import ErrorInfo
from .store import Claim, Ending, Outcome

logger = logging.getLogger("fsjobs.worker")

#: at most one progress record per job per this many seconds (the last one always written)
PROGRESS_INTERVAL = 0.5


#: Why a claimed job whose last attempt already ran ends failed, by `Claim.exhausted_by`.
EXHAUSTED = {
    "WorkerLost": ErrorInfo("WorkerLost", "the worker running its last attempt died"),
    "PublishFailed": ErrorInfo(
        "PublishFailed", "the outcome of its last attempt could not be recorded"
    ),
}


def error_info(exc: BaseException) -> ErrorInfo:
    """How an exception is recorded: its qualified type, message and traceback."""
    kind = type(exc)
    name = (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )
    return ErrorInfo(name, str(exc), "".join(traceback.format_exception(exc)))


class Runner:
    """Runs attempts for one worker: its queue, its clock, its import rule, its threads."""

    def __init__(
        self,
        queue: Queue,
        clock: Clock,
        allow_import: typing.Sequence[str],
        threads: concurrent.futures.ThreadPoolExecutor,
    ) -> None:
        self.queue = queue
        self.clock = clock
        self.allow_import = tuple(allow_import)
        self.threads = threads

    async def run(
        self, claim: Claim, progress: ProgressWriter, stop_asked: typing.Callable[[], bool]
    ) -> Outcome:
        """
        Run the claimed job's task once and say how it ended. `stop_asked` tells a
        CancelledError the worker asked for (re-raised) from one the task raised
        (its failure).
        """
        job, store = claim.job, self.queue.store
        assert job is not None
        if claim.cancel_requested:
            return Outcome(Ending.CANCELLED)
        if not claim.runnable:
            return Outcome(Ending.FAILED, error=EXHAUSTED[claim.exhausted_by])
        try:
            task = tasks.lookup(job.func, self.allow_import)
            task.check_kwargs(job.kwargs, uploads=claim.uploads)
        except (UnknownTask, TypeError) as exc:
            logger.error("job %s cannot run: %s", claim.job_id, printable(exc))
            return Outcome(Ending.FAILED, error=error_info(exc))
        stop = threading.Event()
        parents = await self.queue.io(store.parent_results, claim.job_id) if job.depends_on else {}
        ctx = Context(
            job_id=claim.job_id,
            attempt=claim.marker.attempt,
            max_attempts=claim.marker.max_attempts,
            queue=claim.queue,
            uploads=await self.queue.io(store.upload_paths, claim) if claim.uploads else {},
            parents=parents,
            output_dir_factory=functools.partial(store.output_dir, claim),
            progress_sink=progress.write,
            cancel_event=stop,
            loop=asyncio.get_running_loop(),
        )
        kwargs: dict[str, typing.Any] = dict(job.kwargs)
        if task.context_param is not None:
            kwargs[task.context_param] = ctx
        for name in ctx.uploads:
            if name in task.signature.parameters and name not in kwargs:
                kwargs[name] = await self.queue.io(store.read_upload, claim, name)
        timeout = job.effective_timeout if job.effective_timeout is not None else task.timeout
        logger.debug("job %s attempt %d starting", claim.job_id, claim.marker.attempt)
        deadline = Deadline(timeout)
        try:
            if task.is_async:
                async with deadline.scope():
                    value = await task.fn(**kwargs)
            else:
                value = await self._run_sync(task, kwargs, deadline, stop)
        except Retry as exc:
            return self.retry_or_end(claim, exc, Ending.FAILED, exc.delay)
        except TimeoutError as exc:
            if deadline.expired:  # ours, not one the task raised for its own reasons
                expired = TimeoutError(f"the attempt exceeded its timeout of {timeout} s")
                return self.retry_or_end(claim, expired, Ending.TIMED_OUT, None)
            return self.retry_or_end(claim, exc, Ending.FAILED, None)
        except asyncio.CancelledError as exc:
            if stop_asked():  # ours: _execute gives the job back or cancels it
                raise
            return self.retry_or_end(claim, exc, Ending.FAILED, None)
        except GeneratorExit:
            raise  # this coroutine is being closed: nothing may be awaited any more
        except BaseException as exc:  # SystemExit, KeyboardInterrupt too: the task's failure
            return self.retry_or_end(claim, exc, Ending.FAILED, None)
        return self._completed(value)

    @staticmethod
    def _completed(value: object) -> Outcome:
        """The outcome for a returned value: stored as JSON, or failed without retry."""
        try:
            result = to_json_result(value)
            size = len(dumps(result))
        except (TypeError, ValueError, RecursionError) as exc:
            problem = ResultNotSerializable(
                f"the task returned {type(value).__name__}, which is not JSON: {exc}"
            )
        else:
            if size <= MAX_RESULT_BYTES:
                return Outcome(Ending.COMPLETED, result=result)
            problem = ResultNotSerializable(
                f"the result is {size} bytes; the limit is {MAX_RESULT_BYTES}: write large "
                "data to ctx.output_dir instead"
            )
        return Outcome(Ending.FAILED, error=error_info(problem))

    async def _run_sync(
        self,
        task: tasks.Task[..., typing.Any],
        kwargs: dict[str, typing.Any],
        deadline: Deadline,
        stop: threading.Event,
    ) -> typing.Any:
        loop = asyncio.get_running_loop()
        call = functools.partial(_capture, functools.partial(task.fn, **kwargs))
        future = loop.run_in_executor(self.threads, call)
        try:
            async with deadline.scope():
                returned, value = await asyncio.shield(future)
        except (TimeoutError, asyncio.CancelledError):
            # A thread cannot be killed: tell the task (ctx.cancelled) and keep its
            # slot, and the job, until the function returns.
            stop.set()
            await asyncio.shield(future)
            raise
        if not returned:
            raise value
        return value

    def retry_or_end(
        self, claim: Claim, exc: BaseException, final: Ending, delay: float | None
    ) -> Outcome:
        info = error_info(exc)
        marker = claim.marker
        if marker.attempt < marker.max_attempts:
            job = claim.job
            assert job is not None
            if delay is None:
                delay = (job.backoff or DEFAULT_BACKOFF).delay(marker.attempt)
            retry_at = to_ms(self.clock.now()) + int(delay * 1000)
            logger.info(
                "job %s attempt %d failed (%s); retrying in %.1f s",
                claim.job_id,
                marker.attempt,
                printable(info.type),
                delay,
            )
            return Outcome(Ending.RETRY, error=info, retry_at_ms=retry_at)
        logger.warning(
            "job %s %s after %d attempts: %s",
            claim.job_id,
            final.value,
            marker.attempt,
            printable(info.message),
        )
        return Outcome(final, error=info)


def _capture(call: typing.Callable[[], typing.Any]) -> tuple[bool, typing.Any]:
    """
    Run a sync task in its thread: (True, its value) or (False, what it raised).
    Whatever it raises, SystemExit and CancelledError included, comes back as a
    value, so it fails the attempt instead of being taken for the event loop's own.
    """
    try:
        return True, call()
    except BaseException as exc:
        return False, exc


class Deadline:
    """An attempt's timeout, remembering whether it was the one that fired."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self._scope: asyncio.Timeout | None = None

    def scope(self) -> asyncio.Timeout:
        self._scope = asyncio.timeout(self.seconds)
        return self._scope

    @property
    def expired(self) -> bool:
        return self._scope is not None and self._scope.expired()


class ProgressWriter:
    """Coalesces progress reports: at most one journal write per interval, the last one kept."""

    def __init__(self, queue: Queue, claim: Claim) -> None:
        self.queue = queue
        self.claim = claim
        self.last_write = -math.inf
        self.pending: tuple[float | None, str | None] | None = None

    async def write(self, percent: float | None, message: str | None) -> None:
        self.pending = (percent, message)
        now = self.queue.clock.monotonic()
        if now - self.last_write >= PROGRESS_INTERVAL:
            await self.flush()

    async def flush(self) -> None:
        if self.pending is not None:
            percent, message = self.pending
            self.pending = None
            self.last_write = self.queue.clock.monotonic()
            await self.queue.io(self.queue.store.progress, self.claim, percent, message)
