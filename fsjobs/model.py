"""
The data of fsjobs: jobs and their options, and the one cattrs converter.

Everything here is a frozen attrs class or a str enum; validation happens when a
value is built, so a bad job is refused before anything touches the disk.
"""

from __future__ import annotations

import datetime as dt
import enum
import inspect
import math
import pathlib
import random
import typing
from collections.abc import Callable, Iterable, Mapping

import attrs
import cattrs

from . import _names
from ._clock import format_time, parse_time
from ._json import JSON, check_plain, dumps
from .errors import InvalidJob
from .states import JobState

MAX_KWARGS_BYTES = 1024 * 1024
MAX_RESULT_BYTES = 16 * 1024 * 1024


def check_json(what: str, value: object, limit: int) -> int:
    """Raise InvalidJob unless `value` is plain JSON of at most `limit` bytes; return its size."""
    try:
        check_plain(value)
        size = len(dumps(value))
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidJob(f"{what} must be plain JSON (no NaN, no objects): {exc}") from exc
    if size > limit:
        raise InvalidJob(f"{what} is {size} bytes encoded; the limit is {limit}")
    return size


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

    ``Limit.Type.MEMORY``: bytes of address space for the child process that runs
    the attempt: it needs the process executor (``executor="process"`` on the job,
    its task or the worker), where an allocation past it raises `MemoryError` in
    the task. On a job or task whose executor is ``"thread"`` or ``"async"`` it is
    refused (`InvalidJob`).
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

#: Where a task runs: ``"async"`` on the worker's event loop (coroutine functions
#: only), ``"thread"`` in the worker's threads, ``"process"`` in a pool of child
#: processes (sync functions only).
Executor = typing.Literal["async", "thread", "process"]
EXECUTORS: tuple[Executor, ...] = ("async", "thread", "process")


def check_executor(value: object) -> Executor | None:
    """Return `value` if it names an executor (or is None), else raise InvalidJob."""
    if value is not None and value not in EXECUTORS:
        raise InvalidJob(f"executor must be one of {list(EXECUTORS)} or None, not {value!r}")
    return value


def check_function_executor(name: str, is_async: bool, executor: str | None) -> None:
    """Refuse an executor that cannot run the function: "async" needs a coroutine function."""
    if is_async and executor in ("thread", "process"):
        raise InvalidJob(
            f"{name} is a coroutine function: it runs on the event loop (executor='async'), "
            f"not under executor={executor!r}; make it a plain def to run it in a "
            f"{executor}"
        )
    if not is_async and executor == "async":
        raise InvalidJob(
            f"{name} is not a coroutine function: executor='async' needs an async def; "
            "use 'thread' or 'process'"
        )


def check_limits_fit(executor: str | None, limits: typing.Iterable[Limit]) -> None:
    """A MEMORY limit needs the process executor: refuse it on "thread" or "async"."""
    if executor in ("thread", "async") and any(x.type is _LimitType.MEMORY for x in limits):
        raise InvalidJob(
            f"a Limit.Type.MEMORY limit needs executor='process'; executor={executor!r} "
            "cannot enforce it: use executor='process' or drop the limit"
        )


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


#: At most this many parents per job.
MAX_DEPENDS_ON = 1000


def _depends_on(value: object) -> tuple[str, ...]:
    """Parent ids, each checked, duplicates dropped (first kept), at most `MAX_DEPENDS_ON`."""
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise InvalidJob("depends_on must be a list of job ids, not a single value")
    out = tuple(dict.fromkeys(_names.check_job_id(v) for v in value))
    if len(out) > MAX_DEPENDS_ON:
        raise InvalidJob(f"a job may depend on at most {MAX_DEPENDS_ON} jobs, not {len(out)}")
    return out


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
    #: Where the task runs: ``"async"``, ``"thread"``, ``"process"``, or None for
    #: the task's executor, else the worker's default (for sync functions).
    executor: Executor | None = attrs.field(default=None)
    #: Ids of jobs (under the same root, any queue) that must complete before this one
    #: runs. Each must exist when the job is pushed (else `JobNotFound`). Until they all
    #: complete the job is ``blocked``; if one fails, times out, is cancelled or is
    #: corrupt, this job is cancelled with `DependencyFailed`.
    depends_on: tuple[str, ...] = attrs.field(default=(), converter=_depends_on)

    @backoff.validator
    def _check_backoff(self, _: object, value: Backoff | None) -> None:
        if value is not None and not isinstance(value, Backoff):
            raise InvalidJob("backoff must be an fsjobs.Backoff")

    @executor.validator
    def _check_executor(self, _: object, value: object) -> None:
        check_executor(value)
        check_limits_fit(self.executor, self.limits)

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
        ``module.qualname``, which a worker runs only when one of its
        ``allow_import`` prefixes covers that name. `InvalidJob` for a function
        defined in ``__main__`` or inside another function (no other process can
        import it), and for an executor that cannot run it. Does not check `kwargs`
        against the signature; `Queue.push` does for a registered task.
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
            if "<locals>" in fn.__qualname__:
                raise InvalidJob(
                    f"{fn!r} is defined inside a function, which other processes cannot "
                    "import: define it at the top level of its module"
                )
            name = f"{module}.{fn.__qualname__}"
        defaults.update(options)
        job = cls(func=name, kwargs=dict(kwargs or {}), **defaults)
        if getattr(fn, "task_name", None) is None:  # a task's push checks it against the task
            check_function_executor(name, inspect.iscoroutinefunction(fn), job.executor)
        return job

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

    def with_executor(self, executor: Executor | None) -> Job:
        """A copy with `executor` replaced (and checked)."""
        return attrs.evolve(self, executor=executor)

    @property
    def memory_limit(self) -> int | None:
        """The smallest ``Limit.Type.MEMORY`` limit in bytes, or None."""
        sizes = [int(x.value) for x in self.limits if x.type is _LimitType.MEMORY]
        return min(sizes) if sizes else None

    def with_depends_on(self, depends_on: typing.Iterable[str]) -> Job:
        """A copy that waits for the jobs `depends_on` (ids; all of them, not merged)."""
        return attrs.evolve(self, depends_on=tuple(depends_on))

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


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True)
    conv.register_unstructure_hook(dt.datetime, format_time)
    conv.register_structure_hook(dt.datetime, lambda v, _: parse_time(v))
    conv.register_unstructure_hook(pathlib.PurePath, str)
    conv.register_unstructure_hook(bytes, lambda b: b.decode("ascii", "backslashreplace"))
    return conv


#: The one converter: job specs on disk and task results.
converter: typing.Final = _make_converter()


def state_json(state: JobState) -> dict[str, typing.Any]:
    """
    A job's state as JSON: the one form of ``fsjobs show --json``, the HTTP API and
    its Server-Sent Events (times ISO 8601 in UTC with a ``Z``), with the derived
    ``duration`` and ``is_done`` added.
    """
    data: dict[str, typing.Any] = converter.unstructure(state)
    data["duration"] = state.duration
    data["is_done"] = state.is_done
    return data


def to_json_result(value: object) -> JSON:
    """
    A task's return value as plain JSON: attrs classes and dataclasses are
    unstructured with the converter. Raises TypeError/ValueError if that is impossible.
    """
    plain = converter.unstructure(value)
    check_plain(plain)
    dumps(plain)
    return typing.cast(JSON, plain)
