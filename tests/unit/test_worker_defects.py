"""
Issue #11, in one process: what a task raises is the task's failure, the worker's
signal handling is opt-in, a paused or failing store never makes the worker give
up or spin, job data reaches the log escaped, and the Queue refuses bad arguments.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import logging
import os
import pathlib
import signal
import uuid
from collections.abc import Iterator, Sequence

import pytest

import fsjobs
from fsjobs import Backoff, Job, JobStatus, Queue, Worker, _attempt, _names, _pacing
from fsjobs import _claimer as claimer_module
from fsjobs.errors import StoreFull
from fsjobs.store import Claim, Store

#: A bound on anything a test waits for, so that a regression fails instead of hanging.
HANG_GUARD = 60.0
#: Enough runs of a job to show it is being run again and again instead of failing.
MANY = 5


def name() -> str:
    """A task name no other test uses (the registry is process-wide)."""
    return f"tests.unit.defects.t{uuid.uuid4().hex}"


@pytest.fixture
def queue(root: pathlib.Path) -> Iterator[Queue]:
    q = Queue(root, staleness=0)
    yield q
    q.close()


async def drain(queue: Queue, *, wait_scheduled: bool = True) -> int:
    """Run the queue's jobs in this process (and, by default, the retries they schedule)."""
    async with asyncio.timeout(HANG_GUARD):
        return await Worker(queue).run_until_empty(
            wait_scheduled=wait_scheduled, max_wait=HANG_GUARD
        )


# -- job data reaches the log escaped (#11 item 6) ------------------------------------------------


@pytest.mark.asyncio
async def test_job_data_in_the_workers_log_is_escaped(
    queue: Queue, caplog: pytest.LogCaptureFixture
) -> None:
    """An exception message built from kwargs cannot send escapes or forge log lines."""
    hostile = "\x1b[31mred\nfsjobs.worker: forged"

    @queue.task(name=name(), max_attempts=2, backoff=Backoff(initial=0, jitter=0))
    async def fails(text: str) -> None:
        raise ValueError(f"bad input {text}")

    job_id = await fails.enqueue(text=hostile)
    with caplog.at_level(logging.DEBUG, logger="fsjobs"):
        assert await drain(queue) == 2
    assert (await queue.get(job_id)).status is JobStatus.FAILED
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("fsjobs")]
    assert any("\\x1b[31mred\\nfsjobs.worker: forged" in m for m in messages), messages
    for message in messages:
        assert "\x1b" not in message and "\n" not in message, message


# -- a CancelledError the task raised itself is the task's failure (#11 item 1) -------------------


@pytest.mark.asyncio
async def test_an_async_task_raising_cancelled_error_fails_its_attempt(queue: Queue) -> None:
    """Not taken for a shutdown: the attempt counts and the job fails, it is not run again."""
    calls: list[int] = []

    @queue.task(name=name())
    async def gives_up() -> str:
        calls.append(1)
        if len(calls) > MANY:
            return "run again and again"
        raise asyncio.CancelledError("the task's own")

    job_id = await gives_up.enqueue()
    assert await drain(queue) == 1
    state = await queue.get(job_id)
    assert (state.status, state.attempts, len(calls)) == (JobStatus.FAILED, 1, 1)
    assert state.error is not None
    assert (state.error.type, state.error.message) == (
        "asyncio.exceptions.CancelledError",
        "the task's own",
    )


@pytest.mark.asyncio
async def test_a_sync_task_raising_cancelled_error_fails_its_attempt(queue: Queue) -> None:
    """The same for concurrent.futures.CancelledError raised in a thread: the error is kept."""
    calls: list[int] = []

    @queue.task(name=name())
    def gives_up() -> str:
        calls.append(1)
        if len(calls) > MANY:
            return "run again and again"
        raise concurrent.futures.CancelledError()

    job_id = await gives_up.enqueue()
    assert await drain(queue) == 1
    state = await queue.get(job_id)
    assert (state.status, state.attempts, len(calls)) == (JobStatus.FAILED, 1, 1)
    assert state.error is not None
    assert state.error.type == "concurrent.futures._base.CancelledError"


