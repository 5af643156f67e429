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
    """Where a job is in its life. The value is the on-disk spelling."""

    PENDING = "pending"
    SCHEDULED = "scheduled"  #: first attempt waiting for `scheduled_at`
    RUNNING = "running"
    RETRYING = "retrying"  #: waiting out a backoff before the next attempt
    COMPLETED = "completed"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    HELD = "held"  #: an operator hold: not final, keeps its unique key
    CORRUPT = "corrupt"  #: quarantined: its files are malformed; final

    @property
    def is_final(self) -> bool:
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
#: Statuses whose markers live in a per-day directory named after the status.
FINAL_DIRS: tuple[JobStatus, ...] = (
    JobStatus.COMPLETED,
    JobStatus.FAILED,
    JobStatus.TIMED_OUT,
    JobStatus.CANCELLED,
    JobStatus.HELD,
    JobStatus.CORRUPT,
)


@attrs.frozen
class ErrorInfo:
    """Why an attempt failed: the exception's type, its message and its traceback."""

    type: str
    message: str
    traceback: str = ""


@attrs.frozen(kw_only=True)
class JobState:
    """A snapshot of one job, as `Queue.get` returns it."""

    id: str
    func: str
    kwargs: dict[str, JSON]
    queue: str
    status: JobStatus
    priority: int
    attempts: int
    max_attempts: int
    created_at: dt.datetime
    scheduled_at: dt.datetime | None = None
    #: when a pending, scheduled or retrying job is due: its next run, at the earliest
    ready_at: dt.datetime | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    progress: float | None = None
    progress_message: str | None = None
    result: JSON = None
    error: ErrorInfo | None = None
    worker: str | None = None
    unique_key: str | None = None
    outputs: tuple[str, ...] = ()

    @property
    def is_done(self) -> bool:
        """True once the job is final (completed, failed, timed out, cancelled or corrupt)."""
        return self.status.is_final

    @property
    def duration(self) -> float | None:
        """Seconds the last attempt ran, once it finished."""
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


@attrs.frozen
class Event:
    """
    One record of a job's journal, as `Queue.history` returns it: what happened,
    when, in which epoch (each claim, rescue or retry opens a new one) and with
    which data (the spec for ``pushed``; worker, error, result, progress…).
    """

    type: str
    at: dt.datetime
    epoch: int
    attempt: int | None = None
    data: dict[str, JSON] = attrs.field(factory=dict)
    #: True for a record a fenced worker wrote after its job was rescued: it does not count.
    fenced: bool = False
