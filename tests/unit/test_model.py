"""The data model: Job validation and copies, specs, Backoff, JobStatus and the errors."""

from __future__ import annotations

import datetime as dt
import math
import pathlib
import uuid

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fsjobs
from fsjobs import Backoff, InvalidJob, Job, JobStatus, Limit, errors, journal
from fsjobs._spec import job_from_spec, spec_of
from fsjobs.model import DEFAULT_BACKOFF

FUNC = "tests.unit.test_model.plain_task"
AWARE = dt.datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=dt.UTC)


def plain_task(x: int) -> int:
    """A plain module-level function, never registered."""
    return x


# -- validation -------------------------------------------------------------------


def test_minimal_job_has_documented_defaults() -> None:
    """A Job needs only func; the defaults are those of DESIGN.md §2."""
    job = Job(func=FUNC)
    assert job.kwargs == {}
    assert job.priority == 0
    assert job.scheduled_at is None
    assert job.max_attempts == 1
    assert job.timeout is None
    assert job.unique_key is None
    assert job.limits == ()
    assert job.uploads == {}
    assert job.backoff is None


def test_naive_scheduled_at_is_refused() -> None:
    """A naive scheduled_at is a ValueError (InvalidJob), with a hint to use an aware one."""
    naive = dt.datetime(2030, 1, 1, 12, 0)  # noqa: DTZ001 - the point of the test
    with pytest.raises(InvalidJob, match="timezone-aware") as info:
        Job(func=FUNC, scheduled_at=naive)
    assert isinstance(info.value, ValueError)
    with pytest.raises(ValueError):
        Job(func=FUNC).with_scheduled_at(naive)


def test_scheduled_at_must_be_a_datetime() -> None:
    """A scheduled_at that is not a datetime (a date, a number, a string) is refused."""
    for bad in (dt.date(2030, 1, 1), 1_700_000_000, "2030-01-01T00:00:00Z"):
        with pytest.raises(InvalidJob):
            Job(func=FUNC, scheduled_at=bad)  # type: ignore[arg-type]


def test_aware_scheduled_at_in_any_zone_is_accepted() -> None:
    """An aware datetime in any time zone is a valid scheduled_at."""
    tz = dt.timezone(dt.timedelta(hours=-5))
    job = Job(func=FUNC, scheduled_at=AWARE.astimezone(tz))
    assert job.scheduled_at == AWARE


@pytest.mark.parametrize(
    "kwargs",
    [
        {"x": float("nan")},
        {"x": float("inf")},
        {"x": [1, float("-inf")]},
        {"x": {1, 2}},
        {"x": object()},
        {"x": b"bytes"},
        {"x": dt.datetime(2030, 1, 1, tzinfo=dt.UTC)},
        {"x": {"nested": {3}}},
        {1: "int key"},
        {"x": {1: "int key below"}},
        {"x": {1: "a", "1": "b"}},
    ],
    ids=repr,
)
def test_non_json_kwargs_are_refused(kwargs: dict[object, object]) -> None:
    """kwargs must be plain JSON with str keys; anything else is InvalidJob at construction."""
    with pytest.raises(InvalidJob):
        Job(func=FUNC, kwargs=kwargs)  # type: ignore[arg-type]


def test_kwargs_must_be_a_mapping() -> None:
    """kwargs given as a list is refused."""
    with pytest.raises(InvalidJob):
        Job(func=FUNC, kwargs=[("a", 1)])  # type: ignore[arg-type]


def test_oversized_kwargs_are_refused() -> None:
    """kwargs over 1 MiB encoded are refused."""
    with pytest.raises(InvalidJob, match="limit"):
        Job(func=FUNC, kwargs={"x": "a" * (1024 * 1024)})


def test_kwargs_are_copied() -> None:
    """Changing the caller's dict after building a Job does not change the Job."""
    given_kwargs: dict[str, journal.JSON] = {"a": 1}
    job = Job(func=FUNC, kwargs=given_kwargs)
    given_kwargs["a"] = 2
    assert job.kwargs == {"a": 1}


@pytest.mark.parametrize("priority", [-(2**31), -1, 0, 1, 2**31 - 1])
def test_priority_in_int32_range_is_accepted(priority: int) -> None:
    """Any int in the signed 32-bit range is a valid priority."""
    assert Job(func=FUNC, priority=priority).priority == priority


@pytest.mark.parametrize("priority", [-(2**31) - 1, 2**31, 2**63, True, False, 1.0, "1", None])
def test_priority_outside_int32_or_not_int_is_refused(priority: object) -> None:
    """A priority out of the int32 range, a bool, or a non-int is refused."""
    with pytest.raises(InvalidJob):
        Job(func=FUNC, priority=priority)  # type: ignore[arg-type]


