"""The async API: Queue and Worker together, in one process."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import os
import pathlib
import threading
import typing
import uuid
from collections.abc import Iterator

import attrs
import pytest

import fsjobs
from fsjobs import (
    Backoff,
    InvalidJob,
    Job,
    JobFailed,
    JobNotDone,
    JobNotFound,
    JobStatus,
    Queue,
    WaitTimeout,
    Worker,
)

#: A bound on any worker run, so that a regression fails the test instead of hanging CI.
HANG_GUARD = 60.0


def name() -> str:
    """A task name no other test uses (the registry is process-wide)."""
    return f"tests.unit.qw.t{uuid.uuid4().hex}"


def tree(top: pathlib.Path) -> set[str]:
    """Every path under `top`, relative to it."""
    out = set()
    for dirpath, dirnames, filenames in os.walk(top):
        for entry in dirnames + filenames:
            out.add(os.path.relpath(os.path.join(dirpath, entry), top))
    return out


@pytest.fixture
def queue(root: pathlib.Path) -> Iterator[Queue]:
    """The default queue over an empty root."""
    q = Queue(root, staleness=0)
    yield q
    q.close()


class _Run:
    """A Worker whose run_until_empty() fails instead of hanging if a regression stalls it."""

    def __init__(self, queue: Queue, **options: object) -> None:
        self.worker = Worker(queue, handle_signals=False, **options)  # type: ignore[arg-type]

    async def run_until_empty(self, **options: typing.Any) -> int:
        async with asyncio.timeout(HANG_GUARD):
            return await self.worker.run_until_empty(**options)


def worker(queue: Queue, **options: object) -> _Run:
    return _Run(queue, **options)


@dataclasses.dataclass
class Point:
    """A dataclass result."""

    x: int
    y: list[str]


@attrs.frozen
class Size:
    """An attrs result, nested."""

    w: int
    h: int
    origin: Point


# -- push, get, result, wait ---------------------------------------------------------------


@pytest.mark.asyncio
async def test_push_get_run_result(queue: Queue) -> None:
    """A pushed job is pending, then a worker runs it and result() returns its value."""

    @queue.task(name=name())
    async def add(a: int, b: int) -> int:
        """Adds."""
        return a + b

    assert await add(2, 3) == 5  # calling the Task runs the function directly
    job_id = await add.enqueue(a=2, b=40)
    state = await queue.get(job_id)
    assert (state.status, state.func, state.kwargs) == (
        JobStatus.PENDING,
        add.task_name,
        {"a": 2, "b": 40},
    )
    with pytest.raises(JobNotDone):
        await queue.result(job_id)
    assert await worker(queue).run_until_empty() == 1
    assert await queue.result(job_id) == 42
    state = await queue.wait(job_id, timeout=10)
    assert (state.status, state.result, state.attempts) == (JobStatus.COMPLETED, 42, 1)
    assert state.is_done
    assert state.started_at is not None and state.finished_at is not None
    assert state.worker is not None


@pytest.mark.asyncio
async def test_wait_wakes_when_a_worker_in_the_process_finishes(queue: Queue) -> None:
    """wait() started before the worker returns the completed state once the job ends."""

    @queue.task(name=name())
    async def hello(who: str) -> str:
        """Greets."""
        return f"hello {who}"

    job_id = await queue.push(hello.job(who="world"))
    state, ran = await asyncio.gather(
        queue.wait(job_id, timeout=30), worker(queue).run_until_empty()
    )
    assert ran == 1
    assert state.result == "hello world"


@pytest.mark.asyncio
async def test_get_unknown_job_raises_job_not_found(queue: Queue) -> None:
    """get() of an id nobody pushed raises JobNotFound, which is a LookupError."""
    with pytest.raises(JobNotFound) as info:
        await queue.get("0" * 22)
    assert isinstance(info.value, LookupError)


@pytest.mark.asyncio
async def test_wait_raises_job_failed_for_a_failing_task(queue: Queue) -> None:
    """wait() raises JobFailed carrying the failed state and the task's error."""

    @queue.task(name=name())
    def broken() -> None:
        """Always fails."""
        raise ValueError("no good")

    job_id = await broken.enqueue()
    await worker(queue).run_until_empty()
    with pytest.raises(JobFailed) as info:
        await queue.wait(job_id, timeout=10)
    state = info.value.state
    assert state.status is JobStatus.FAILED
    assert state.error is not None
    assert state.error.type == "ValueError"
    assert state.error.message == "no good"
    assert "no good" in state.error.traceback
    assert "no good" in str(info.value)
    with pytest.raises(JobFailed):
        await queue.result(job_id)


