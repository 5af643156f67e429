"""
Names on disk: validation of user-given names, marker names and time buckets.

No I/O here. A marker name says, without opening a file, when a job is due, in
what order it runs, which epoch (change of hands) it is in and how many attempts
it has used::

    <prio+2**31:010d>.<ready_ms:015d>.<id>.e<epoch:06d>.a<attempt:03d>of<max:03d>

Fixed widths make byte order numeric order, so ``LC_ALL=C ls`` lists run order.
A running marker appends ``.<worker>``.
"""

from __future__ import annotations

import calendar
import re
import time

import attrs

from . import _ids
from .errors import InvalidJob

NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
TASK_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:<>-]{0,255}$")
PRIORITY_OFFSET = 2**31
PRIORITY_MIN, PRIORITY_MAX = -(2**31), 2**31 - 1
MAX_ATTEMPTS_LIMIT = 999

# Directory and file names: the one place that spells them.
JOBS, QUEUES, UNIQUE, WORKERS, TMP = "jobs", "queues", "unique", "workers", "tmp"
#: workflow manifests (``workflows/<shard>/<id>.json``)
WORKFLOWS = "workflows"
#: a job's dependents (``jobs/<shard>/<id>/dependents/<child>``) and each queue's
#: dependency checks at work (``queues/<queue>/releasing/<id>.<token>``)
DEPENDENTS, RELEASING = "dependents", "releasing"
WAITING, PENDING, RUNNING = "waiting", "pending", "running"
ATTEMPTS, UPLOADS, OUTPUTS = "attempts", "uploads", "outputs"
RESULT_FILE = "result.json"
CANCEL = "cancel"
FORMAT_FILE, FORMAT_LOCK = "fsjobs.json", "fsjobs.lock"
#: flow control: a queue's pause file, settings file, concurrency slots and rate tokens
PAUSED, SETTINGS, SLOTS, RATE = "paused", "settings.json", "slots", "rate"
#: the schedules workers keep, one ``<name>.json`` each (a top directory)
PERIODIC = "periodic"
#: format 1 kept a job's segments in this subfolder; `fsjobs migrate` moves them up
FORMAT1_JOURNAL = "journal"

_MARKER_RE = re.compile(
    r"^(?P<prio>\d{10})\.(?P<ready>\d{15})\.(?P<id>[0-9a-z]{22})"
    r"\.e(?P<epoch>\d{6})\.a(?P<attempt>\d{3})of(?P<max>\d{3})$"
)


def check_name(kind: str, name: object) -> str:
    """Return `name` if it is one safe path component (queue, upload, output), else raise."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name) or len(name.encode()) > 128:
        raise InvalidJob(
            f"invalid {kind} name {name!r}: use 1-128 characters of [A-Za-z0-9._-], "
            "not starting with a dot or a dash"
        )
    return name


def check_task_name(name: object) -> str:
    if not isinstance(name, str) or not TASK_NAME_RE.fullmatch(name):
        raise InvalidJob(
            f"invalid task name {name!r}: expected a dotted name like 'myapp.tasks.resize'"
        )
    return name


def check_job_id(job_id: object) -> str:
    if not isinstance(job_id, str) or not _ids.is_job_id(job_id):
        raise InvalidJob(f"invalid job id {job_id!r}")
    return job_id


def check_worker_id(worker: str) -> str:
    if not _ids.WORKER_ID_RE.fullmatch(worker):
        raise InvalidJob(f"invalid worker id {worker!r}: use [a-z0-9-]")
    return worker


@attrs.frozen
class Marker:
    """The parsed name of a live marker (waiting, pending or running)."""

    priority: int
    ready_ms: int
    job_id: str
    epoch: int
    attempt: int
    max_attempts: int

    @property
    def name(self) -> str:
        return (
            f"{self.priority + PRIORITY_OFFSET:010d}.{self.ready_ms:015d}.{self.job_id}"
            f".e{self.epoch:06d}.a{self.attempt:03d}of{self.max_attempts:03d}"
        )

    @property
    def prio_dir(self) -> str:
        return f"{self.priority + PRIORITY_OFFSET:010d}"

    @property
    def bucket(self) -> tuple[str, str]:
        """(hour, second-of-hour) of `ready_ms`: directories stay small, order stays byte order."""
        return bucket_of(self.ready_ms)

    def running_name(self, worker: str) -> str:
        return f"{self.name}.{worker}"

    @classmethod
    def parse(cls, name: str) -> Marker:
        m = _MARKER_RE.fullmatch(name)
        if m is None:
            raise ValueError(f"not a marker name: {name!r}")
        return cls(
            priority=int(m["prio"]) - PRIORITY_OFFSET,
            ready_ms=int(m["ready"]),
            job_id=m["id"],
            epoch=int(m["epoch"]),
            attempt=int(m["attempt"]),
            max_attempts=int(m["max"]),
        )

    @classmethod
    def parse_running(cls, name: str) -> tuple[Marker, str]:
        """Split ``<marker>.<worker>`` into the marker and the worker id."""
        base, _, worker = name.rpartition(".")
        if not _ids.WORKER_ID_RE.fullmatch(worker):
            raise ValueError(f"not a running marker name: {name!r}")
        return cls.parse(base), worker


def bucket_of(ready_ms: int) -> tuple[str, str]:
    """``("20261123T11", "0512")``: the UTC hour, then minute and second, of `ready_ms`."""
    t = time.gmtime(ready_ms // 1000)
    return time.strftime("%Y%m%dT%H", t), time.strftime("%M%S", t)


def bucket_start_ms(hour: str, second: str) -> int:
    """The first millisecond of a bucket; raises ValueError for a name that is not one."""
    return calendar.timegm(time.strptime(hour + second, "%Y%m%dT%H%M%S")) * 1000


_HOUR_RE = re.compile(r"\d{8}T\d{2}")


def bucket_end_ms(parts: tuple[str, ...]) -> int | None:
    """
    Where a bucket directory's time span ends (an ``hour/second`` bucket, or an
    ``hour``); None for a directory that is not one, or a malformed name.
    """
    try:
        if len(parts) >= 2 and _HOUR_RE.fullmatch(parts[-2]):
            return bucket_start_ms(parts[-2], parts[-1]) + 1000
        if parts and _HOUR_RE.fullmatch(parts[-1]):
            return bucket_start_ms(parts[-1], "0000") + 3_600_000
    except ValueError:
        return None
    return None


_SEGMENT_RE = re.compile(r"^(\d{6})\.jsonl$")


def segment_name(epoch: int) -> str:
    """The journal segment of `epoch` in a job's folder: ``000003.jsonl``."""
    return f"{epoch:06d}.jsonl"


def segment_epoch(name: str) -> int | None:
    """The epoch of a segment's file name; None for any other name."""
    m = _SEGMENT_RE.fullmatch(name)
    return None if m is None else int(m[1])


def attempt_dir(epoch: int) -> str:
    """The folder of one attempt's files under ``attempts/``: ``000003``."""
    return f"{epoch:06d}"


def day_of(job_id: str) -> str:
    """The final-directory shard of a job: the UTC day of its push, ``2026-11-23``."""
    return time.strftime("%Y-%m-%d", time.gmtime(_ids.id_time_ms(job_id) // 1000))


def shard_of(job_id: str) -> str:
    """The `jobs/` shard of a job: the last two (random) characters of its id."""
    return job_id[-2:]