@pytest.mark.asyncio
async def test_a_task_raising_cancelled_error_is_retried_like_any_exception(queue: Queue) -> None:
    """With attempts left it is retried after its backoff; every attempt counts."""
    calls: list[int] = []

    @queue.task(name=name(), max_attempts=3, backoff=Backoff(initial=0, jitter=0))
    async def gives_up() -> str:
        calls.append(1)
        if len(calls) > MANY:
            return "run again and again"
        raise asyncio.CancelledError()

    job_id = await gives_up.enqueue()
    assert await drain(queue) == 3
    state = await queue.get(job_id)
    assert (state.status, state.attempts, len(calls)) == (JobStatus.FAILED, 3, 3)


@pytest.mark.asyncio
async def test_the_workers_own_cancel_still_releases_the_job(queue: Queue) -> None:
    """A worker stopped while its task runs gives the job back unharmed, attempt and all."""
    started = asyncio.Event()

    @queue.task(name=name())
    async def waits() -> None:
        started.set()
        await asyncio.Event().wait()

    job_id = await waits.enqueue()
    worker = Worker(queue, grace_period=0)
    serving = asyncio.create_task(worker.run())
    async with asyncio.timeout(HANG_GUARD):
        await started.wait()
        worker.stop()
        await serving
    state = await queue.get(job_id)
    assert (state.status, state.attempts) == (JobStatus.PENDING, 0)


# -- signal handlers only when asked for (#11 item 3) ---------------------------------------------


@pytest.mark.asyncio
async def test_run_installs_no_signal_handler_unless_asked(queue: Queue) -> None:
    """An embedded worker leaves the application's SIGTERM/SIGINT handling alone."""
    started = asyncio.Event()

    @queue.task(name=name())
    async def waits() -> None:
        started.set()
        await asyncio.Event().wait()

    await waits.enqueue()
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    worker = Worker(queue, grace_period=0)
    serving = asyncio.create_task(worker.run())
    try:
        async with asyncio.timeout(HANG_GUARD):
            await started.wait()
        during = {sig: signal.getsignal(sig) for sig in before}
    finally:
        worker.stop()
        await serving
    assert during == before


# -- the Queue refuses arguments that cannot mean anything (#11 item 5) ---------------------------


@pytest.mark.parametrize("root", ["", "   ", "\t\n"])
def test_an_empty_root_is_refused_before_anything_is_created(
    root: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="root"):
        Queue(root)
    assert os.listdir(tmp_path) == []


@pytest.mark.asyncio
@pytest.mark.parametrize("limit", [0, -1])
async def test_list_jobs_refuses_a_limit_below_one(queue: Queue, limit: int) -> None:
    await queue.push(Job(func="tests.unit.defects.anything"))
    with pytest.raises(ValueError, match="limit"):
        await queue.list_jobs(limit=limit)


@pytest.mark.asyncio
@pytest.mark.parametrize("interval", [0, -1, float("nan")])
async def test_watch_and_wait_refuse_a_non_positive_interval(queue: Queue, interval: float) -> None:
    job_id = await queue.push(Job(func="tests.unit.defects.anything"))
    with pytest.raises(ValueError, match="interval"):
        await queue.wait(job_id, timeout=HANG_GUARD, interval=interval)
    with pytest.raises(ValueError, match="interval"):
        async for _ in queue.watch(job_id, interval=interval, timeout=HANG_GUARD):
            pass  # pragma: no cover - refused before the first state


@pytest.mark.asyncio
async def test_wait_with_no_interval_still_polls_adaptively(queue: Queue) -> None:
    @queue.task(name=name())
    async def work() -> str:
        return "done"

    job_id = await work.enqueue()
    waiting = asyncio.create_task(queue.wait(job_id, timeout=HANG_GUARD, interval=None))
    await drain(queue)
    assert (await waiting).result == "done"


# -- run_until_empty while claims are paused (#11 item 5) -----------------------------------------


