"""
The data of fsjobs: jobs, their states and options, and the one cattrs converter.

Everything here is a frozen attrs class or a str enum; validation happens when a
value is built, so a bad job is refused before anything touches the disk.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
import pathlib
import random
import typing
from collections.abc import Callable, Mapping

import attrs
import cattrs

from . import _names
from .errors import InvalidJob
from .journal import JSON, check_json, check_plain, dumps, format_time, parse_time

MAX_KWARGS_BYTES = 1024 * 1024
MAX_RESULT_BYTES = 16 * 1024 * 1024


class JobStatus(enum.StrEnum):
    """
    Where a job is in its life. The value is the on-disk spelling (a directory
    name), so ``JobStatus("failed")`` works and ``"failed" == JobStatus.FAILED``.

    Final statuses (`is_final`): completed, failed, timed_out, cancelled and
    corrupt. A job that is not final keeps its unique key.
    """

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
)


class _LimitType(enum.StrEnum):
    """The kinds of `Limit`."""

    TIME = "time"  #: seconds of run time per attempt
    MEMORY = "memory"  #: bytes of memory (process executor only)


@attrs.frozen
class Limit:
    """
    A resource limit on each attempt: ``Limit(Limit.Type.TIME, 30)`` or
    ``Limit(Limit.Type.MEMORY, 2**30)``. `value` must be a positive, finite number
    (else `InvalidJob`); `type` may also be given as ``"time"`` or ``"memory"``.

    ``Limit.Type.TIME``: seconds per attempt, like `Job.timeout` (the smaller of the
    two applies; see `Job.effective_timeout`).

    ``Limit.Type.MEMORY``: bytes of memory. Accepted and stored with the job, but
    not enforced yet: it needs the process executor, which is not built.
    """

    Type: typing.ClassVar = _LimitType

    type: _LimitType = attrs.field(converter=_LimitType)
    value: float = attrs.field()

    @value.validator
    def _check_value(self, _: object, value: object) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise InvalidJob(f"limit value must be a positive number, not {value!r}")
        if not math.isfinite(value):
            raise InvalidJob("limit value must be finite")


@attrs.frozen(kw_only=True)
class Backoff:
    """
    How long to wait before retry n: ``initial * factor**(n-1)`` seconds, at most
    `maximum`, then multiplied by a random factor in ``[1 - jitter, 1 + jitter]`` so
    that failed jobs do not all return at once.

    The default, ``Backoff()``, waits about 2, 4, 8, 16 … seconds, never more than an
    hour. ``Backoff(initial=5, factor=1)`` is a constant 5 s; ``jitter=0`` makes it
    exact. `initial`, `factor` and `maximum` must be finite and at least 0, `jitter`
    between 0 and 1 (else `InvalidJob`).
    """

    initial: float = 2.0
    factor: float = 2.0
    maximum: float = 3600.0
    jitter: float = 0.1

    def __attrs_post_init__(self) -> None:
        for name in ("initial", "factor", "maximum"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v < math.inf:
                raise InvalidJob(f"Backoff.{name} must be a finite number >= 0, not {v!r}")
        if not 0 <= self.jitter <= 1:
            raise InvalidJob(f"Backoff.jitter must be between 0 and 1, not {self.jitter!r}")

    def delay(self, retry: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds before retry number `retry` (1 for the first retry)."""
        try:
            base = min(self.maximum, float(self.initial) * float(self.factor) ** max(0, retry - 1))
        except OverflowError:
            base = self.maximum
        return max(0.0, base * (1 + self.jitter * (2 * rand() - 1)))


DEFAULT_BACKOFF: typing.Final = Backoff()


