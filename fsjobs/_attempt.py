"""
One attempt of a claimed job: from its `Context` to its `Outcome`.

The worker claims and publishes; `Runner` runs the task in between: it finds
the task by name, picks its executor (the job's, else the task's, else for a
sync function the worker's default), builds its context and arguments, runs it
under the attempt's timeout with its output going to the attempt's log, and
turns what happened into an outcome: completed with a JSON result, retried
after a backoff, or failed, timed out or cancelled for good.

- ``"async"``: a coroutine function, awaited on the event loop; a timeout or a
  cancel cancels it.
- ``"thread"``: a sync function in the worker's threads; a thread cannot be
  killed, so past its timeout (or when cancelled) it is told through
  ``ctx.cancelled`` and keeps its slot until it returns.
- ``"process"``: a sync function in a child process (`_executors.ProcessPool`);
  a timeout or a cancel kills the child, MEMORY limits its address space.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import threading
import time
import typing

from . import _capture, _child, tasks
from ._clock import Clock, to_ms
from ._executors import ProcessPool
from ._json import JSON, dumps
from ._logs import LogFile
from ._text import printable
from .context import Context, ProgressSink
from .errors import InvalidJob, ResultNotSerializable, Retry, UnknownTask, error_info
from .model import DEFAULT_BACKOFF, MAX_RESULT_BYTES, Job, to_json_result
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


class _ChildFailed(Exception):
    """The task did not return in its child: the reply says how it ended."""

    def __init__(self, reply: _child.Reply) -> None:
        super().__init__(reply.kind)
        self.reply = reply


class Runner:
    """Runs attempts for one worker: its queue, clock, import rule, executors."""

    def __init__(
        self,
        queue: Queue,
        clock: Clock,
        allow_import: typing.Sequence[str],
        threads: concurrent.futures.ThreadPoolExecutor,
        *,
        executor: str = "thread",
        processes: int = 1,
        lease: float = 30.0,
        heartbeat_age: typing.Callable[[], float] = lambda: 0.0,
    ) -> None:
        self.queue = queue
        self.clock = clock
        self.allow_import = tuple(allow_import)
        self.threads = threads
        #: the executor of sync tasks that name none
        self.default_executor = executor
        self.processes = processes
        self.lease = lease
        self.heartbeat_age = heartbeat_age
        self._pool: ProcessPool | None = None
        self._pool_lock = threading.Lock()

    # -- the process pool ---------------------------------------------------------------------

    @property
    def pool(self) -> ProcessPool:
        """The process executor's children, started on first use."""
        with self._pool_lock:
            if self._pool is None:
                self._pool = ProcessPool(self.processes, fence_after=2 * self.lease / 3)
            return self._pool

    def beat(self, age: float) -> None:
        """After each heartbeat (its thread): tell the children how old it is."""
        with self._pool_lock:
            pool = self._pool
        if pool is not None:
            pool.beat(age)

    async def close(self) -> None:
        """Stop the children (the worker is stopping; no attempt runs any more)."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    # -- one attempt ----------------------------------------------------------------------------

    def executor_for(self, task: tasks.Task[..., typing.Any], job: Job) -> str:
        """
        The executor this attempt runs under; InvalidJob (the job fails at once) if
        it cannot run the function or enforce its limits.
        """
        task.check_job(job)
        executor = task.executor_for(job)
        if executor is not None:
            return executor
        if job.memory_limit is not None and self.default_executor != "process":
            raise InvalidJob(
                f"the job has a Limit.Type.MEMORY limit, which needs executor='process', and "
                f"this worker runs sync tasks under {self.default_executor!r} by default: set "
                "executor='process' on the task or the job, or run the worker with "
                "executor='process' (fsjobs worker --executor process)"
            )
        return self.default_executor

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
            executor = self.executor_for(task, job)
        except (UnknownTask, TypeError, InvalidJob) as exc:
            logger.error("job %s cannot run: %s", claim.job_id, printable(exc))
            return Outcome(Ending.FAILED, error=error_info(exc))
        uploads = await self.queue.io(store.upload_paths, claim) if claim.uploads else {}
        parents = await self.queue.io(store.parent_results, claim.job_id) if job.depends_on else {}
        kwargs: dict[str, typing.Any] = dict(job.kwargs)
        for name in uploads:
            if name in task.signature.parameters and name not in kwargs:
                kwargs[name] = await self.queue.io(store.read_upload, claim, name)
        timeout = job.effective_timeout if job.effective_timeout is not None else task.timeout
        logger.debug(
            "job %s attempt %d starting (%s)", claim.job_id, claim.marker.attempt, executor
        )
        deadline = Deadline(timeout)
        log = LogFile(opener=functools.partial(store.open_log, claim))
        _capture.route_streams()
        try:
            if executor == "process":
                value = await self._run_in_child(
                    claim, task, kwargs, uploads, parents, deadline, progress
                )
            else:
                stop = threading.Event()
                ctx = Context(
                    job_id=claim.job_id,
                    attempt=claim.marker.attempt,
                    max_attempts=claim.marker.max_attempts,
                    queue=claim.queue,
                    uploads=uploads,
                    parents=parents,
                    output_dir_factory=functools.partial(store.output_dir, claim),
                    progress_sink=_progress_sink(progress),
                    cancel_event=stop,
                )
                if task.context_param is not None:
                    kwargs[task.context_param] = ctx
                if executor == "async":
                    async with deadline.scope():
                        with _capture.capturing(log):
                            value = await task.fn(**kwargs)
                else:
                    value = await self._run_in_thread(task, kwargs, deadline, stop, log)
        except _ChildFailed as failed:
            return self._child_outcome(claim, failed.reply)
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
            log.close()  # this coroutine is being closed: nothing may be awaited any more
            raise
        except BaseException as exc:  # SystemExit, KeyboardInterrupt too: the task's failure
            return self.retry_or_end(claim, exc, Ending.FAILED, None)
        finally:
            if log.fd >= 0:  # trim it to its tail, off the loop
                await asyncio.shield(self.queue.io(log.close))
            else:
                log.close()  # nothing written: only stop later writes from creating it
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

    async def _run_in_thread(
        self,
        task: tasks.Task[..., typing.Any],
        kwargs: dict[str, typing.Any],
        deadline: Deadline,
        stop: threading.Event,
        log: LogFile,
    ) -> typing.Any:
        loop = asyncio.get_running_loop()
        call = functools.partial(_call_in_thread, functools.partial(task.fn, **kwargs), log)
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

    async def _run_in_child(
        self,
        claim: Claim,
        task: tasks.Task[..., typing.Any],
        kwargs: dict[str, typing.Any],
        uploads: dict[str, typing.Any],
        parents: dict[str, typing.Any],
        deadline: Deadline,
        progress: ProgressWriter,
    ) -> JSON:
        store, job = self.queue.store, claim.job
        assert job is not None
        request = _child.Request(
            job_id=claim.job_id,
            attempt=claim.marker.attempt,
            max_attempts=claim.marker.max_attempts,
            queue=claim.queue,
            task_name=task.task_name,
            module=getattr(task.fn, "__module__", None) or "__main__",
            qualname=getattr(task.fn, "__qualname__", task.task_name),
            kwargs=kwargs,
            context_param=task.context_param,
            uploads={name: str(path) for name, path in uploads.items()},
            parents=parents,
            memory=job.memory_limit,
            silent_for=self.heartbeat_age(),
        )
        async with deadline.scope():
            reply = await self.pool.run(
                request,
                functools.partial(store.open_log, claim),
                progress.report,
                functools.partial(self.queue.io, store.output_dir, claim),
            )
        if reply.kind == "returned":
            return reply.result
        raise _ChildFailed(reply)

    def _child_outcome(self, claim: Claim, reply: _child.Reply) -> Outcome:
        assert reply.error is not None
        if reply.kind in ("unknown", "unserializable"):  # trying again cannot help
            logger.error("job %s: %s", claim.job_id, printable(reply.error.message))
            return Outcome(Ending.FAILED, error=reply.error)
        delay = reply.retry_delay if reply.kind == "retry" else None
        return self.retry_or_end(claim, reply.error, Ending.FAILED, delay)

    def retry_or_end(
        self, claim: Claim, exc: BaseException | ErrorInfo, final: Ending, delay: float | None
    ) -> Outcome:
        info = exc if isinstance(exc, ErrorInfo) else error_info(exc)
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


def _call_in_thread(call: typing.Callable[[], typing.Any], log: LogFile) -> tuple[bool, typing.Any]:
    """
    Run a sync task in its thread, its output going to its log: (True, its value)
    or (False, what it raised). Whatever it raises, SystemExit and CancelledError
    included, comes back as a value, so it fails the attempt instead of being
    taken for the event loop's own.
    """
    with _capture.capturing(log):
        try:
            return True, call()
        except BaseException as exc:
            return False, exc


def _progress_sink(writer: ProgressWriter) -> ProgressSink:
    """`ProgressWriter.report` from any thread: on the loop's thread at once, else handed over."""
    loop = asyncio.get_running_loop()
    loop_thread = threading.get_ident()

    def sink(percent: float | None, message: str | None) -> None:
        if threading.get_ident() == loop_thread:
            writer.report(percent, message)
            return
        try:
            loop.call_soon_threadsafe(writer.report, percent, message)
        except RuntimeError:
            pass  # the loop is closed: the attempt is over

    return sink


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
    """
    Coalesces progress reports: a report is taken at once and written within
    `PROGRESS_INTERVAL` seconds, at most one journal write per interval, and the
    last one is always written.
    """

    def __init__(self, queue: Queue, claim: Claim) -> None:
        self.queue = queue
        self.claim = claim
        self.last_write = -float("inf")
        self.pending: tuple[float | None, str | None] | None = None
        self._writing: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None

    def report(self, percent: float | None, message: str | None) -> None:
        """Take a report (on the event loop's thread)."""
        self.pending = (percent, message)
        self._kick()

    def _kick(self) -> None:
        if self.pending is None or self._timer is not None:
            return
        if self._writing is not None and not self._writing.done():
            return  # the writer looks again when it is done
        wait = self.last_write + PROGRESS_INTERVAL - time.monotonic()
        loop = asyncio.get_running_loop()
        if wait > 0:
            self._timer = loop.call_later(wait, self._on_timer)
        else:
            self._writing = loop.create_task(self._write(self._take()))

    def _on_timer(self) -> None:
        self._timer = None
        self._kick()

    def _take(self) -> tuple[float | None, str | None]:
        assert self.pending is not None
        report, self.pending = self.pending, None
        self.last_write = time.monotonic()
        return report

    async def _write(self, report: tuple[float | None, str | None]) -> None:
        try:
            await self.queue.io(self.queue.store.progress, self.claim, *report)
        except OSError as exc:  # progress is best effort
            logger.warning(
                "job %s: a progress report was lost: %s", self.claim.job_id, printable(exc)
            )
        finally:
            if self.pending is not None:
                asyncio.get_running_loop().call_soon(self._kick)

    async def flush(self) -> None:
        """The attempt is over: let the write in flight end, then write the last report."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._writing is not None:
            await asyncio.wait([self._writing])
        if self.pending is not None:
            await self.queue.io(self.queue.store.progress, self.claim, *self._take())