@pytest.mark.parametrize("n", [1, 2, 999])
def test_max_attempts_in_range_is_accepted(n: int) -> None:
    """max_attempts from 1 to 999 is accepted."""
    assert Job(func=FUNC, max_attempts=n).max_attempts == n


@pytest.mark.parametrize("n", [0, -1, 1000, True, 2.0, None])
def test_max_attempts_out_of_range_is_refused(n: object) -> None:
    """max_attempts of 0, 1000, a bool or a non-int is refused."""
    with pytest.raises(InvalidJob):
        Job(func=FUNC, max_attempts=n)  # type: ignore[arg-type]


@pytest.mark.parametrize("t", [-1, 0, -0.5, math.inf, math.nan, True, "10"])
def test_bad_timeout_is_refused(t: object) -> None:
    """A timeout must be a positive finite number of seconds."""
    with pytest.raises(InvalidJob):
        Job(func=FUNC, timeout=t)  # type: ignore[arg-type]


@pytest.mark.parametrize("t", [0.001, 1, 30.5, None])
def test_good_timeout_is_accepted(t: float | None) -> None:
    """A positive finite timeout (or None) is accepted."""
    assert Job(func=FUNC, timeout=t).timeout == t


@pytest.mark.parametrize(
    "name", ["../x", "a/b", ".hidden", "-x", "", "x" * 129, "a\0b", "a b"], ids=repr
)
def test_bad_upload_names_are_refused(name: str) -> None:
    """An upload name that is not one safe path component is refused."""
    with pytest.raises(InvalidJob):
        Job(func=FUNC, uploads={name: b"data"})


@pytest.mark.parametrize("blob", ["text", 1, None, ["a"]], ids=repr)
def test_upload_content_must_be_bytes_or_path(blob: object) -> None:
    """An upload's content is bytes or a pathlib.Path, nothing else."""
    with pytest.raises(InvalidJob):
        Job(func=FUNC, uploads={"file": blob})  # type: ignore[dict-item]


def test_good_uploads_are_accepted() -> None:
    """Bytes, bytearray and Path uploads with safe names are accepted."""
    uploads = {"a.png": b"x", "b": bytearray(b"y"), "c_d-1": pathlib.Path("/nowhere")}
    assert Job(func=FUNC, uploads=uploads).uploads == uploads


@pytest.mark.parametrize("key", ["", "x" * 4097, 5])
def test_bad_unique_key_is_refused(key: object) -> None:
    """A unique key is a non-empty string of at most 4096 characters."""
    with pytest.raises(InvalidJob):
        Job(func=FUNC, unique_key=key)  # type: ignore[arg-type]


@pytest.mark.parametrize("func", ["", "1abc", "a b", "a/b", "../x", None, 3])
def test_bad_task_names_are_refused(func: object) -> None:
    """func must be a dotted name like 'myapp.tasks.resize'."""
    with pytest.raises(InvalidJob):
        Job(func=func)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "value"),
    [("time", 0), ("time", -1), ("memory", math.inf), ("time", math.nan), ("time", True)],
)
def test_bad_limits_are_refused(kind: str, value: object) -> None:
    """A limit's value must be a positive finite number."""
    with pytest.raises(InvalidJob):
        Limit(Limit.Type(kind), value)  # type: ignore[arg-type]


def test_limits_must_be_limit_values() -> None:
    """limits accepts only fsjobs.Limit values."""
    with pytest.raises(InvalidJob):
        Job(func=FUNC, limits=[("time", 5)])  # type: ignore[list-item]


def test_backoff_must_be_a_backoff() -> None:
    """backoff accepts only an fsjobs.Backoff."""
    with pytest.raises(InvalidJob):
        Job(func=FUNC, backoff={"initial": 1})  # type: ignore[arg-type]


def test_effective_timeout_is_the_smaller_of_timeout_and_time_limit() -> None:
    """A TIME limit and a timeout combine: the smaller one applies."""
    job = Job(func=FUNC, timeout=30, limits=[Limit(Limit.Type.TIME, 10)])
    assert job.effective_timeout == 10
    assert job.with_timeout(5).effective_timeout == 5
    assert Job(func=FUNC).effective_timeout is None
    assert Job(func=FUNC, limits=[Limit(Limit.Type.MEMORY, 2**30)]).effective_timeout is None


# -- immutability --------------------------------------------------------------------

