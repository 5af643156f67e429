"""
What a job is and was: its status, and the frozen snapshots the API returns.

Pure data with no fsjobs imports but strict JSON's type, so that every other
module (the errors that carry a `JobState` among them) can build on it.
"""

from __future__ import annotations

import datetime as dt
import enum

import attrs

from ._json import JSON


class JobStatus(enum.StrEnum):
    """
    Where a job is in its life. The value is the on-disk spelling (a directory
    name), so ``JobStatus("failed")`` works and ``"failed" == JobStatus.FAILED``.

    Final statuses (`is_final`): completed, failed, timed_out, cancelled and
    corrupt. A job that is not final keeps its unique key.
    """

    #: waiting for the jobs it depends on (`Job.depends_on`, a workflow's ``after``)
    #: to complete; not run, not final, keeps its unique key
    BLOCKED = "blocked"

    #: due, waiting for a worker
    PENDING = "pending"
    #: the first attempt is waiting for `Job.scheduled_at`
    SCHEDULED = "scheduled"
    #: a worker is running an attempt
    RUNNING = "running"
    #: an attempt failed and attempts remain: waiting out the backoff before the next one
    RETRYING = "retrying"
    #: final: the task returned, and `JobState.result` holds what it returned
    COMPLETED = "completed"
    #: final: the last attempt raised, or an attempt failed in a way no retry can fix
    #: (an unknown task, arguments that do not fit, a result that is not JSON)
    FAILED = "failed"
    #: final: the last attempt ran out of time
    TIMED_OUT = "timed_out"
    #: final: cancelled with `Queue.cancel` (or ``fsjobs cancel``)
    CANCELLED = "cancelled"
    #: held by `Queue.hold` (or ``fsjobs hold``) until `Queue.release`: not run, not
    #: final, keeps its unique key
    HELD = "held"
    #: final: quarantined because the job's own files are unusable; frees its unique key
    CORRUPT = "corrupt"

    @property
    def is_final(self) -> bool:
        """True for completed, failed, timed_out, cancelled and corrupt."""
        return self in _FINAL


_FINAL = frozenset(
    {
        JobStatus.COMPLETED,
        JobStatus.FAILED,
        JobStatus.TIMED_OUT,
        JobStatus.CANCELLED,
        JobStatus.CORRUPT,
    }
)
#: Statuses whose markers live in a per-day final directory named after the status.
FINAL_DIRS: tuple[JobStatus, ...] = (
    JobStatus.COMPLETED,
    JobStatus.FAILED,
    JobStatus.TIMED_OUT,
    JobStatus.CANCELLED,
    JobStatus.HELD,
    JobStatus.CORRUPT,
    JobStatus.BLOCKED,
)


@attrs.frozen
class ErrorInfo:
    """Why an attempt failed, as `JobState.error` and `JobFailed` carry it."""

    #: The exception's class name: the bare name for built-ins (``"ValueError"``),
    #: ``"module.QualName"`` for others (``"fsjobs.errors.UnknownTask"``), or a name for
    #: a failure that was not the task's exception: ``"WorkerLost"``, ``"CorruptJob"``,
    #: ``"fsjobs.errors.ResultNotSerializable"`` (a result that is not JSON, or over 16 MiB).
    type: str
    #: ``str(exception)``; may be empty.
    message: str
    #: The formatted traceback, or ``""``.
    traceback: str = ""


@attrs.frozen(kw_only=True)
class JobState:
    """
    A snapshot of one job, as `Queue.get`, `Queue.wait`, `Queue.watch` and
    `Queue.list_jobs` return it. Two snapshots are equal when every field is.
    """

    #: The job id: 22 characters, sortable by push time.
    id: str
    #: The task name.
    func: str
    #: The keyword arguments, as pushed.
    kwargs: dict[str, JSON]
    #: The queue the job was pushed to.
    queue: str
    #: Where the job is now.
    status: JobStatus
    #: As pushed.
    priority: int
    #: Attempts started so far, including one whose worker died.
    attempts: int
    #: Attempts allowed (a `Queue.retry` raises it).
    max_attempts: int
    #: When the job was pushed.
    created_at: dt.datetime
    #: As pushed.
    scheduled_at: dt.datetime | None = None
    #: When a pending, scheduled or retrying job is due: its next run, at the earliest.
    ready_at: dt.datetime | None = None
    #: When the latest attempt started.
    started_at: dt.datetime | None = None
    #: When the last attempt ended; None while the job is pending, scheduled, retrying
    #: or running.
    finished_at: dt.datetime | None = None
    #: The latest attempt's last progress report, 0 to 100, or None.
    progress: float | None = None
    #: The message of that report.
    progress_message: str | None = None
    #: What the task returned, for a completed job; else None.
    result: JSON = None
    #: Why the latest failed attempt failed (kept while the job retries), or None.
    error: ErrorInfo | None = None
    #: The worker running the job now, or the one that ran its latest attempt.
    worker: str | None = None
    #: As pushed.
    unique_key: str | None = None
    #: Names of the files the last attempt wrote into ``ctx.output_dir``;
    #: `Queue.read_output` reads them.
    outputs: tuple[str, ...] = ()
    #: The ids of the jobs this one waits for (`Job.depends_on`; in a workflow, its
    #: ``after`` steps too).
    depends_on: tuple[str, ...] = ()
    #: The id of the workflow this job is a step of, or None.
    workflow: str | None = None
    #: Its step name in that workflow, or None.
    step: str | None = None

    @property
    def is_done(self) -> bool:
        """``status.is_final``: the job will not change any more (unless retried)."""
        return self.status.is_final

    @property
    def duration(self) -> float | None:
        """Seconds from `started_at` to `finished_at`, once both are known."""
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