@pytest.mark.asyncio
async def test_wait_times_out_for_a_job_nobody_runs(queue: Queue) -> None:
    """wait() with a timeout raises WaitTimeout, also a TimeoutError, if no worker runs the job."""
    job_id = await queue.push(Job(func=name()))
    with pytest.raises(WaitTimeout) as info:
        await queue.wait(job_id, timeout=0.05)
    assert isinstance(info.value, TimeoutError)
    assert (await queue.get(job_id)).status is JobStatus.PENDING


# -- retries --------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_failing_twice_then_succeeding_completes_on_attempt_three(queue: Queue) -> None:
    """With max_attempts=3 and a short backoff, two failures then a success complete the job."""
    calls: list[int] = []

    @queue.task(name=name(), max_attempts=3, backoff=Backoff(initial=0.01))
    async def flaky(ctx: fsjobs.Context) -> str:
        """Fails on its first two attempts."""
        calls.append(ctx.attempt)
        if len(calls) < 3:
            raise RuntimeError(f"attempt {ctx.attempt} failed")
        return "finally"

    job_id = await flaky.enqueue()
    ran = await worker(queue).run_until_empty(wait_scheduled=True, max_wait=10)
    assert ran == 3
    assert calls == [1, 2, 3]
    state = await queue.wait(job_id, timeout=10)
    assert (state.status, state.attempts, state.max_attempts) == (JobStatus.COMPLETED, 3, 3)
    assert state.result == "finally"
    assert state.error is None


@pytest.mark.asyncio
async def test_exhausted_retries_fail_with_the_last_error(queue: Queue) -> None:
    """A task failing on every attempt ends failed after max_attempts, with the last error."""

    @queue.task(name=name(), max_attempts=2, backoff=Backoff(initial=0.01))
    async def always(ctx: fsjobs.Context) -> None:
        """Always fails."""
        raise KeyError(f"attempt {ctx.attempt}")

    job_id = await always.enqueue()
    assert await worker(queue).run_until_empty(wait_scheduled=True, max_wait=10) == 2
    state = await queue.get(job_id)
    assert (state.status, state.attempts) == (JobStatus.FAILED, 2)
    assert state.error is not None and "attempt 2" in state.error.message


@pytest.mark.asyncio
async def test_retry_exception_asks_for_another_attempt(queue: Queue) -> None:
    """raise fsjobs.Retry(delay=...) runs the job again after that delay."""
    calls: list[int] = []

    @queue.task(name=name(), max_attempts=2)
    async def again(ctx: fsjobs.Context) -> int:
        """Asks for one retry."""
        calls.append(ctx.attempt)
        if ctx.attempt == 1:
            raise fsjobs.Retry(delay=0.01)
        return ctx.attempt

    job_id = await again.enqueue()
    assert await worker(queue).run_until_empty(wait_scheduled=True, max_wait=10) == 2
    assert calls == [1, 2]
    assert await queue.result(job_id) == 2


@pytest.mark.asyncio
async def test_retrying_job_is_not_run_early_without_wait_scheduled(queue: Queue) -> None:
    """run_until_empty() does not wait for a backoff: the job stays retrying."""

    @queue.task(name=name(), max_attempts=2, backoff=Backoff(initial=3600, jitter=0))
    async def fails() -> None:
        """Fails."""
        raise RuntimeError("x")

    job_id = await fails.enqueue()
    assert await worker(queue).run_until_empty() == 1
    state = await queue.get(job_id)
    assert (state.status, state.attempts) == (JobStatus.RETRYING, 1)
    assert (await queue.counts())[JobStatus.RETRYING] == 1


@pytest.mark.asyncio
async def test_unknown_task_fails_at_once_and_worker_continues(queue: Queue) -> None:
    """A job naming an unknown task fails on attempt 1 without retry; other jobs still run."""

    @queue.task(name=name())
    async def fine() -> str:
        """Works."""
        return "ok"

    unknown = await queue.push(Job(func=name(), max_attempts=5))
    good = await fine.enqueue()
    assert await worker(queue).run_until_empty(wait_scheduled=True, max_wait=10) == 2
    state = await queue.get(unknown)
    assert (state.status, state.attempts) == (JobStatus.FAILED, 1)
    assert state.error is not None and "UnknownTask" in state.error.type
    assert state.func in state.error.message
    assert await queue.result(good) == "ok"