BASE = Job(func=FUNC, kwargs={"x": 1})
CHANGES = [
    ("with_kwargs", "kwargs", {"x": 2, "y": [1]}),
    ("with_priority", "priority", -5),
    ("with_scheduled_at", "scheduled_at", AWARE),
    ("with_max_attempts", "max_attempts", 5),
    ("with_unique_key", "unique_key", "report-1"),
    ("with_timeout", "timeout", 30),
    ("with_limits", "limits", (Limit(Limit.Type.MEMORY, 2**30),)),
    ("with_uploads", "uploads", {"video": b"..."}),
    ("with_backoff", "backoff", Backoff(initial=1)),
]


@pytest.mark.parametrize(("method", "field", "value"), CHANGES, ids=[c[0] for c in CHANGES])
def test_with_methods_return_changed_copy(method: str, field: str, value: object) -> None:
    """Each with_* returns a new Job with that one field changed; the original is unchanged."""
    before = attrs.asdict(BASE, recurse=False)
    new = getattr(BASE, method)(value)
    assert new is not BASE
    assert getattr(new, field) == value
    assert attrs.asdict(BASE, recurse=False) == before
    assert getattr(BASE, field) != value
    others = {k: v for k, v in attrs.asdict(new, recurse=False).items() if k != field}
    assert others == {k: v for k, v in before.items() if k != field}


@pytest.mark.parametrize(
    ("method", "value"),
    [
        ("with_priority", 2**31),
        ("with_max_attempts", 0),
        ("with_timeout", -1),
        ("with_kwargs", {"x": float("nan")}),
        ("with_unique_key", ""),
        ("with_uploads", {"../x": b""}),
        ("with_backoff", 5),
    ],
)
def test_with_methods_validate(method: str, value: object) -> None:
    """A with_* copy is validated like a new Job."""
    with pytest.raises(InvalidJob):
        getattr(BASE, method)(value)


def test_job_is_frozen() -> None:
    """Assigning to a Job's field raises."""
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        BASE.priority = 3  # type: ignore[misc]


def test_with_methods_chain() -> None:
    """Chained with_* calls accumulate changes on fresh copies."""
    job = BASE.with_priority(10).with_max_attempts(5).with_unique_key("k")
    assert (job.priority, job.max_attempts, job.unique_key) == (10, 5, "k")
    assert (BASE.priority, BASE.max_attempts, BASE.unique_key) == (0, 1, None)


# -- from_func ---------------------------------------------------------------------


def test_from_func_plain_function_uses_module_qualname() -> None:
    """A plain module-level function gives a job named module.qualname with the given options."""
    job = Job.from_func(plain_task, kwargs={"x": 3}, max_attempts=3, priority=-1)
    assert job.func == "tests.unit.test_model.plain_task"
    assert job.kwargs == {"x": 3}
    assert (job.max_attempts, job.priority) == (3, -1)


def test_from_func_refuses_main_function() -> None:
    """A function from __main__ (not importable elsewhere) is refused."""

    def script_task() -> None:
        """Stands in for a function defined in a script."""

    script_task.__module__ = "__main__"
    with pytest.raises(InvalidJob, match="__main__"):
        Job.from_func(script_task)


def test_from_func_task_options_are_defaults_explicit_wins(tmp_path: pathlib.Path) -> None:
    """Options of a registered Task are defaults of its jobs; an explicit option wins."""
    queue = fsjobs.Queue(tmp_path / "root")
    try:
        name = f"tests.unit.model.{uuid.uuid4().hex}"

        @queue.task(name=name, max_attempts=4, priority=7, timeout=12, unique_key="u")
        def task(x: int) -> int:
            """A task with options."""
            return x

        job = Job.from_func(task, kwargs={"x": 1})
        assert job.func == name
        assert (job.max_attempts, job.priority, job.timeout, job.unique_key) == (4, 7, 12, "u")
        job = Job.from_func(task, kwargs={"x": 1}, max_attempts=2, priority=0, unique_key=None)
        assert (job.max_attempts, job.priority, job.timeout, job.unique_key) == (2, 0, 12, None)
        assert task.job(x=5) == Job(
            func=name, kwargs={"x": 5}, max_attempts=4, priority=7, timeout=12, unique_key="u"
        )
    finally:
        queue.close()


# -- specs -------------------------------------------------------------------------

