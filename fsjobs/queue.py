"""
`Queue`: the async API over the store.

Each store operation runs in a thread, one hop per operation, so the event loop
never waits on the disk. Within one process, pushes wake idle workers and
finished jobs wake waiters at once; across processes and hosts, workers and
waiters poll. What an operation checks and does is in `_client`, shared with the
blocking `SyncQueue`; this module only says how the async API waits for it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import os
import types
import typing
from collections.abc import AsyncIterator, Callable, Iterable

from . import _client, _periodic, tasks
from ._client import DEFAULT_PRUNE as DEFAULT_PRUNE
from ._clock import SYSTEM_CLOCK, Clock
from ._json import JSON
from ._queue_settings import UNSET, Unset
from ._wakeups import Waker, io_pool, signals
from .errors import WaitTimeout
from .model import Job
from .states import Event, JobPage, JobState, JobStatus, QueueInfo, WorkflowState
from .workflow import Workflow

T = typing.TypeVar("T")
P = typing.ParamSpec("P")
R = typing.TypeVar("R")


class Queue:
    """
    One named queue under a root directory (created if missing). Several
    queues, processes and hosts may share one root.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        name: str = "default",
        *,
        clock: Clock = SYSTEM_CLOCK,
        staleness: float | None = None,
        reserve_bytes: int = 64 * 1024 * 1024,
        durable: bool = True,
    ) -> None:
        self.name, self.store = _client.open_store(
            root,
            name,
            clock=clock,
            staleness=staleness,
            reserve_bytes=reserve_bytes,
            durable=durable,
        )
        self.clock = clock
        self.root = self.store.root

    def __repr__(self) -> str:
        return f"<fsjobs.Queue {self.name!r} at {self.root!r}>"

    def close(self) -> None:
        """Release the directory descriptors this queue holds."""
        self.store.close()

    async def __aenter__(self) -> typing.Self:
        """
        Set the root up off the event loop (create it and its format file, read
        the mount table), so that no operation inside blocks the loop on it.
        """
        await self.io(self.store.open)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self.close()

    async def io(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Run one store operation in the I/O threads."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(io_pool(), functools.partial(fn, *args, **kwargs))

    # -- tasks ----------------------------------------------------------------

    def task(
        self, *, name: str | None = None, **options: typing.Any
    ) -> Callable[[Callable[P, R]], tasks.Task[P, R]]:
        """
        Register a function as a task of this queue. Options (`priority`,
        `max_attempts`, `timeout`, `unique_key`, `limits`, `backoff`, `executor`)
        are the defaults of jobs built from it; `timeout` and `executor` also apply
        to a job that names the task without setting them.
        """
        return tasks.make_task_decorator(self, name=name, options=options)

    def periodic(
        self,
        cron: str | None = None,
        *,
        every: dt.timedelta | float | None = None,
        name: str | None = None,
        timezone: str = "UTC",
        catch_up: bool = False,
        queue: str | None = None,
        **options: typing.Any,
    ) -> Callable[[Callable[P, R]], tasks.Task[P, R]]:
        """
        Register a task that runs on a schedule: `cron` text (evaluated in
        `timezone`) or `every` (a timedelta or whole seconds >= 1, ticks at
        multiples of it since the Unix epoch). Every `Worker.run` of this root
        that imported it keeps the schedule; each tick is pushed once, across
        all workers and hosts, as a job of `queue` (default: this queue) with
        ``scheduled_at`` = the tick. A tick missed while no worker ran is not
        run later, unless `catch_up` (then the latest missed one is). `name`
        names the task and its schedule; other options are the task's.
        """
        return _periodic.make_decorator(
            self,
            cron,
            every=every,
            name=name,
            timezone=timezone,
            catch_up=catch_up,
            queue=queue,
            options=options,
        )

    # -- push -------------------------------------------------------------------

    async def push(self, job: Job) -> str:
        """
        Push one job; returns its id once it is durable and visible to workers.
        An error after the job became visible (say, the directory fsync failed)
        is a `PushError` whose `published_ids` names it: do not push it again.
        """
        (job_id,) = await self.push_many([job])
        return job_id

    async def push_many(self, jobs: Iterable[Job]) -> list[str]:
        """
        Push several jobs sharing the cost of fsyncs. Not atomic: if it fails after
        publishing some, `PushError.published_ids` lists them; if it fails before
        publishing any, the error is raised as it is (StoreFull, InvalidJob, ...).
        """
        return await self.io(_client.push_many, self.store, self.name, list(jobs))

    async def push_workflow(self, wf: Workflow) -> str:
        """
        Push every step of `wf` or none (one commit point); returns the workflow's id
        (`get_workflow` reads it). Steps go to this queue unless ``add(..., queue=)``
        says otherwise. A cycle, an ``after`` naming no step, or a step with a unique
        key is refused (`InvalidJob`) before anything is written; so is a
        ``depends_on`` id that does not exist (`JobNotFound`).
        """
        return await self.io(_client.push_workflow, self.store, self.name, wf)

    async def get_workflow(self, wf_id: str) -> WorkflowState:
        """A workflow's status and each step's `JobState`; raises JobNotFound."""
        return await self.io(self.store.get_workflow, wf_id)

    async def list_workflows(self, limit: int = 100) -> list[WorkflowState]:
        """The newest `limit` workflows under the root (any queue), newest first."""
        return await self.io(_client.list_workflows, self.store, limit)

    # -- reading ------------------------------------------------------------------

    async def get(self, job_id: str) -> JobState:
        """The job's current state (any job under the root); raises JobNotFound."""
        return await self.io(self.store.get, job_id)

    async def history(self, job_id: str) -> list[Event]:
        """
        The job's whole history, oldest first: one `Event` per journal record (pushed,
        claimed, progress, failed, retrying, rescued, completed…) across every attempt.
        A job whose journal is unreadable has an empty history; raises JobNotFound.
        """
        return await self.io(self.store.history, job_id)

    async def result(self, job_id: str) -> JSON:
        """The return value of a completed job; raises JobFailed, JobCancelled or JobNotDone."""
        return _client.outcome(await self.get(job_id)).result

    async def wait(
        self, job_id: str, timeout: float | None = None, interval: float | None = None
    ) -> JobState:
        """
        Wait until the job is final and return its state if it completed; raise
        JobFailed, JobCancelled, or WaitTimeout (a TimeoutError) after `timeout`.
        A job finished in this process wakes the waiter at once; otherwise it
        polls every `interval` seconds (default: from 10 ms growing to 1 s).
        """
        _client.check_interval(interval)
        async for state in self.watch(job_id, interval=interval, timeout=timeout):
            if state.is_done:
                return _client.outcome(state)
        raise AssertionError("watch() ended without a final state")  # pragma: no cover

    async def watch(
        self, job_id: str, interval: float | None = 0.5, timeout: float | None = None
    ) -> AsyncIterator[JobState]:
        """
        Yield the job's state each time it changes; ends after a final state. It
        polls every `interval` seconds (None: from 10 ms growing to 1 s).
        """
        poll = _client.Poll(job_id, interval, timeout, self.clock)
        waker = Waker()
        signals.wait_finish(self.root, job_id, waker)
        try:
            while True:
                state = await self.get(job_id)
                if poll.is_news(state):
                    yield state
                if state.is_done:
                    return
                await waker.wait(poll.pause(state))
        finally:
            signals.stop_waiting(self.root, job_id, waker)

    async def cancel(self, job_id: str, timeout: float = 10.0) -> bool:
        """
        Cancel a job (any job under the root). A job that has not started (blocked
        ones too) is cancelled at once and never runs; the jobs that depend on it
        are cancelled with it. A running job is asked to stop: an async
        task gets CancelledError, a sync task sees ``ctx.cancelled`` become True;
        this waits up to `timeout` seconds for it to end. Returns True if the job
        is cancelled; False if it had already ended otherwise, or is still running
        after `timeout` (the request stands: its worker stops it when it can).
        """
        done = await self.io(_client.cancel, self.store, job_id)
        if done is not None:
            return done
        try:
            async for state in self.watch(job_id, interval=None, timeout=timeout):
                if state.is_done:
                    return state.status is JobStatus.CANCELLED
        except WaitTimeout:
            return False
        return False  # pragma: no cover - watch() always ends with a final state

    async def retry(self, job_id: str, more_attempts: int = 1) -> JobState:
        """
        Run a failed, timed-out or cancelled job again, with `more_attempts` more
        attempts (its history is kept; it is a new epoch of the same job). Raises
        InvalidJob for a job in another state, UniqueKeyConflict if its unique
        key now belongs to another unfinished job, and DependencyFailed if a job it
        depends on has not completed. Jobs that were cancelled because this one
        failed stay cancelled: retry them too. Returns the new state.
        """
        return await self.io(_client.retry, self.store, job_id, more_attempts)

    async def read_output(self, job_id: str, name: str) -> bytes:
        """
        The bytes of an output file the job's last attempt wrote into
        ``ctx.output_dir`` (`JobState.outputs` lists them). FileNotFoundError if
        there is no such output.
        """
        return await self.io(self.store.read_output, job_id, name)

    async def logs(self, job_id: str, attempt: int | None = None) -> str:
        """
        What one attempt of the job printed (stdout, stderr) and logged (``logging``
        at INFO or above) while it ran, whatever its executor: attempt number
        `attempt` (from 1; None: the newest that started). An attempt that ran more
        than once (its worker stopped and gave it back) has its runs joined. Each
        run keeps its last MiB. "" if it wrote nothing or has not started; raises
        JobNotFound.
        """
        return await self.io(self.store.logs, job_id, attempt)

    async def prune(
        self,
        older_than: float | dt.timedelta,
        statuses: Iterable[JobStatus | str] | None = None,
        *,
        queue: str | None = None,
    ) -> int:
        """
        Delete final jobs (default: completed, failed, timed out, cancelled) of this
        queue (or `queue`, ``"*"`` for all) that ended more than `older_than`
        (seconds or a timedelta) ago, with their files. Safe while workers run.
        Returns how many jobs were deleted.
        """
        return await self.io(
            _client.prune, self.store, self.name, self.clock, older_than, statuses, queue
        )

    async def hold(self, job_id: str) -> bool:
        """
        Hold a job that has not started: it stays in ``held/`` (keeping its unique
        key) and does not run until `release`. False if it is running, blocked or final.
        """
        return await self.io(_client.hold, self.store, job_id)

    async def release(self, job_id: str) -> bool:
        """Release a held job: it goes back to where it was held from. False if it was not held."""
        return await self.io(_client.release, self.store, job_id)

    async def list_jobs(
        self,
        status: JobStatus | str | None = None,
        limit: int = 100,
        *,
        queue: str | None = None,
        cursor: str | None = None,
    ) -> JobPage:
        """
        A page of jobs of this queue (or `queue`, ``"*"`` for all), newest first, at
        most `limit` (>= 1). The page is a list with ``next_cursor``: not None when
        more jobs follow; pass it back as `cursor` for the next page.
        """
        return await self.io(_client.list_jobs, self.store, self.name, status, limit, queue, cursor)

    async def counts(self, *, queue: str | None = None) -> dict[JobStatus, int]:
        """How many jobs of this queue (or `queue`, ``"*"`` for all) are in each status."""
        return await self.io(_client.counts, self.store, self.name, queue)

    # -- flow control ---------------------------------------------------------------

    async def pause(self, name: str | None = None) -> bool:
        """
        Pause a queue (default: this one): workers on every host stop claiming
        from it within about 100 ms; running jobs finish; pushes still succeed.
        True if this call paused it (False: it was paused already).
        """
        return await self.io(_client.pause, self.store, self.name, name)

    async def resume(self, name: str | None = None) -> bool:
        """Resume a paused queue (default: this one). True if this call resumed it."""
        return await self.io(_client.resume, self.store, self.name, name)

    async def configure(
        self,
        name: str | None = None,
        *,
        concurrency: int | Unset | None = UNSET,
        rate: str | Unset | None = UNSET,
    ) -> QueueInfo:
        """
        Cap a queue (default: this one) across all workers and hosts: at most
        `concurrency` of its jobs running at once, at most `rate` claims per
        window (``"N/s"``, ``"N/m"`` or ``"N/h"``). Only the caps given change;
        None removes one. Raises InvalidSettings (a ValueError) for a bad value.
        Returns the queue's flow control after the change.
        """
        return await self.io(_client.configure, self.store, self.name, name, concurrency, rate)

    async def info(self, name: str | None = None) -> QueueInfo:
        """A queue's flow control (default: this one): paused, concurrency and rate caps."""
        return await self.io(_client.info, self.store, self.name, name)
