"""
What `Queue` (async) and `SyncQueue` (blocking) share: each operation's checks
and its one synchronous step, and the rules of ``wait``/``watch`` polling.

Every function here is one plain call on the store. `Queue` runs it in its I/O
threads (``await self.io(_client.x, ...)``); `SyncQueue` calls it in place, with
no event loop. So an operation added to both is written once here, and each
front only says how it waits: on the event loop, or by blocking its thread.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable

from . import _names, tasks
from ._clock import Clock
from ._queue_settings import Rate, Unset
from ._wakeups import signals
from .errors import InvalidSettings, JobCancelled, JobFailed, JobNotDone, PushError, WaitTimeout
from .model import Job
from .states import JobPage, JobState, JobStatus, QueueInfo, WorkflowState
from .store import Store
from .workflow import Workflow

#: What prune() deletes unless told otherwise: corrupt jobs are kept for inspection.
DEFAULT_PRUNE = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.TIMED_OUT, JobStatus.CANCELLED)


def open_store(
    root: str | os.PathLike[str],
    name: str,
    *,
    clock: Clock,
    staleness: float | None,
    reserve_bytes: int,
    durable: bool,
) -> tuple[str, Store]:
    """Check a queue's root and name; return the name and a store on the root (no I/O)."""
    if not os.fspath(root).strip():  # "" would make the current directory a root
        raise ValueError("the queue root must be a directory path, not an empty string")
    name = _names.check_name("queue", name)
    store = Store(
        root, clock=clock, staleness=staleness, reserve_bytes=reserve_bytes, durable=durable
    )
    return name, store


# -- push ------------------------------------------------------------------------------


def check_job(job: Job) -> None:
    """Refuse what is not a Job, and kwargs that do not fit a task known in this process."""
    if not isinstance(job, Job):
        raise TypeError(f"push() takes an fsjobs.Job, not {type(job).__name__}")
    task = tasks.find(job.func)
    if task is not None:
        task.check_kwargs(job.kwargs, uploads=job.uploads)
        task.check_job(job)


def push_many(store: Store, queue: str, jobs: Iterable[Job]) -> list[str]:
    """
    Check and push `jobs` to `queue`, then wake this process's idle workers. Not
    atomic: a failure after publishing some is a `PushError` naming them.
    """
    items = list(jobs)
    for job in items:
        check_job(job)
    published: list[str] = []
    try:
        ids = store.push_many([(j, queue) for j in items], published)
    except Exception as exc:
        if not published:
            raise  # nothing was pushed: the error as it is
        signals.pushed(store.root)
        raise PushError(
            f"push stopped after publishing {len(published)} of {len(items)} jobs: {exc}",
            published,
        ) from exc
    signals.pushed(store.root)
    return ids


def push_workflow(store: Store, queue: str, wf: Workflow) -> str:
    """Check every step of `wf`, push them all or none, then wake this process's workers."""
    if not isinstance(wf, Workflow):
        raise TypeError(f"push_workflow() takes an fsjobs.Workflow, not {type(wf).__name__}")
    for step in wf.order():
        check_job(step.job)
    wf_id = store.push_workflow(wf, queue)
    signals.pushed(store.root)
    return wf_id


def list_workflows(store: Store, limit: int) -> list[WorkflowState]:
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
    return store.list_workflows(limit)


# -- outcomes and polling ------------------------------------------------------------------


def outcome(state: JobState) -> JobState:
    """Return a completed state; raise JobCancelled, JobFailed or JobNotDone for any other."""
    if state.status is JobStatus.COMPLETED:
        return state
    if state.status is JobStatus.CANCELLED:
        raise JobCancelled(state)
    if state.status.is_final:
        raise JobFailed(state)
    raise JobNotDone(state)


def check_interval(interval: float | None) -> None:
    if interval is not None and not interval > 0:  # also refuses NaN
        raise ValueError(f"interval must be a positive number of seconds, not {interval}")


class Poll:
    """
    The rules of ``watch``: report a state only when it changed, give up at the
    deadline, and look again every `interval` seconds (None: from 10 ms growing
    by half each time to 1 s). A job finished in this process wakes the watcher
    before its pause ends.
    """

    def __init__(
        self, job_id: str, interval: float | None, timeout: float | None, clock: Clock
    ) -> None:
        check_interval(interval)
        self.job_id = job_id
        self.clock = clock
        self.timeout = timeout
        self.deadline = None if timeout is None else clock.monotonic() + timeout
        self.delay = 0.01 if interval is None else interval
        self.grows = interval is None
        self.last: JobState | None = None

    def is_news(self, state: JobState) -> bool:
        """True if `state` differs from the last state reported (and remember it)."""
        if state == self.last:
            return False
        self.last = state
        return True

    def pause(self, state: JobState) -> float:
        """Seconds to wait before looking again; WaitTimeout once the deadline has passed."""
        remaining = None if self.deadline is None else self.deadline - self.clock.monotonic()
        if remaining is not None and remaining <= 0:
            raise WaitTimeout(
                f"job {self.job_id} is still {state.status.value} after {self.timeout} s"
            )
        delay = self.delay if remaining is None else min(self.delay, remaining)
        if self.grows:
            self.delay = min(self.delay * 1.5, 1.0)
        return delay