ms_instants = st.datetimes(
    min_value=dt.datetime(1970, 1, 2),  # noqa: DTZ001 - bounds of a tz-aware strategy
    max_value=dt.datetime(9999, 12, 30),  # noqa: DTZ001
    timezones=st.just(dt.UTC),
).map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000))
positive = st.floats(min_value=0.001, max_value=1e9, allow_nan=False)
jobs = st.builds(
    Job,
    func=st.from_regex(r"\A[a-z_][a-z0-9_.]{0,30}\Z"),
    kwargs=st.dictionaries(st.text(max_size=5), st.integers() | st.text() | st.none()),
    priority=st.integers(-(2**31), 2**31 - 1),
    scheduled_at=st.none() | ms_instants,
    max_attempts=st.integers(1, 999),
    timeout=st.none() | positive,
    unique_key=st.none() | st.text(min_size=1, max_size=20),
    limits=st.lists(st.builds(Limit, st.sampled_from(Limit.Type), positive), max_size=2),
    backoff=st.none()
    | st.builds(
        Backoff,
        initial=st.floats(0, 100),
        factor=st.floats(0, 10),
        maximum=st.floats(0, 1e6),
        jitter=st.floats(0, 1),
    ),
)


@given(jobs)
def test_spec_round_trips_through_json(job: Job) -> None:
    """A job's on-disk spec, through JSON text, rebuilds an equal Job."""
    spec = spec_of(job, "default", AWARE)
    text = journal.dumps(spec)
    rebuilt = job_from_spec(journal.loads(text))  # type: ignore[arg-type]
    assert rebuilt == job


def test_spec_records_queue_creation_time_and_upload_names() -> None:
    """The spec names the queue, the push time and the upload names (not their bytes)."""
    job = Job(func=FUNC, uploads={"b": b"2", "a": b"1"})
    spec = spec_of(job, "emails", AWARE)
    assert spec["queue"] == "emails"
    assert spec["created_at"] == "2030-01-02T03:04:05.678Z"
    assert spec["uploads"] == ["a", "b"]
    assert "1" not in journal.dumps(spec["uploads"])


def test_spec_with_bad_values_is_refused() -> None:
    """A spec read from disk is validated like a new Job."""
    spec = spec_of(Job(func=FUNC), "default", AWARE)
    with pytest.raises(InvalidJob):
        job_from_spec({**spec, "priority": 2**40})
    with pytest.raises(ValueError):
        job_from_spec({**spec, "scheduled_at": "2030-01-01T00:00:00"})


# -- Backoff -----------------------------------------------------------------------


def test_default_backoff_doubles_from_two_seconds_capped_at_an_hour() -> None:
    """The default backoff waits 2, 4, 8 ... seconds, never more than an hour (no jitter)."""
    mid = 0.5  # rand() == 0.5 is zero jitter
    assert [DEFAULT_BACKOFF.delay(n, rand=lambda: mid) for n in (1, 2, 3, 4)] == [2, 4, 8, 16]
    assert DEFAULT_BACKOFF.delay(11, rand=lambda: mid) == 2048
    assert DEFAULT_BACKOFF.delay(12, rand=lambda: mid) == 3600
    assert DEFAULT_BACKOFF.delay(998, rand=lambda: mid) == 3600


def test_default_backoff_jitter_is_ten_percent() -> None:
    """The default jitter spreads a delay by at most ±10 %."""
    assert DEFAULT_BACKOFF.delay(1, rand=lambda: 0.0) == pytest.approx(1.8)
    assert DEFAULT_BACKOFF.delay(1, rand=lambda: 1.0) == pytest.approx(2.2)


def test_backoff_without_jitter_is_exact() -> None:
    """With jitter=0, delays are initial * factor**(n-1) capped at maximum."""
    b = Backoff(initial=0.5, factor=3, maximum=10, jitter=0)
    assert [b.delay(n) for n in (1, 2, 3, 4)] == [0.5, 1.5, 4.5, 10]


@given(
    initial=st.floats(0, 1000),
    factor=st.floats(0, 100),
    maximum=st.floats(0, 1e7),
    jitter=st.floats(0, 1),
    retry=st.integers(1, 998),
    r=st.floats(0, 1, exclude_max=True),
)
def test_backoff_delay_is_bounded(
    initial: float, factor: float, maximum: float, jitter: float, retry: int, r: float
) -> None:
    """Any retry's delay is finite, >= 0 and within ±jitter of the capped exponential."""
    b = Backoff(initial=initial, factor=factor, maximum=maximum, jitter=jitter)
    delay = b.delay(retry, rand=lambda: r)
    assert math.isfinite(delay)
    assert 0 <= delay <= maximum * (1 + jitter) * (1 + 1e-9)