@pytest.mark.asyncio
async def test_non_json_result_fails_without_retry(queue: Queue) -> None:
    """A task returning a value that is not JSON fails at once with a clear error."""
    calls: list[int] = []

    @queue.task(name=name(), max_attempts=3, backoff=Backoff(initial=0.01))
    async def opaque() -> object:
        """Returns an object."""
        calls.append(1)
        return object()

    job_id = await opaque.enqueue()
    await worker(queue).run_until_empty(wait_scheduled=True, max_wait=10)
    assert calls == [1]
    state = await queue.get(job_id)
    assert (state.status, state.attempts) == (JobStatus.FAILED, 1)
    assert state.error is not None
    assert "ResultNotSerializable" in state.error.type
    assert "object" in state.error.message and "JSON" in state.error.message


@pytest.mark.asyncio
async def test_nan_result_fails_without_retry(queue: Queue) -> None:
    """A NaN result is not strict JSON: the attempt fails, without retry."""

    @queue.task(name=name(), max_attempts=3)
    def nan() -> float:
        """Returns NaN."""
        return float("nan")

    job_id = await nan.enqueue()
    await worker(queue).run_until_empty(wait_scheduled=True, max_wait=10)
    state = await queue.get(job_id)
    assert (state.status, state.attempts) == (JobStatus.FAILED, 1)


@pytest.mark.asyncio
async def test_attrs_and_dataclass_results_are_plain_dicts(queue: Queue) -> None:
    """attrs and dataclass return values are stored and returned as plain JSON dicts."""

    @queue.task(name=name())
    async def measure() -> Size:
        """Returns an attrs value holding a dataclass."""
        return Size(w=3, h=4, origin=Point(1, ["a"]))

    job_id = await measure.enqueue()
    await worker(queue).run_until_empty()
    assert await queue.result(job_id) == {"w": 3, "h": 4, "origin": {"x": 1, "y": ["a"]}}


# -- timeouts, threads, context -----------------------------------------------------------------


@pytest.mark.asyncio
async def test_async_task_over_its_timeout_ends_timed_out(queue: Queue) -> None:
    """An async task that outlives its timeout is cancelled; on its last attempt it is timed_out."""
    attempts: list[int] = []

    @queue.task(name=name(), timeout=0.05, max_attempts=2, backoff=Backoff(initial=0.01))
    async def hang(ctx: fsjobs.Context) -> None:
        """Waits forever."""
        attempts.append(ctx.attempt)
        await asyncio.Event().wait()

    job_id = await hang.enqueue()
    assert await worker(queue).run_until_empty(wait_scheduled=True, max_wait=10) == 2
    assert attempts == [1, 2]
    state = await queue.get(job_id)
    assert (state.status, state.attempts) == (JobStatus.TIMED_OUT, 2)
    assert state.is_done
    assert state.error is not None and "TimeoutError" in state.error.type
    with pytest.raises(JobFailed):
        await queue.wait(job_id, timeout=10)


@pytest.mark.asyncio
async def test_job_timeout_applies_to_a_raw_job(queue: Queue) -> None:
    """A timeout set on the Job (not the task) also ends the attempt."""
    task_name = name()

    @queue.task(name=task_name)
    async def hang() -> None:
        """Waits forever."""
        await asyncio.Event().wait()

    job_id = await queue.push(Job(func=task_name, timeout=0.05))
    await worker(queue).run_until_empty()
    assert (await queue.get(job_id)).status is JobStatus.TIMED_OUT


@pytest.mark.asyncio
async def test_sync_task_runs_in_a_thread(queue: Queue) -> None:
    """A def task runs in a worker thread, not on the event loop's thread."""
    seen: dict[str, object] = {}

    @queue.task(name=name())
    def blocking(n: int) -> int:
        """Records where it runs."""
        seen["thread"] = threading.get_ident()
        seen["name"] = threading.current_thread().name
        return n * 2

    job_id = await blocking.enqueue(n=21)
    await worker(queue).run_until_empty()
    assert await queue.result(job_id) == 42
    assert seen["thread"] != threading.get_ident()
    assert str(seen["name"]).startswith("fsjobs-task-")


@pytest.mark.asyncio
async def test_context_is_injected_and_progress_is_kept(queue: Queue) -> None:
    """A Context parameter receives the attempt's details; its last progress shows in get()."""
    seen: dict[str, object] = {}

    @queue.task(name=name(), max_attempts=2)
    async def report(ctx: fsjobs.Context, label: str) -> str:
        """Reports progress."""
        seen.update(job_id=ctx.job_id, attempt=ctx.attempt, max=ctx.max_attempts, queue=ctx.queue)
        await ctx.progress(10, "started")
        await ctx.progress(50, "half")
        await ctx.progress(100, "done")
        return label

    job_id = await report.enqueue(label="x")
    await worker(queue).run_until_empty()
    assert seen == {"job_id": job_id, "attempt": 1, "max": 2, "queue": "default"}
    state = await queue.get(job_id)
    assert state.result == "x"
    assert (state.progress, state.progress_message) == (100, "done")


