"""
What a job's files say about it: folding journal segments into a `JobState`.

Pure functions over what the store has read; no I/O here. The rules: status
comes from where the marker is (names are the truth), the outcome and result
from the newest segment that still counts, and a segment whose next epoch was
opened by a rescue was fenced: its late terminal records are ignored.

Everything here reads untrusted data: a field of the wrong type is read as
missing, never raised on, so one damaged job cannot break a listing.
"""

from __future__ import annotations

import datetime as dt
import typing
from collections.abc import Callable, Iterable

from . import _ids, _names, journal
from ._clock import from_ms, parse_time
from ._json import JSON
from ._transitions import Location, Where
from .journal import Record, RecordType
from .states import ErrorInfo, Event, JobState, JobStatus

Segments: typing.TypeAlias = list[tuple[int, journal.ReadResult]]
#: What `build_state` asks of the store: the value of a result file, or the error.
ResultReader = Callable[[str], JSON]


class ResultUnreadable(Exception):
    """A completed job's result file could not be read (raised by a `ResultReader`)."""


def build_state(
    job_id: str,
    queue: str,
    spec: dict[str, JSON],
    segments: Segments,
    location: Location,
    read_result: ResultReader,
    list_outputs: Callable[[int], tuple[str, ...]] = lambda _: (),
) -> JobState:
    """The JobState of a job from its spec, its journal segments and where its marker is."""
    status = location.status
    marker = location.marker
    fold = Fold(job_id)
    for i, (epoch, seg) in enumerate(segments):
        fold.add(epoch, seg.records, fenced=was_rescued(segments, i))
    attempts = marker.attempt if marker is not None else fold.attempts
    max_attempts = (
        marker.max_attempts
        if marker is not None
        else fold.max_attempts or _int(spec, "max_attempts", 1)
    )
    result: JSON = None
    error = fold.error
    if status is JobStatus.COMPLETED and fold.terminal is not None:
        result = fold.terminal.data.get("result")
        result_file = fold.terminal.get_str("result_file")
        if result_file is not None:
            try:
                result = read_result(result_file)
            except ResultUnreadable as exc:
                error = ErrorInfo("ResultUnreadable", str(exc))
    live = status in (JobStatus.PENDING, JobStatus.SCHEDULED, JobStatus.RETRYING)
    ran = status is JobStatus.RUNNING or status.is_final
    outputs = list_outputs(fold.claim_epoch) if ran and fold.claim_epoch is not None else ()
    kwargs = spec.get("kwargs")
    unique_key = spec.get("unique_key")
    workflow = spec.get("workflow")
    workflow = workflow if isinstance(workflow, dict) else {}
    return JobState(
        id=job_id,
        func=_str(spec, "func"),
        kwargs=kwargs if isinstance(kwargs, dict) else {},
        queue=queue,
        status=status,
        priority=_int(spec, "priority", 0),
        attempts=attempts,
        max_attempts=max_attempts,
        created_at=_time(spec, "created_at") or from_ms(_ids.id_time_ms(job_id)),
        scheduled_at=_time(spec, "scheduled_at"),
        ready_at=from_ms(marker.ready_ms) if live and marker is not None else None,
        started_at=fold.started_at,
        finished_at=None if live or status is JobStatus.RUNNING else fold.finished_at,
        progress=fold.progress,
        progress_message=fold.progress_message,
        result=result,
        error=error,
        worker=location.worker or fold.worker,
        unique_key=unique_key if isinstance(unique_key, str) else None,
        outputs=outputs,
        depends_on=depends_on_of(spec),
        workflow=_str(workflow, "id") or None,
        step=_str(workflow, "step") or None,
    )


def depends_on_of(spec: dict[str, JSON]) -> tuple[str, ...]:
    """The parent ids a spec names (anything that is not a job id is left out)."""
    parents = spec.get("depends_on")
    if not isinstance(parents, list):
        return ()
    return tuple(p for p in parents if isinstance(p, str) and _ids.is_job_id(p))


def events_of(segments: Segments) -> list[Event]:
    """Every valid record of every segment, oldest first, a fenced worker's late ones marked."""
    events = []
    for i, (epoch, seg) in enumerate(segments):
        fenced = was_rescued(segments, i)
        for r in seg.records:
            events.append(
                Event(
                    type=r.type.value,
                    at=r.at,
                    epoch=epoch,
                    attempt=r.get_int("attempt"),
                    data=dict(r.data),
                    fenced=fenced and r.type in journal.TERMINAL,
                )
            )
    return events