def _check_priority(_: object, __: object, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidJob(f"priority must be an int, not {value!r}")
    if not _names.PRIORITY_MIN <= value <= _names.PRIORITY_MAX:
        raise InvalidJob(f"priority {value} is outside the signed 32-bit range")


def _check_scheduled_at(_: object, __: object, value: dt.datetime | None) -> None:
    if value is None:
        return
    if not isinstance(value, dt.datetime):
        raise InvalidJob(f"scheduled_at must be a datetime, not {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidJob(
            "scheduled_at must be timezone-aware, e.g. datetime.now(timezone.utc) + delay"
        )


def _check_max_attempts(_: object, __: object, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidJob(f"max_attempts must be an int, not {value!r}")
    if not 1 <= value <= _names.MAX_ATTEMPTS_LIMIT:
        raise InvalidJob(f"max_attempts must be 1..{_names.MAX_ATTEMPTS_LIMIT}, not {value}")


def _check_timeout(_: object, __: object, value: float | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidJob(f"timeout must be seconds, not {value!r}")
    if not 0 < value < math.inf:
        raise InvalidJob(f"timeout must be a positive finite number of seconds, not {value}")


def _check_unique_key(_: object, __: object, value: str | None) -> None:
    if value is not None and (not isinstance(value, str) or not 0 < len(value) <= 4096):  # type: ignore[redundant-expr]
        raise InvalidJob("unique_key must be a non-empty string of at most 4096 characters")


def _check_kwargs(_: object, __: object, value: object) -> None:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise InvalidJob("kwargs must be a dict with str keys")
    check_json("kwargs", value, MAX_KWARGS_BYTES)


def _check_uploads(_: object, __: object, value: Mapping[str, bytes | pathlib.Path]) -> None:
    for name, blob in value.items():
        _names.check_name("upload", name)
        if not isinstance(blob, bytes | bytearray | memoryview | pathlib.Path):
            raise InvalidJob(f"upload {name!r} must be bytes or a pathlib.Path")


def _frozen_dict(value: Mapping[str, typing.Any]) -> dict[str, typing.Any]:
    if not isinstance(value, Mapping):
        raise InvalidJob(f"expected a mapping, not {type(value).__name__}")
    return dict(value)


def _limits(value: typing.Iterable[Limit]) -> tuple[Limit, ...]:
    out = tuple(value)
    if not all(isinstance(x, Limit) for x in out):
        raise InvalidJob("limits must be fsjobs.Limit values")
    return out


@attrs.frozen(kw_only=True)
class Job:
    """
    What to run, with what arguments and options. Immutable and compared by value:
    the ``with_*`` methods return a changed copy.

    Every field is checked when the job is built: a bad value raises `InvalidJob`
    (a `ValueError`) before anything is written. A task's ``task.job(...)`` and
    `from_func` fill the options in from the task's defaults; ``Job(func=...)``
    names a task by its name and uses the defaults below.
    """

    #: The task name: a letter or ``_``, then up to 255 of ``[A-Za-z0-9_.:<>-]``.
    func: str = attrs.field(validator=lambda _, __, v: _names.check_task_name(v))
    #: The task's keyword arguments: a dict with `str` keys, JSON, at most 1 MiB encoded.
    kwargs: dict[str, JSON] = attrs.field(
        factory=dict, converter=_frozen_dict, validator=_check_kwargs
    )
    #: Lower runs first; any int from -2**31 to 2**31 - 1 (not a `bool`). Equal
    #: priorities run in the order the jobs became due.
    priority: int = attrs.field(default=0, validator=_check_priority)
    #: Not run before this time. Timezone-aware (a naive datetime is refused), or None.
    scheduled_at: dt.datetime | None = attrs.field(default=None, validator=_check_scheduled_at)
    #: How many attempts may start, counting one whose worker died: 1 to 999.
    max_attempts: int = attrs.field(default=1, validator=_check_max_attempts)
    #: Seconds per attempt, positive and finite, or None for no limit.
    timeout: float | None = attrs.field(default=None, validator=_check_timeout)
    #: At most one unfinished job per key in the whole root, across queues: a
    #: non-empty `str` of at most 4096 characters, or None.
    unique_key: str | None = attrs.field(default=None, validator=_check_unique_key)
    #: `Limit` values applying to each attempt.
    limits: tuple[Limit, ...] = attrs.field(default=(), converter=_limits)
    #: Input files: name -> `bytes` (or `bytearray`, `memoryview`) or a `pathlib.Path`
    #: to copy at push. Names are 1-128 characters of ``[A-Za-z0-9._-]``, not starting
    #: with ``.`` or ``-``.
    uploads: dict[str, bytes | pathlib.Path] = attrs.field(
        factory=dict, converter=_frozen_dict, validator=_check_uploads, repr=False
    )
    #: The delays between attempts, or None for the default ``Backoff()``.
    backoff: Backoff | None = attrs.field(default=None)

    @backoff.validator
    def _check_backoff(self, _: object, value: Backoff | None) -> None:
        if value is not None and not isinstance(value, Backoff):
            raise InvalidJob("backoff must be an fsjobs.Backoff")

    @classmethod
    def from_func(
        cls,
        fn: Callable[..., typing.Any],
        kwargs: Mapping[str, JSON] | None = None,
        **options: typing.Any,
    ) -> Job:
        """
        A job for `fn`: a task made with ``@queue.task`` (its name, and its options
        as defaults that `options` override) or a plain function, named
        ``module.qualname`` (`InvalidJob` for a function defined in ``__main__``).
        Does not check `kwargs` against the signature; `Queue.push` does.
        """
        defaults: dict[str, typing.Any] = dict(getattr(fn, "job_defaults", {}))
        name = getattr(fn, "task_name", None)
        if name is None:
            module = getattr(fn, "__module__", None)
            if module in (None, "__main__"):
                raise InvalidJob(
                    f"{fn!r} is defined in __main__, which other processes cannot import: "
                    "register it with @queue.task(name=...) and pass the task"
                )
            name = f"{module}.{fn.__qualname__}"
        defaults.update(options)
        return cls(func=name, kwargs=dict(kwargs or {}), **defaults)

    def with_kwargs(self, kwargs: Mapping[str, JSON]) -> Job:
        """A copy with `kwargs` replaced (and checked)."""
        return attrs.evolve(self, kwargs=kwargs)

    def with_priority(self, priority: int) -> Job:
        """A copy with `priority` replaced (and checked)."""
        return attrs.evolve(self, priority=priority)

    def with_scheduled_at(self, scheduled_at: dt.datetime | None) -> Job:
        """A copy with `scheduled_at` replaced (and checked)."""
        return attrs.evolve(self, scheduled_at=scheduled_at)

    def with_max_attempts(self, max_attempts: int) -> Job:
        """A copy with `max_attempts` replaced (and checked)."""
        return attrs.evolve(self, max_attempts=max_attempts)

    def with_unique_key(self, unique_key: str | None) -> Job:
        """A copy with `unique_key` replaced (and checked)."""
        return attrs.evolve(self, unique_key=unique_key)

    def with_timeout(self, timeout: float | None) -> Job:
        """A copy with `timeout` replaced (and checked)."""
        return attrs.evolve(self, timeout=timeout)

    def with_limits(self, limits: typing.Iterable[Limit]) -> Job:
        """A copy with `limits` replaced (and checked)."""
        return attrs.evolve(self, limits=tuple(limits))

    def with_uploads(self, uploads: Mapping[str, bytes | pathlib.Path]) -> Job:
        """A copy with `uploads` replaced (all of them, not merged) and checked."""
        return attrs.evolve(self, uploads=uploads)

    def with_backoff(self, backoff: Backoff | None) -> Job:
        """A copy with `backoff` replaced (and checked)."""
        return attrs.evolve(self, backoff=backoff)

    @property
    def effective_timeout(self) -> float | None:
        """
        The smaller of `timeout` and any ``Limit.Type.TIME`` limit, or None. A worker
        applies it; for a job with neither, it applies the task's ``timeout=``, if any.
        """
        times = [x.value for x in self.limits if x.type is _LimitType.TIME]
        if self.timeout is not None:
            times.append(self.timeout)
        return min(times) if times else None


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


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True)
    conv.register_unstructure_hook(dt.datetime, format_time)
    conv.register_structure_hook(dt.datetime, lambda v, _: parse_time(v))
    conv.register_unstructure_hook(pathlib.PurePath, str)
    conv.register_unstructure_hook(bytes, lambda b: b.decode("ascii", "backslashreplace"))
    return conv


#: The one converter: job specs on disk and task results.
converter: typing.Final = _make_converter()


def spec_of(job: Job, queue: str, created_at: dt.datetime) -> dict[str, JSON]:
    """The on-disk spec of a job (everything but the upload bytes)."""
    return {
        "queue": queue,
        "created_at": format_time(created_at),
        "func": job.func,
        "kwargs": job.kwargs,
        "priority": job.priority,
        "scheduled_at": None if job.scheduled_at is None else format_time(job.scheduled_at),
        "max_attempts": job.max_attempts,
        "timeout": job.timeout,
        "unique_key": job.unique_key,
        "limits": [{"type": x.type.value, "value": x.value} for x in job.limits],
        "backoff": None if job.backoff is None else converter.unstructure(job.backoff),
        "uploads": list[JSON](sorted(job.uploads)),
    }


def job_from_spec(spec: Mapping[str, JSON]) -> Job:
    """Rebuild the Job of an on-disk spec; raises InvalidJob (or ValueError/TypeError)."""
    sched = spec.get("scheduled_at")
    backoff = spec.get("backoff")
    limits = spec.get("limits") or []
    if not isinstance(limits, list):
        raise InvalidJob("limits must be a list")
    return Job(
        func=typing.cast(str, spec["func"]),
        kwargs=typing.cast(dict[str, JSON], spec.get("kwargs") or {}),
        priority=typing.cast(int, spec.get("priority", 0)),
        scheduled_at=None if sched is None else parse_time(typing.cast(str, sched)),
        max_attempts=typing.cast(int, spec.get("max_attempts", 1)),
        timeout=typing.cast("float | None", spec.get("timeout")),
        unique_key=typing.cast("str | None", spec.get("unique_key")),
        limits=[converter.structure(x, Limit) for x in limits],
        backoff=None if backoff is None else converter.structure(backoff, Backoff),
    )


def to_json_result(value: object) -> JSON:
    """
    A task's return value as plain JSON: attrs classes and dataclasses are
    unstructured with the converter. Raises TypeError/ValueError if that is impossible.
    """
    plain = converter.unstructure(value)
    check_plain(plain)
    dumps(plain)
    return typing.cast(JSON, plain)
