"""
`SyncQueue`: the reads and writes of `Queue` as blocking calls, for scripts,
notebooks and sync web frameworks.

It calls the store directly in the caller's thread, with no event loop, so it
works from any thread, including one already running an event loop (where it
blocks that loop for the call, as any blocking call does). Each method does what
the `Queue` method of the same name does: both run the same code in `_client`.
"""

from __future__ import annotations

import datetime as dt
import os
import types
import typing
from collections.abc import Iterable, Iterator

from . import _client
from ._clock import SYSTEM_CLOCK, Clock
from ._json import JSON
from ._queue_settings import UNSET, Unset
from ._wakeups import ThreadWaker, signals
from .errors import WaitTimeout
from .model import Job
from .states import Event, JobPage, JobState, JobStatus, QueueInfo, WorkflowState
from .workflow import Workflow


class SyncQueue:
    """
    One named queue under a root directory, with blocking methods: the same
    arguments, results and errors as `Queue`'s, without ``await``. Safe to share
    between threads. Tasks are still declared with ``@queue.task`` on a `Queue`;
    push their jobs from sync code with ``sync_queue.push(task.job(...))``.
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
        return f"<fsjobs.SyncQueue {self.name!r} at {self.root!r}>"

    def close(self) -> None:
        """Release the directory descriptors this queue holds."""
        self.store.close()

    def __enter__(self) -> typing.Self:
        """Set the root up now (create it and its format file, read the mount table)."""
        self.store.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self.close()

    # -- push -------------------------------------------------------------------------

    def push(self, job: Job) -> str:
        """Push one job; returns its id once it is durable (see `Queue.push`)."""
        (job_id,) = self.push_many([job])
        return job_id

    def push_many(self, jobs: Iterable[Job]) -> list[str]:
        """Push several jobs sharing the cost of fsyncs (see `Queue.push_many`)."""
        return _client.push_many(self.store, self.name, jobs)

    # -- reading --------------------------------------------------------------------------

    def get(self, job_id: str) -> JobState:
        """The job's current state (any job under the root); raises JobNotFound."""
        return self.store.get(job_id)

    def history(self, job_id: str) -> list[Event]:
        """The job's whole history, oldest first (see `Queue.history`)."""
        return self.store.history(job_id)

    def result(self, job_id: str) -> JSON:
        """The return value of a completed job; raises JobFailed, JobCancelled or JobNotDone."""
        return _client.outcome(self.get(job_id)).result

    def wait(
        self, job_id: str, timeout: float | None = None, interval: float | None = None
    ) -> JobState:
        """
        Block until the job is final and return its state if it completed; raise
        JobFailed, JobCancelled, or WaitTimeout (a TimeoutError) after `timeout`.
        """
        _client.check_interval(interval)
        for state in self.watch(job_id, interval=interval, timeout=timeout):
            if state.is_done:
                return _client.outcome(state)
        raise AssertionError("watch() ended without a final state")  # pragma: no cover

    def watch(
        self, job_id: str, interval: float | None = 0.5, timeout: float | None = None
    ) -> Iterator[JobState]:
        """
        Yield the job's state each time it changes; ends after a final state
        (see `Queue.watch`). A job finished in this process wakes it at once.
        """
        poll = _client.Poll(job_id, interval, timeout, self.clock)
        waker = ThreadWaker()
        signals.wait_finish(self.root, job_id, waker)
        try:
            while True:
                state = self.get(job_id)
                if poll.is_news(state):
                    yield state
                if state.is_done:
                    return
                waker.wait(poll.pause(state))
        finally:
            signals.stop_waiting(self.root, job_id, waker)

    def read_output(self, job_id: str, name: str) -> bytes:
        """The bytes of an output file of the job's last attempt (see `Queue.read_output`)."""
        return self.store.read_output(job_id, name)

    def push_workflow(self, wf: Workflow) -> str:
        """Push every step of `wf` or none; returns its id (see `Queue.push_workflow`)."""
        return _client.push_workflow(self.store, self.name, wf)

    def get_workflow(self, wf_id: str) -> WorkflowState:
        """A workflow's status and each step's `JobState`; raises JobNotFound."""
        return self.store.get_workflow(wf_id)

    def list_workflows(self, limit: int = 100) -> list[WorkflowState]:
        """The newest `limit` workflows under the root (any queue), newest first."""
        return _client.list_workflows(self.store, limit)

    def logs(self, job_id: str, attempt: int | None = None) -> str:
        """What one attempt of the job printed and logged (see `Queue.logs`)."""
        return self.store.logs(job_id, attempt)

    def list_jobs(
        self,
        status: JobStatus | str | None = None,
        limit: int = 100,
        *,
        queue: str | None = None,
        cursor: str | None = None,
    ) -> JobPage:
        """A page of jobs, newest first, with ``next_cursor`` (see `Queue.list_jobs`)."""
        return _client.list_jobs(self.store, self.name, status, limit, queue, cursor)

    def counts(self, *, queue: str | None = None) -> dict[JobStatus, int]:
        """How many jobs of this queue (or `queue`, ``"*"`` for all) are in each status."""
        return _client.counts(self.store, self.name, queue)

    # -- operator actions ---------------------------------------------------------------------

    def cancel(self, job_id: str, timeout: float = 10.0) -> bool:
        """
        Cancel a job; a running one is asked to stop and this blocks up to
        `timeout` seconds for it to end (see `Queue.cancel`). True if it is cancelled.
        """
        done = _client.cancel(self.store, job_id)
        if done is not None:
            return done
        try:
            for state in self.watch(job_id, interval=None, timeout=timeout):
                if state.is_done:
                    return state.status is JobStatus.CANCELLED
        except WaitTimeout:
            return False
        return False  # pragma: no cover - watch() always ends with a final state

    def retry(self, job_id: str, more_attempts: int = 1) -> JobState:
        """Run a failed, timed-out or cancelled job again (see `Queue.retry`)."""
        return _client.retry(self.store, job_id, more_attempts)

    def hold(self, job_id: str) -> bool:
        """Hold a job that has not started (see `Queue.hold`)."""
        return _client.hold(self.store, job_id)

    def release(self, job_id: str) -> bool:
        """Release a held job (see `Queue.release`)."""
        return _client.release(self.store, job_id)

    def prune(
        self,
        older_than: float | dt.timedelta,
        statuses: Iterable[JobStatus | str] | None = None,
        *,
        queue: str | None = None,
    ) -> int:
        """Delete final jobs that ended more than `older_than` ago (see `Queue.prune`)."""
        return _client.prune(self.store, self.name, self.clock, older_than, statuses, queue)

    # -- flow control ---------------------------------------------------------------------------

    def pause(self, name: str | None = None) -> bool:
        """Pause a queue (default: this one); True if this call paused it (see `Queue.pause`)."""
        return _client.pause(self.store, self.name, name)

    def resume(self, name: str | None = None) -> bool:
        """Resume a paused queue (default: this one); True if this call resumed it."""
        return _client.resume(self.store, self.name, name)

    def configure(
        self,
        name: str | None = None,
        *,
        concurrency: int | Unset | None = UNSET,
        rate: str | Unset | None = UNSET,
    ) -> QueueInfo:
        """Change a queue's caps; None removes one (see `Queue.configure`)."""
        return _client.configure(self.store, self.name, name, concurrency, rate)

    def info(self, name: str | None = None) -> QueueInfo:
        """A queue's flow control (default: this one): paused, concurrency and rate caps."""
        return _client.info(self.store, self.name, name)