class WorkflowStatus(enum.StrEnum):
    """Where a workflow is: running until every step is final, then how it ended."""

    #: some step is not final yet (pending, blocked, running, retrying...)
    RUNNING = "running"
    #: every step completed
    COMPLETED = "completed"
    #: some step failed, timed out or was quarantined as corrupt
    FAILED = "failed"
    #: no step failed, but some were cancelled
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self is not WorkflowStatus.RUNNING


def workflow_status(statuses: list[JobStatus]) -> WorkflowStatus:
    """The status of a workflow whose steps have `statuses`."""
    if not all(s.is_final for s in statuses):
        return WorkflowStatus.RUNNING
    if all(s is JobStatus.COMPLETED for s in statuses):
        return WorkflowStatus.COMPLETED
    failed = (JobStatus.FAILED, JobStatus.TIMED_OUT, JobStatus.CORRUPT)
    if any(s in failed for s in statuses):
        return WorkflowStatus.FAILED
    return WorkflowStatus.CANCELLED


@attrs.frozen(kw_only=True)
class WorkflowState:
    """A snapshot of a workflow, as `Queue.get_workflow` returns it."""

    #: The workflow id (the job-id format: 22 characters, sortable by push time).
    id: str
    #: The name given to `Workflow`.
    name: str
    #: RUNNING while any step is unfinished; then COMPLETED, FAILED or CANCELLED.
    status: WorkflowStatus
    #: Each step's name and current state, in the order the steps were added.
    steps: dict[str, JobState]
    #: Each step's ``after`` steps (its parents within the workflow).
    after: dict[str, tuple[str, ...]] = attrs.field(factory=dict)
    #: When the workflow was pushed.
    created_at: dt.datetime | None = None

    @property
    def is_done(self) -> bool:
        """True once every step is final."""
        return self.status.is_final

    def depths(self) -> dict[str, int]:
        """Each step's depth: the longest chain of steps before it (0 for a root)."""
        depth: dict[str, int] = {}
        for name in self.steps:  # the manifest lists parents before their children
            depth[name] = 1 + max((depth.get(a, 0) for a in self.after.get(name, ())), default=-1)
        return depth


@attrs.frozen
class Event:
    """
    One record of a job's journal, as `Queue.history` returns it: what happened,
    when, in which epoch (each claim, rescue or retry opens a new one) and with
    which data (the spec for ``pushed``; worker, error, result, progress…).
    """

    #: The record type: ``pushed``, ``claimed``, ``progress``, ``failed``,
    #: ``retrying``, ``completed``…; the on-disk format page lists them all.
    type: str
    #: When the record was written (UTC).
    at: dt.datetime
    #: The journal segment: 0 for the push; each claim, rescue, retry or hold opens the next.
    epoch: int
    #: The attempt the record belongs to, where the record says.
    attempt: int | None = None
    #: The rest of the record: the spec for ``pushed``, the worker for ``claimed``, the
    #: error and traceback for ``failed``, the result for ``completed``, percent and
    #: message for ``progress``.
    data: dict[str, JSON] = attrs.field(factory=dict)
    #: True for a record a fenced worker wrote after its job was rescued: it does not count.
    fenced: bool = False


class JobPage(list[JobState]):
    """
    One page of `Queue.list_jobs`: the jobs, newest first, and `next_cursor`,
    the cursor of the next page, or None when this page is the last. Pass it
    back as ``cursor=`` to go on; every job is on exactly one page.
    """

    #: The ``cursor=`` of the next page; None when this page is the last.
    next_cursor: str | None

    def __init__(self, states: list[JobState], next_cursor: str | None) -> None:
        super().__init__(states)
        self.next_cursor = next_cursor

    @property
    def cut(self) -> bool:
        """True when more jobs follow on later pages."""
        return self.next_cursor is not None


@attrs.frozen
class QueueInfo:
    """
    A queue's flow control, as `Queue.info` returns it: whether it is paused,
    and its caps across all workers and hosts (None: no cap).
    """

    #: Workers claim nothing from a paused queue (`Queue.pause`); pushes still succeed.
    paused: bool = False
    #: At most this many of its jobs run at once (`Queue.configure`).
    concurrency: int | None = None
    #: At most this many claims per window, as ``"N/s"``, ``"N/m"`` or ``"N/h"``.
    rate: str | None = None