@pytest.mark.asyncio
async def test_sync_task_gets_context_too(queue: Queue) -> None:
    """A def task with a Context parameter receives it as well."""
    seen: list[str] = []

    @queue.task(name=name())
    def sync_report(ctx: fsjobs.Context) -> None:
        """Notes its job id."""
        seen.append(ctx.job_id)

    job_id = await sync_report.enqueue()
    await worker(queue).run_until_empty()
    assert seen == [job_id]


# -- push-time checks ---------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("kwargs", [{"y": 1}, {}, {"x": 1, "extra": 2}], ids=repr)
async def test_kwargs_not_matching_the_signature_raise_at_push(
    queue: Queue, root: pathlib.Path, kwargs: dict[str, int]
) -> None:
    """kwargs not fitting a known task's signature raise TypeError at push; nothing is written."""

    @queue.task(name=name())
    async def needs_x(x: int, ctx: fsjobs.Context) -> int:
        """Needs x."""
        return x

    before = tree(root)
    with pytest.raises(TypeError):
        await queue.push(Job(func=needs_x.task_name, kwargs=kwargs))
    with pytest.raises(TypeError):
        await queue.push_many([needs_x.job(x=1), Job(func=needs_x.task_name, kwargs=kwargs)])
    with pytest.raises(TypeError):
        await needs_x.enqueue(**kwargs)
    assert tree(root) == before


def test_task_defined_in_main_needs_a_name(queue: Queue) -> None:
    """A task function from __main__ is refused unless it is given name=."""

    def script() -> None:
        """Stands in for a function in a script."""

    script.__module__ = "__main__"
    with pytest.raises(InvalidJob, match="name"):
        queue.task()(script)
    named = queue.task(name=name())(script)
    assert named.task_name.startswith("tests.unit.qw.")


def test_one_name_cannot_register_two_functions(queue: Queue) -> None:
    """Registering a second function under a taken task name is refused."""
    task_name = name()

    @queue.task(name=task_name)
    def first() -> None:
        """First."""

    def second() -> None:
        """Second."""

    with pytest.raises(InvalidJob):
        queue.task(name=task_name)(second)


def test_unknown_task_option_is_refused(queue: Queue) -> None:
    """A typo in a task option is a TypeError, not silently ignored."""
    with pytest.raises(TypeError):
        queue.task(name=name(), max_attempt=3)


# -- several queues, listing, counting ----------------------------------------------------------


@pytest.mark.asyncio
async def test_worker_serving_two_queues_runs_both(root: pathlib.Path) -> None:
    """A worker given two queues runs the jobs of each."""
    alpha = Queue(root, "alpha", staleness=0)
    beta = Queue(root, "beta", staleness=0)
    try:

        @alpha.task(name=name())
        async def which(tag: str) -> str:
            """Echoes its tag."""
            return tag

        a = [await alpha.push(which.job(tag=f"a{i}")) for i in range(3)]
        b = [await beta.push(which.job(tag=f"b{i}")) for i in range(3)]
        assert (await beta.get(b[0])).queue == "beta"
        ran = await worker(alpha, queues=["alpha", "beta"]).run_until_empty()
        assert ran == 6
        assert [await alpha.result(i) for i in a] == ["a0", "a1", "a2"]
        assert [await alpha.result(i) for i in b] == ["b0", "b1", "b2"]
        assert (await beta.counts())[JobStatus.COMPLETED] == 3
    finally:
        alpha.close()
        beta.close()


@pytest.mark.asyncio
async def test_worker_ignores_queues_it_does_not_serve(root: pathlib.Path) -> None:
    """A worker of one queue leaves the jobs of another queue alone."""
    alpha = Queue(root, "alpha", staleness=0)
    beta = Queue(root, "beta", staleness=0)
    try:

        @alpha.task(name=name())
        async def noop() -> None:
            """Does nothing."""

        other = await beta.push(noop.job())
        assert await worker(alpha).run_until_empty() == 0
        assert (await beta.get(other)).status is JobStatus.PENDING
    finally:
        alpha.close()
        beta.close()