@pytest.mark.asyncio
async def test_run_until_empty_waits_out_a_full_disk_pause(
    queue: Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A claim refused for lack of space pauses claiming; the job is still due, so it runs."""
    monkeypatch.setattr(claimer_module, "FULL_PAUSE", 0.05)
    real_claim_many = Store.claim_many
    refusals = 2

    def full_at_first(
        self: Store, queue: str, paths: Sequence[str], who: str, want: int
    ) -> tuple[list[Claim], int, Exception | None]:
        nonlocal refusals
        if refusals:
            refusals -= 1
            return [], 1, StoreFull("no space left while claiming (a test)")
        return real_claim_many(self, queue, paths, who, want)

    monkeypatch.setattr(Store, "claim_many", full_at_first)

    @queue.task(name=name())
    async def work() -> str:
        return "done"

    job_id = await work.enqueue()
    assert await drain(queue, wait_scheduled=False) == 1
    assert refusals == 0
    assert (await queue.get(job_id)).status is JobStatus.COMPLETED


# -- a progress report that cannot be written does not strand the job (#11 item 7) -------------


@pytest.mark.asyncio
async def test_a_lost_last_progress_report_does_not_keep_the_job_running(
    queue: Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Progress is best effort: the outcome is still published when its last write fails."""
    real_progress = Store.progress
    writes: list[float | None] = []

    def full_after_the_first(
        self: Store, claim: Claim, percent: float | None, message: str | None
    ) -> None:
        writes.append(percent)
        if len(writes) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_progress(self, claim, percent, message)

    monkeypatch.setattr(Store, "progress", full_after_the_first)
    monkeypatch.setattr(_attempt, "PROGRESS_INTERVAL", HANG_GUARD)  # the 2nd one waits

    @queue.task(name=name())
    async def reports(ctx: fsjobs.Context) -> str:
        await ctx.progress(10)  # written at once
        await ctx.progress(90)  # coalesced: written when the attempt ends, and that fails
        return "done"

    job_id = await reports.enqueue()
    assert await drain(queue) == 1
    state = await queue.get(job_id)
    assert (state.status, state.result, writes) == (JobStatus.COMPLETED, "done", [10, 90])


# -- an outcome that cannot be published backs the worker off (#11 item 7) ------------------------


def test_publish_backoff_doubles_from_1_s_to_60_s_and_resets() -> None:
    """Each failure after a pause doubles the next; failures during one add nothing."""
    backoff = _pacing.ClaimBackoff()
    now, pauses = 100.0, []
    for _ in range(9):
        pause = backoff.failed(now)
        assert pause is not None
        assert backoff.failed(now + pause / 2) is None, "a job claimed before the pause"
        pauses.append(pause)
        now += pause
    assert pauses == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    backoff.succeeded()
    assert backoff.failed(now) == 1


@pytest.fixture
def outside(tmp_path: pathlib.Path) -> pathlib.Path:
    """A directory outside the root that must never be written."""
    path = tmp_path / "outside"
    path.mkdir()
    return path


@pytest.mark.asyncio
async def test_a_worker_that_cannot_publish_backs_off_and_the_attempts_count(
    queue: Queue, root: pathlib.Path, outside: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    """
    #11's repro: today's ``completed/<day>`` is a symlink, so no outcome can be
    published. Each attempt that ran counts, the worker backs off after each
    failure (1 s, then 2 s) saying why, and the job ends failed with
    PublishFailed after its two attempts, instead of running hundreds of times.
    """
    runs: list[int] = []

    @queue.task(name=name(), max_attempts=2)
    async def work(ctx: fsjobs.Context) -> str:
        runs.append(ctx.attempt)
        return "done"

    job_id = await work.enqueue()
    day = root / "queues" / queue.name / "completed" / _names.day_of(job_id)
    day.parent.mkdir(parents=True, exist_ok=True)
    day.symlink_to(outside, target_is_directory=True)
    with caplog.at_level(logging.WARNING, logger="fsjobs"):
        async with asyncio.timeout(HANG_GUARD):  # a hang guard, not a timing assertion
            await Worker(queue, concurrency=1).run_until_empty()
    state = await queue.get(job_id)
    assert runs == [1, 2]
    assert (state.status, state.attempts) == (JobStatus.FAILED, 2)
    assert state.error is not None and state.error.type == "PublishFailed"
    warnings = [r.getMessage() for r in caplog.records if "backing off" in r.getMessage()]
    assert len(warnings) == 2, warnings
    assert "for 1 s" in warnings[0] and "for 2 s" in warnings[1]
    assert "not a real directory" in warnings[0]
    assert list(outside.iterdir()) == []  # nothing was written through the symlink