def spec_in(segments: Segments) -> dict[str, JSON] | None:
    """The spec from segment 0's first record, if it is there and names a valid queue."""
    if not segments or segments[0][0] != 0 or not segments[0][1].records:
        return None
    first = segments[0][1].records[0]
    spec = first.data.get("spec")
    if first.type is not RecordType.PUSHED or not isinstance(spec, dict):
        return None
    queue = spec.get("queue")
    if not isinstance(queue, str) or not _names.NAME_RE.fullmatch(queue):
        return None
    return spec


def was_rescued(segments: Segments, i: int) -> bool:
    """
    True if segment i's owner was fenced: the next epoch was opened by a rescue.
    An owner that published its outcome moved its marker, so nobody could have
    rescued it; any terminal record it holds was then written too late to count.

    A ``completed`` record followed by any later epoch is fenced too, even when
    the next epoch's first record is missing (its opener died, or could not
    write it, between its rename and its record): a published completion is
    final, and nothing opens an epoch after it.
    """
    if i + 1 >= len(segments):
        return False
    epoch, seg = segments[i]
    if any(r.type is RecordType.COMPLETED for r in seg.records):
        return True
    next_epoch, next_seg = segments[i + 1]
    return (
        next_epoch == epoch + 1
        and bool(next_seg.records)
        and next_seg.records[0].type is RecordType.RESCUED
    )


def unreadable_state(job_id: str, queue: str, where: Where, why: str) -> JobState:
    """What can be said of a job whose own files cannot be read: its place, and why."""
    return JobState(
        id=job_id,
        func="",
        kwargs={},
        queue=queue,
        status=Location(where).status,
        priority=0,
        attempts=0,
        max_attempts=1,
        created_at=from_ms(_ids.id_time_ms(job_id)),
        error=ErrorInfo("CorruptJob", why),
    )


def last_release(segments: Segments, before_epoch: int) -> Record | None:
    """The newest record of the epochs before `before_epoch`, if it is a `released` one."""
    for epoch, seg in reversed(segments):
        if epoch < before_epoch and seg.records:
            last = seg.records[-1]
            return last if last.type is RecordType.RELEASED else None
    return None


def _int(spec: dict[str, JSON], key: str, default: int) -> int:
    value = spec.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _str(spec: dict[str, JSON], key: str) -> str:
    value = spec.get(key)
    return value if isinstance(value, str) else ""


def _time(spec: dict[str, JSON], key: str) -> dt.datetime | None:
    value = spec.get(key)
    if not isinstance(value, str):
        return None
    try:
        return parse_time(value)
    except ValueError:
        return None


class Fold:
    """What the journal says about a job, folded over every valid record in epoch order."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.attempts = 0
        self.max_attempts = 0
        self.started_at: dt.datetime | None = None
        self.finished_at: dt.datetime | None = None
        self.worker: str | None = None
        self.error: ErrorInfo | None = None
        self.progress: float | None = None
        self.progress_message: str | None = None
        self.terminal: Record | None = None
        #: the epoch of the newest claim: its attempt's outputs are the job's outputs
        self.claim_epoch: int | None = None

    def add(self, epoch: int, records: Iterable[Record], *, fenced: bool = False) -> None:
        """Fold one segment; a `fenced` segment's terminal records are a zombie's: ignored."""
        for r in records:
            if fenced and r.type in journal.TERMINAL:
                continue
            attempt = r.get_int("attempt")
            if r.type is RecordType.CLAIMED:
                self.started_at, self.worker = r.at, r.get_str("worker")
                self.claim_epoch = epoch
                self.finished_at, self.terminal = None, None
                self.progress, self.progress_message = None, None
            elif r.type is RecordType.PROGRESS:
                pct = r.data.get("percent")
                self.progress = float(pct) if isinstance(pct, int | float) else None
                self.progress_message = r.get_str("message")
            elif r.type in journal.TERMINAL:
                self.terminal, self.finished_at = r, r.at
                self.max_attempts = r.get_int("max_attempts") or self.max_attempts
                err = r.data.get("error")
                if isinstance(err, dict):
                    self.error = ErrorInfo(
                        str(err.get("type", "")),
                        str(err.get("message", "")),
                        str(err.get("traceback", "")),
                    )
                elif r.type is RecordType.COMPLETED:
                    self.error = None
            if attempt is not None:
                self.attempts = attempt