@pytest.mark.asyncio
async def test_list_jobs_newest_first_with_limit_and_counts(queue: Queue) -> None:
    """list_jobs(status=...) lists newest first up to limit; counts() tallies every status."""

    @queue.task(name=name())
    async def work(i: int) -> int:
        """Returns i."""
        return i

    @queue.task(name=name())
    async def fail() -> None:
        """Fails."""
        raise RuntimeError("x")

    done = [await work.enqueue(i=i) for i in range(5)]
    failed = await fail.enqueue()
    assert await worker(queue).run_until_empty() == 6
    pending = [await work.enqueue(i=i) for i in range(2)]
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    scheduled = await queue.push(work.job(i=9).with_scheduled_at(later))

    listed = await queue.list_jobs(status=JobStatus.COMPLETED, limit=3)
    assert [s.id for s in listed] == done[::-1][:3]
    assert all(s.status is JobStatus.COMPLETED for s in listed)
    assert [s.id for s in await queue.list_jobs(status="pending")] == pending[::-1]
    assert [s.id for s in await queue.list_jobs(status=JobStatus.FAILED)] == [failed]
    assert [s.id for s in await queue.list_jobs(status=JobStatus.SCHEDULED)] == [scheduled]
    everything = await queue.list_jobs()
    assert [s.id for s in everything] == [scheduled, *pending[::-1], failed, *done[::-1]]
    assert [s.id for s in await queue.list_jobs(limit=2)] == [scheduled, pending[1]]

    counts = await queue.counts()
    assert counts[JobStatus.COMPLETED] == 5
    assert counts[JobStatus.FAILED] == 1
    assert counts[JobStatus.PENDING] == 2
    assert counts[JobStatus.SCHEDULED] == 1
    assert sum(counts.values()) == 9
    assert set(counts) == set(JobStatus)


@pytest.mark.asyncio
async def test_counts_and_list_are_per_queue(root: pathlib.Path) -> None:
    """counts() and list_jobs() cover the Queue's own queue, or another one when named."""
    alpha = Queue(root, "alpha", staleness=0)
    beta = Queue(root, "beta", staleness=0)
    try:
        task_name = name()
        a = await alpha.push(Job(func=task_name))
        b = await beta.push(Job(func=task_name))
        assert (await alpha.counts())[JobStatus.PENDING] == 1
        assert [s.id for s in await alpha.list_jobs()] == [a]
        assert [s.id for s in await alpha.list_jobs(queue="beta")] == [b]
        assert {s.id for s in await alpha.list_jobs(queue="*")} == {a, b}
        assert (await alpha.counts(queue="*"))[JobStatus.PENDING] == 2
    finally:
        alpha.close()
        beta.close()


@pytest.mark.asyncio
async def test_scheduled_job_waits_without_wait_scheduled(queue: Queue) -> None:
    """run_until_empty() does not run (or wait for) a job scheduled in the future."""

    @queue.task(name=name())
    async def later() -> str:
        """Runs later."""
        return "ran"

    far = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(hours=1)
    job_id = await queue.push(later.job().with_scheduled_at(far))
    assert await worker(queue).run_until_empty() == 0
    assert await worker(queue).run_until_empty(wait_scheduled=True, max_wait=1) == 0
    state = await queue.get(job_id)
    assert (state.status, state.attempts, state.scheduled_at) == (JobStatus.SCHEDULED, 0, far)


@pytest.mark.asyncio
async def test_scheduled_job_runs_when_due_with_wait_scheduled(queue: Queue) -> None:
    """With wait_scheduled, a job due soon is run once due, never before its scheduled_at."""

    @queue.task(name=name())
    async def later() -> str:
        """Runs later."""
        return "ran"

    now = dt.datetime.now(dt.UTC)
    soon = now.replace(microsecond=now.microsecond // 1000 * 1000) + dt.timedelta(seconds=0.3)
    job_id = await queue.push(later.job().with_scheduled_at(soon))
    far = await queue.push(later.job().with_scheduled_at(now + dt.timedelta(hours=1)))
    assert await worker(queue).run_until_empty(wait_scheduled=True, max_wait=10) == 1
    state = await queue.get(job_id)
    assert state.result == "ran"
    assert state.started_at is not None and state.started_at >= soon
    assert (await queue.get(far)).status is JobStatus.SCHEDULED


@pytest.mark.asyncio
async def test_push_many_returns_ids_in_order(queue: Queue) -> None:
    """push_many pushes every job and returns their ids in the order given."""
    task_name = name()
    ids = await queue.push_many([Job(func=task_name, kwargs={"i": i}) for i in range(5)])
    assert len(set(ids)) == 5
    assert [(await queue.get(i)).kwargs for i in ids] == [{"i": i} for i in range(5)]


def test_queue_refuses_hostile_names(root: pathlib.Path) -> None:
    """A Queue name that is not one safe path component is refused."""
    for bad in ("../x", "a/b", "", ".hidden"):
        with pytest.raises(InvalidJob):
            Queue(root, bad)
    assert tree(root) == set()