def test_backoff_with_large_factor_caps_instead_of_overflowing() -> None:
    """A large factor over many retries still gives the maximum (no OverflowError)."""
    b = Backoff(initial=2.0, factor=10.0, maximum=60.0, jitter=0)
    assert b.delay(400) == 60
    assert Backoff(factor=2.0, jitter=0).delay(998) == 3600


@pytest.mark.parametrize(
    "options",
    [
        {"initial": -1},
        {"factor": math.inf},
        {"maximum": math.nan},
        {"jitter": 1.5},
        {"jitter": -0.1},
        {"initial": True},
    ],
)
def test_bad_backoff_is_refused(options: dict[str, float]) -> None:
    """Backoff values must be finite and >= 0, jitter between 0 and 1."""
    with pytest.raises(InvalidJob):
        Backoff(**options)


# -- JobStatus and errors ---------------------------------------------------------------


def test_job_status_values_are_on_disk_spellings() -> None:
    """Each JobStatus is a str whose value is the directory / record spelling."""
    assert {s.value for s in JobStatus} == {
        "pending",
        "scheduled",
        "running",
        "retrying",
        "completed",
        "failed",
        "timed_out",
        "cancelled",
        "held",
        "corrupt",
        "blocked",
    }
    for s in JobStatus:
        assert isinstance(s, str)
        assert s == s.value
        assert JobStatus(s.value) is s


def test_is_final() -> None:
    """completed, failed, timed_out, cancelled and corrupt are final; the rest are not."""
    final = {s for s in JobStatus if s.is_final}
    assert final == {
        JobStatus.COMPLETED,
        JobStatus.FAILED,
        JobStatus.TIMED_OUT,
        JobStatus.CANCELLED,
        JobStatus.CORRUPT,
    }


@pytest.mark.parametrize(
    ("error", "builtin"),
    [
        (errors.InvalidJob, ValueError),
        (errors.UnknownTask, LookupError),
        (errors.JobNotFound, LookupError),
        (errors.WaitTimeout, TimeoutError),
        (errors.ResultNotSerializable, TypeError),
        (errors.StoreError, OSError),
        (errors.StoreFull, OSError),
        (errors.FormatError, OSError),
        (errors.CorruptRecord, ValueError),
    ],
)
def test_errors_derive_from_the_builtin_users_catch(
    error: type[Exception], builtin: type[Exception]
) -> None:
    """Each error is an FsJobsError and the built-in a Python user would catch."""
    assert issubclass(error, errors.FsJobsError)
    assert issubclass(error, builtin)


def test_store_errors_are_store_errors() -> None:
    """StoreFull and FormatError are kinds of StoreError."""
    assert issubclass(errors.StoreFull, errors.StoreError)
    assert issubclass(errors.FormatError, errors.StoreError)


def test_every_exported_exception_is_an_fsjobs_error() -> None:
    """Every exception class fsjobs exports derives from FsJobsError."""
    exported = [getattr(fsjobs, n) for n in fsjobs.__all__]
    classes = [c for c in exported if isinstance(c, type) and issubclass(c, BaseException)]
    assert len(classes) >= 15
    for cls in classes:
        assert issubclass(cls, errors.FsJobsError), cls


@pytest.mark.parametrize(
    "cls",
    [
        errors.InvalidJob,
        errors.UnknownTask,
        errors.UniqueKeyBusy,
        errors.UniqueKeyConflict,
        errors.StoreFull,
        errors.PublishFailed,
        errors.WaitTimeout,
        errors.CorruptRecord,
    ],
    ids=lambda c: c.__name__,
)
def test_an_error_raised_without_a_message_says_what_its_docstring_says(
    cls: type[errors.FsJobsError],
) -> None:
    """``raise StoreFull()`` still tells the user what happened and what to do."""
    assert cls.__doc__ is not None
    assert str(cls()) == cls.__doc__.strip()
    assert str(cls("specific")) == "specific"


def test_errors_that_carry_data_say_it_in_their_message() -> None:
    """JobNotFound names the id; Retry without a message says it asked for a retry."""
    assert str(errors.JobNotFound("01m8r4rpm0000098cmc92y")) == (
        "no job '01m8r4rpm0000098cmc92y' under this root"
    )
    assert str(errors.Retry()) == "the task asked to be retried"


def test_error_attributes() -> None:
    """JobNotFound carries the id, PushError the published ids, Retry the delay."""
    assert errors.JobNotFound("abc").job_id == "abc"
    assert "abc" in str(errors.JobNotFound("abc"))
    assert errors.PushError("x", ["a", "b"]).published_ids == ["a", "b"]
    assert errors.Retry(delay=1.5).delay == 1.5
    assert errors.Retry().delay is None
