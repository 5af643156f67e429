"""
What a job's files say about it: folding journal segments into a `JobState`.

Pure functions over what the store has read; no I/O here. The rules: status
comes from where the marker is (names are the truth), the outcome and result
from the newest segment that still counts, and a segment whose next epoch was
opened by a rescue was fenced: its late terminal records are ignored.
"""

from __future__ import annotations

import datetime as dt
import typing
from collections.abc import Callable, Iterable

import attrs

from . import _ids, _names, journal
from ._clock import from_ms
from ._names import Marker
from .journal import JSON, Record, RecordType
from .model import ErrorInfo, Event, JobState, JobStatus

Segments: typing.TypeAlias = list[tuple[int, journal.ReadResult]]


@attrs.frozen
class Location:
    """Where a job's marker is: the state directory, and the parsed name if live."""

    where: str  # waiting, pending, running or a final JobStatus value
    marker: Marker | None = None
    worker: str | None = None


def build_state(
    job_id: str,
    queue: str,
    spec: dict[str, JSON],
    segments: Segments,
    location: Location,
    read_result: Callable[[str], JSON],
    list_outputs: Callable[[int], tuple[str, ...]] = lambda _: (),
) -> JobState:
    """The JobState of a job from its spec, its journal segments and where its marker is."""
    where = location.where
    marker = location.marker
    if where in (_names.WAITING, _names.PENDING, _names.RUNNING):
        assert marker is not None
        if where == _names.WAITING:
            status = JobStatus.SCHEDULED if marker.attempt == 0 else JobStatus.RETRYING
        else:
            status = JobStatus(where)
    else:
        status = JobStatus(where)
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
    if status is JobStatus.COMPLETED and fold.terminal is not None:
        result = fold.terminal.data.get("result")
        result_file = fold.terminal.get_str("result_file")
        if result_file is not None:
            result = read_result(result_file)
    sched = spec.get("scheduled_at")
    live = status in (JobStatus.PENDING, JobStatus.SCHEDULED, JobStatus.RETRYING)
    ran = status is JobStatus.RUNNING or status.is_final
    outputs = list_outputs(fold.claim_epoch) if ran and fold.claim_epoch is not None else ()
    return JobState(
        id=job_id,
        func=str(spec.get("func")),
        kwargs=typing.cast(dict[str, JSON], spec.get("kwargs") or {}),
        queue=queue,
        status=status,
        priority=_int(spec, "priority", 0),
        attempts=attempts,
        max_attempts=max_attempts,
        created_at=journal.parse_time(str(spec.get("created_at"))),
        scheduled_at=None if not isinstance(sched, str) else journal.parse_time(sched),
        started_at=fold.started_at,
        finished_at=None if live or status is JobStatus.RUNNING else fold.finished_at,
        progress=fold.progress,
        progress_message=fold.progress_message,
        result=result,
        error=fold.error,
        worker=location.worker or fold.worker,
        unique_key=typing.cast("str | None", spec.get("unique_key")),
        outputs=outputs,
    )


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
    """
    if i + 1 >= len(segments):
        return False
    epoch = segments[i][0]
    next_epoch, next_seg = segments[i + 1]
    return (
        next_epoch == epoch + 1
        and bool(next_seg.records)
        and next_seg.records[0].type is RecordType.RESCUED
    )


def unreadable_state(job_id: str, queue: str, status: JobStatus) -> JobState:
    """What can be said of a job whose own files cannot be read."""
    return JobState(
        id=job_id,
        func="",
        kwargs={},
        queue=queue,
        status=status,
        priority=0,
        attempts=0,
        max_attempts=1,
        created_at=from_ms(_ids.id_time_ms(job_id)),
        error=ErrorInfo("CorruptJob", "the job's journal is missing or unreadable"),
    )


def _int(spec: dict[str, JSON], key: str, default: int) -> int:
    value = spec.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else default


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
