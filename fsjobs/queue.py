"""
`Queue`: the async API over the store.

Each store operation runs in a thread, one hop per operation, so the event loop
never waits on the disk. Within one process, pushes wake idle workers and
finished jobs wake waiters at once; across processes and hosts, workers and
waiters poll.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import os
import types
import typing
from collections.abc import AsyncIterator, Callable, Iterable

from . import _names, tasks
from ._clock import SYSTEM_CLOCK, Clock
from ._json import JSON
from ._wakeups import Waker, io_pool, signals
from .errors import JobCancelled, JobFailed, JobNotDone, PushError, WaitTimeout
from .model import Job
from .states import Event, JobPage, JobState, JobStatus, WorkflowState
from .store import Store
from .workflow import Workflow

T = typing.TypeVar("T")
P = typing.ParamSpec("P")
R = typing.TypeVar("R")


def _outcome(state: JobState) -> JobState:
    """Return a completed state; raise for any other final one."""
    if state.status is JobStatus.COMPLETED:
        return state
    if state.status is JobStatus.CANCELLED:
        raise JobCancelled(state)
    if state.status.is_final:
        raise JobFailed(state)
    raise JobNotDone(state)


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
        if not os.fspath(root).strip():  # "" would make the current directory a root
            raise ValueError("the queue root must be a directory path, not an empty string")
        self.name = _names.check_name("queue", name)
        self.clock = clock
        self.store = Store(
            root, clock=clock, staleness=staleness, reserve_bytes=reserve_bytes, durable=durable
        )
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
        `max_attempts`, `timeout`, `unique_key`, `limits`, `backoff`) are the
        defaults of jobs built from it.
        """
        return tasks.make_task_decorator(self, name=name, options=options)

    # -- push -------------------------------------------------------------------

    def _check(self, job: Job) -> None:
        if not isinstance(job, Job):
            raise TypeError(f"push() takes an fsjobs.Job, not {type(job).__name__}")
        task = tasks.find(job.func)
        if task is not None:
            task.check_kwargs(job.kwargs, uploads=job.uploads)

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
        items = list(jobs)
        for job in items:
            self._check(job)
        published: list[str] = []
        try:
            ids = await self.io(self.store.push_many, [(j, self.name) for j in items], published)
        except Exception as exc:
            if not published:
                raise  # nothing was pushed: the error as it is
            signals.pushed(self.root)
            raise PushError(
                f"push stopped after publishing {len(published)} of {len(items)} jobs: {exc}",
                published,
            ) from exc
        signals.pushed(self.root)
        return ids

    async def push_workflow(self, wf: Workflow) -> str:
        """
        Push every step of `wf` or none (one commit point); returns the workflow's id
        (`get_workflow` reads it). Steps go to this queue unless ``add(..., queue=)``
        says otherwise. A cycle, an ``after`` naming no step, or a step with a unique
        key is refused (`InvalidJob`) before anything is written; so is a
        ``depends_on`` id that does not exist (`JobNotFound`).
        """
        if not isinstance(wf, Workflow):
            raise TypeError(f"push_workflow() takes an fsjobs.Workflow, not {type(wf).__name__}")
        for step in wf.order():
            self._check(step.job)
        wf_id = await self.io(self.store.push_workflow, wf, self.name)
        signals.pushed(self.root)
        return wf_id

    async def get_workflow(self, wf_id: str) -> WorkflowState:
        """A workflow's status and each step's `JobState`; raises JobNotFound."""
        return await self.io(self.store.get_workflow, wf_id)

    async def list_workflows(self, limit: int = 100) -> list[WorkflowState]:
        """The newest `limit` workflows under the root (any queue), newest first."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        return await self.io(self.store.list_workflows, limit)

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
        return _outcome(await self.get(job_id)).result

    async def wait(
        self, job_id: str, timeout: float | None = None, interval: float | None = None
    ) -> JobState:
        """
        Wait until the job is final and return its state if it completed; raise
        JobFailed, JobCancelled, or WaitTimeout (a TimeoutError) after `timeout`.
        A job finished in this process wakes the waiter at once; otherwise it
        polls every `interval` seconds (default: from 10 ms growing to 1 s).
        """
        _check_interval(interval)
        async for state in self.watch(job_id, interval=interval, timeout=timeout):
            if state.is_done:
                return _outcome(state)
        raise AssertionError("watch() ended without a final state")  # pragma: no cover

    async def watch(
        self, job_id: str, interval: float | None = 0.5, timeout: float | None = None
    ) -> AsyncIterator[JobState]:
        """
        Yield the job's state each time it changes; ends after a final state. It
        polls every `interval` seconds (None: from 10 ms growing to 1 s).
        """
        _check_interval(interval)
        deadline = None if timeout is None else self.clock.monotonic() + timeout
        waker = Waker()
        signals.wait_finish(self.root, job_id, waker)
        delay = 0.01 if interval is None else interval
        last: JobState | None = None
        try:
            while True:
                state = await self.get(job_id)
                if state != last:
                    yield state
                    last = state
                if state.is_done:
                    return
                remaining = None if deadline is None else deadline - self.clock.monotonic()
                if remaining is not None and remaining <= 0:
                    raise WaitTimeout(
                        f"job {job_id} is still {state.status.value} after {timeout} s"
                    )
                await waker.wait(delay if remaining is None else min(delay, remaining))
                if interval is None:
                    delay = min(delay * 1.5, 1.0)
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
        status = await self.io(self.store.cancel, job_id)
        if status is JobStatus.CANCELLED:
            signals.finished(self.root, job_id)
            return True
        if status is not JobStatus.RUNNING:
            return False
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
        await self.io(self.store.retry, job_id, more_attempts)
        signals.pushed(self.root)
        return await self.get(job_id)

    async def read_output(self, job_id: str, name: str) -> bytes:
        """
        The bytes of an output file the job's last attempt wrote into
        ``ctx.output_dir`` (`JobState.outputs` lists them). FileNotFoundError if
        there is no such output.
        """
        return await self.io(self.store.read_output, job_id, name)

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
        age = (
            older_than if isinstance(older_than, dt.timedelta) else dt.timedelta(seconds=older_than)
        )
        if age < dt.timedelta(0):
            raise ValueError("older_than must not be negative")
        wanted = [JobStatus(s) for s in (statuses or DEFAULT_PRUNE)]
        cutoff = self.clock.now() - age
        names = [queue or self.name]
        if names == ["*"]:
            names = await self.io(self.store.queues)
        total = 0
        for name in names:
            total += await self.io(
                self.store.prune, _names.check_name("queue", name), cutoff, wanted
            )
        return total

    async def hold(self, job_id: str) -> bool:
        """
        Hold a job that has not started: it stays in ``held/`` (keeping its unique
        key) and does not run until `release`. False if it is running, blocked or final.
        """
        return await self.io(self.store.hold, job_id) is JobStatus.HELD

    async def release(self, job_id: str) -> bool:
        """Release a held job: it goes back to where it was held from. False if it was not held."""
        status = await self.io(self.store.release_hold, job_id)
        if status is None:
            return False
        signals.pushed(self.root)
        return True

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
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        wanted = None if status is None else JobStatus(status)
        name = queue or self.name
        queues = None if name == "*" else [_names.check_name("queue", name)]
        return await self.io(self.store.list_jobs, queues, wanted, limit, cursor)

    async def counts(self, *, queue: str | None = None) -> dict[JobStatus, int]:
        """How many jobs of this queue (or `queue`, ``"*"`` for all) are in each status."""
        return await self.io(self._counts, queue or self.name)

    def _counts(self, queue: str) -> dict[JobStatus, int]:
        queues = self.store.queues() if queue == "*" else [_names.check_name("queue", queue)]
        total = dict.fromkeys(JobStatus, 0)
        for q in queues:
            for status, n in self.store.counts(q).items():
                total[status] += n
        return total


def _check_interval(interval: float | None) -> None:
    if interval is not None and not interval > 0:  # also refuses NaN
        raise ValueError(f"interval must be a positive number of seconds, not {interval}")


#: What prune() deletes unless told otherwise: corrupt jobs are kept for inspection.
DEFAULT_PRUNE = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.TIMED_OUT, JobStatus.CANCELLED)