# -- operator actions ---------------------------------------------------------------------


def cancel(store: Store, job_id: str) -> bool | None:
    """
    Ask for the job to be cancelled: True if it is cancelled now, False if it had
    already ended otherwise, None if it is running (its worker stops it: wait).
    """
    status = store.cancel(job_id)
    if status is JobStatus.CANCELLED:
        signals.finished(store.root, job_id)
        return True
    if status is not JobStatus.RUNNING:
        return False
    return None


def retry(store: Store, job_id: str, more_attempts: int) -> JobState:
    store.retry(job_id, more_attempts)
    signals.pushed(store.root)
    return store.get(job_id)


def hold(store: Store, job_id: str) -> bool:
    return store.hold(job_id) is JobStatus.HELD


def release(store: Store, job_id: str) -> bool:
    if store.release_hold(job_id) is None:
        return False
    signals.pushed(store.root)
    return True


def prune(
    store: Store,
    own: str,
    clock: Clock,
    older_than: float | dt.timedelta,
    statuses: Iterable[JobStatus | str] | None,
    queue: str | None,
) -> int:
    """Delete final jobs of `queue` (default `own`; ``"*"``: all) that ended `older_than` ago."""
    age = older_than if isinstance(older_than, dt.timedelta) else dt.timedelta(seconds=older_than)
    if age < dt.timedelta(0):
        raise ValueError("older_than must not be negative")
    wanted = [JobStatus(s) for s in (statuses or DEFAULT_PRUNE)]
    cutoff = clock.now() - age
    names = [queue or own]
    if names == ["*"]:
        names = store.queues()
    pruned = sum(store.prune(_names.check_name("queue", n), cutoff, wanted) for n in names)
    store.prune_tick_keys(names, cutoff)  # periodic ticks' keys: only roots that have some
    return pruned


# -- flow control -------------------------------------------------------------------------------


def pause(store: Store, own: str, name: str | None) -> bool:
    """Pause a queue (default `own`); True if this call paused it."""
    return store.pause(_names.check_name("queue", name or own))


def resume(store: Store, own: str, name: str | None) -> bool:
    """Resume a queue; True if this call resumed it. Wakes this process's idle workers."""
    done = store.resume(_names.check_name("queue", name or own))
    if done:
        signals.pushed(store.root)
    return done


def configure(
    store: Store,
    own: str,
    name: str | None,
    concurrency: int | Unset | None,
    rate: str | Unset | None,
) -> QueueInfo:
    """Change the caps given (None removes one); the queue's flow control after it."""
    queue = _names.check_name("queue", name or own)
    store.configure(queue, concurrency, rate)
    signals.pushed(store.root)  # idle workers of this process look at the new caps
    return info(store, own, queue)


def info(store: Store, own: str, name: str | None) -> QueueInfo:
    """A queue's pause and caps, read now; InvalidSettings if its settings file is unusable."""
    state = store.flow(_names.check_name("queue", name or own), max_age=0)
    if state.problem is not None:
        raise InvalidSettings(state.problem)
    return info_of(state.paused, state.settings.concurrency, state.settings.rate)


def info_of(paused: bool, concurrency: int | None, rate: Rate | None) -> QueueInfo:
    return QueueInfo(paused, concurrency, None if rate is None else str(rate))


# -- listing ---------------------------------------------------------------------------------


def list_jobs(
    store: Store,
    own: str,
    status: JobStatus | str | None,
    limit: int,
    queue: str | None,
    cursor: str | None,
) -> JobPage:
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
    wanted = None if status is None else JobStatus(status)
    name = queue or own
    queues = None if name == "*" else [_names.check_name("queue", name)]
    return store.list_jobs(queues, wanted, limit, cursor)


def counts(store: Store, own: str, queue: str | None) -> dict[JobStatus, int]:
    name = queue or own
    queues = store.queues() if name == "*" else [_names.check_name("queue", name)]
    total = dict.fromkeys(JobStatus, 0)
    for q in queues:
        for status, n in store.counts(q).items():
            total[status] += n
    return total
