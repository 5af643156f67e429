"""
Where a job's marker goes, decided without touching a file.

Every state change of the protocol is one rename of a marker (or one ``O_EXCL``
create). This module decides, for each step, the marker's next directory and
name and the journal record that tells of it; the store's step modules only
carry the decisions out. Pure functions of names and numbers: property tests
hold them to the invariants of DESIGN.md §5 (epochs only grow with each change
of hands, attempts never go down and never pass the maximum, a final marker is
named by the id alone).
"""

from __future__ import annotations

import enum

import attrs

from ._names import Marker
from .journal import RecordType
from .states import JobStatus


class Where(enum.StrEnum):
    """A state directory of a queue: where a marker can be."""

    WAITING = "waiting"  #: not due yet: scheduled, or backing off before a retry
    PENDING = "pending"  #: due; claimed in byte order of the names
    RUNNING = "running"  #: claimed by a worker (``<marker>.<worker>``)
    COMPLETED = "completed"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    HELD = "held"
    CORRUPT = "corrupt"
    #: waiting for the jobs it depends on; named by id, like held and final markers
    BLOCKED = "blocked"

    @property
    def is_live(self) -> bool:
        """Waiting, pending or running: named by a `Marker`, in time buckets or by worker."""
        return self in _LIVE

    @property
    def is_final(self) -> bool:
        """A directory that holds finished jobs (held is not final)."""
        return self in _FINAL


_LIVE = frozenset({Where.WAITING, Where.PENDING, Where.RUNNING})
_FINAL = frozenset({Where.COMPLETED, Where.FAILED, Where.TIMED_OUT, Where.CANCELLED, Where.CORRUPT})
#: Directories named after a status, sharded by day, holding markers named by id.
BY_DAY: tuple[Where, ...] = (*sorted(_FINAL, key=list(Where).index), Where.HELD, Where.BLOCKED)


@attrs.frozen
class Location:
    """Where a job's marker is: the state directory, and the parsed name if live."""

    where: Where
    marker: Marker | None = None
    worker: str | None = None
    #: a step of a committed workflow whose marker is still staged in tmp/: it is
    #: reported as where it is going (pending, waiting or blocked)
    staged: bool = False

    @property
    def status(self) -> JobStatus:
        """The status a marker's location means (DESIGN.md §3: status from names)."""
        if self.where is Where.WAITING:
            first = self.marker is None or self.marker.attempt == 0
            return JobStatus.SCHEDULED if first else JobStatus.RETRYING
        return JobStatus(self.where.value)


class Ending(enum.StrEnum):
    """How a worker ends an attempt it claimed."""

    COMPLETED = "completed"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    CORRUPT = "corrupt"  #: the job's own files are unusable: quarantined
    RETRY = "retrying"  #: back to waiting/ until the backoff ends; the attempt counts
    GIVE_BACK = "released"  #: back to pending/, the attempt given back (the worker is stopping)


@attrs.frozen
class Target:
    """Where a finishing owner renames its running marker, and the record that says so."""

    where: Where
    name: str
    record: RecordType
    #: the marker's new name when the target is live (waiting or pending)
    marker: Marker | None = None


def pushed(priority: int, ready_ms: int, job_id: str, max_attempts: int, now_ms: int) -> Location:
    """A new job: pending if it is due, else waiting; epoch 0, no attempt yet."""
    marker = Marker(priority, ready_ms, job_id, 0, 0, max_attempts)
    return Location(Where.PENDING if ready_ms <= now_ms else Where.WAITING, marker)


def claimed(marker: Marker) -> tuple[Marker, bool]:
    """
    The running marker of a claim (a change of hands: epoch + 1, one more attempt),
    and whether the job may run: a marker that already shows its last attempt
    (that attempt's worker died, or could not publish) is not run again but ends
    failed.
    """
    runnable = marker.attempt < marker.max_attempts
    running = attrs.evolve(
        marker, epoch=marker.epoch + 1, attempt=min(marker.attempt + 1, marker.max_attempts)
    )
    return running, runnable


def finished(marker: Marker, ending: Ending, retry_at_ms: int | None = None) -> Target:
    """Where the owner of `marker` (a running one) puts it for `ending`; the epoch is kept."""
    if ending is Ending.RETRY:
        if retry_at_ms is None:
            raise ValueError("a retry needs the time it is due")
        later = attrs.evolve(marker, ready_ms=retry_at_ms)
        return Target(Where.WAITING, later.name, RecordType.RETRYING, later)
    if ending is Ending.GIVE_BACK:
        back = attrs.evolve(marker, attempt=max(0, marker.attempt - 1))
        return Target(Where.PENDING, back.name, RecordType.RELEASED, back)
    where = Where(ending.value)
    return Target(where, marker.job_id, RecordType(ending.value))


def publish_failed(marker: Marker) -> Marker:
    """
    Where a running marker goes when its outcome could not be recorded: back to
    pending with the attempt counted (it ran), so a job cannot run without end.
    """
    return marker


def rescued(marker: Marker) -> Marker:
    """A dead or silent worker's running marker, back to pending: a change of hands."""
    return attrs.evolve(marker, epoch=marker.epoch + 1)


def reopened(marker: Marker, epoch: int) -> Marker:
    """The name of a marker that a hold, cancel or release moved: the same name, a new epoch."""
    return attrs.evolve(marker, epoch=epoch)


def released_from_hold(held: Marker, epoch: int, now_ms: int) -> Location:
    """A held job goes back to where it was held from, in a new epoch."""
    back = attrs.evolve(held, epoch=epoch)
    return Location(Where.PENDING if back.ready_ms <= now_ms else Where.WAITING, back)


def unblocked(
    priority: int, now_ms: int, scheduled_ms: int | None, job_id: str, epoch: int, max_attempts: int
) -> Location:
    """
    A blocked job whose parents all completed: pending now (waiting if its
    `scheduled_at` is still ahead), in a new epoch, with no attempt used.
    """
    ready = max(now_ms, scheduled_ms or 0)
    marker = Marker(priority, ready, job_id, epoch, 0, max_attempts)
    return Location(Where.PENDING if ready <= now_ms else Where.WAITING, marker)


def retried(
    priority: int, now_ms: int, job_id: str, epoch: int, attempts: int, more: int, limit: int
) -> Marker:
    """A final job run again: pending now, in a new epoch, with `more` attempts added."""
    return Marker(priority, now_ms, job_id, epoch, attempts, min(attempts + more, limit))
