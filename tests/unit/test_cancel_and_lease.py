"""Cancel requests, and rescue of a worker whose heartbeat stopped (a frozen process or host)."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import pathlib
import threading
import time
import uuid

import pytest

import fsjobs
from fsjobs.store import Ending, Outcome, Store
from fsjobs.testing import FakeClock

HANG_GUARD = 60


def unique(name: str) -> str:
    return f"tests.cancel.{name}.{uuid.uuid4().hex[:8]}"


async def wait_for_status(
    queue: fsjobs.Queue, job_id: str, status: fsjobs.JobStatus
) -> fsjobs.JobState:
    async with asyncio.timeout(HANG_GUARD):
        while True:
            state = await queue.get(job_id)
            if state.status is status:
                return state
            await asyncio.sleep(0.01)


@pytest.mark.asyncio
async def test_cancel_pending_and_scheduled_jobs_never_run(root: pathlib.Path) -> None:
    """A job cancelled before it starts ends cancelled at once and its task never runs."""
    queue = fsjobs.Queue(root)
    ran: list[str] = []

    @queue.task(name=unique("record"))
    def record(tag: str) -> None:
        ran.append(tag)

    pending = await record.enqueue(tag="pending")
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    scheduled = await queue.push(record.job(tag="scheduled").with_scheduled_at(later))
    kept = await record.enqueue(tag="kept")

    assert await queue.cancel(pending) is True
    assert await queue.cancel(scheduled) is True
    assert (await queue.get(pending)).status is fsjobs.JobStatus.CANCELLED
    assert (await queue.get(scheduled)).status is fsjobs.JobStatus.CANCELLED
    with pytest.raises(fsjobs.JobCancelled):
        await queue.wait(pending, timeout=5)

    worker = fsjobs.Worker(queue, handle_signals=False)
    assert await worker.run_until_empty() == 1
    assert ran == ["kept"]
    assert (await queue.get(kept)).status is fsjobs.JobStatus.COMPLETED


@pytest.mark.asyncio
async def test_cancel_a_running_async_task_delivers_cancelled_error(root: pathlib.Path) -> None:
    """A running async task gets CancelledError; the job ends cancelled, not retried."""
    queue = fsjobs.Queue(root)
    started = asyncio.Event()
    saw_cancel = asyncio.Event()

    @queue.task(name=unique("forever"), max_attempts=3)
    async def forever() -> None:
        started.set()
        try:
            await asyncio.sleep(HANG_GUARD)
        except asyncio.CancelledError:
            saw_cancel.set()
            raise

    job_id = await forever.enqueue()
    worker = fsjobs.Worker(queue, handle_signals=False)
    run = asyncio.create_task(worker.run())
    try:
        async with asyncio.timeout(HANG_GUARD):
            await started.wait()
        assert await queue.cancel(job_id, timeout=HANG_GUARD) is True
        assert saw_cancel.is_set()
        state = await queue.get(job_id)
        assert (state.status, state.attempts) == (fsjobs.JobStatus.CANCELLED, 1)
    finally:
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run


@pytest.mark.asyncio
async def test_cancel_a_running_sync_task_sets_ctx_cancelled(root: pathlib.Path) -> None:
    """A sync task sees ctx.cancelled and returns; the job is cancelled."""
    queue = fsjobs.Queue(root)
    started = threading.Event()

    @queue.task(name=unique("loop"))
    def loop(ctx: fsjobs.Context) -> str:
        started.set()
        deadline = time.monotonic() + HANG_GUARD
        while not ctx.cancelled and time.monotonic() < deadline:
            time.sleep(0.005)
        return "noticed" if ctx.cancelled else "never told"

    job_id = await loop.enqueue()
    worker = fsjobs.Worker(queue, handle_signals=False)
    run = asyncio.create_task(worker.run())
    try:
        await asyncio.to_thread(started.wait, HANG_GUARD)
        assert await queue.cancel(job_id, timeout=HANG_GUARD) is True
        assert (await queue.get(job_id)).status is fsjobs.JobStatus.CANCELLED
    finally:
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run


@pytest.mark.asyncio
async def test_cancel_of_a_finished_job_changes_nothing(root: pathlib.Path) -> None:
    """Cancelling a completed job returns False and leaves its result alone."""
    queue = fsjobs.Queue(root)

    @queue.task(name=unique("three"))
    def three() -> int:
        return 3

    job_id = await three.enqueue()
    await fsjobs.Worker(queue, handle_signals=False).run_until_empty()
    assert await queue.cancel(job_id) is False
    assert await queue.result(job_id) == 3


@pytest.mark.asyncio
async def test_a_cancel_request_survives_the_death_of_the_worker(root: pathlib.Path) -> None:
    """A job asked to cancel while its worker died is cancelled by the next claimer, not run."""
    queue = fsjobs.Queue(root)
    ran: list[int] = []

    @queue.task(name=unique("never"), max_attempts=5)
    def never() -> None:
        ran.append(1)

    job_id = await never.enqueue()
    store = queue.store
    lock_fd, hb_fd = store.register_worker("dying-1")
    claim = store.claim("default", store.ready("default")[0], "dying-1")
    assert claim is not None
    assert await queue.cancel(job_id, timeout=0.05) is False  # still running: request stands
    os.close(lock_fd)  # the worker dies: the kernel drops its lock
    os.close(hb_fd)
    store.close_claim(claim)

    await fsjobs.Worker(queue, handle_signals=False).run_until_empty()
    assert ran == []
    assert (await queue.get(job_id)).status is fsjobs.JobStatus.CANCELLED


def test_a_silent_heartbeat_is_rescued_after_the_lease_and_fenced(root: pathlib.Path) -> None:
    """
    A worker that holds its lock but stops beating (frozen) loses its job after the
    lease, measured on the rescuer's clock; its late finish is refused.
    """
    clock = FakeClock()
    store = Store(root, clock=clock)
    store.push_many([(fsjobs.Job(func="tests.cancel.frozen"), "default")])
    lock_fd, hb_fd = store.register_worker("frozen-1")
    claim = store.claim("default", store.ready("default")[0], "frozen-1")
    assert claim is not None

    rescuer = Store(root, clock=clock)
    assert rescuer.rescue("default", "rescuer-1", lease=10) == []  # first look: starts the clock
    clock.advance(6)
    Store.beat(hb_fd, 1)  # still alive: the counter moved
    assert rescuer.rescue("default", "rescuer-1", lease=10) == []
    clock.advance(9)
    assert rescuer.rescue("default", "rescuer-1", lease=10) == [], "9 s after the last beat"
    clock.advance(2)
    assert [claim.job_id] == rescuer.rescue("default", "rescuer-1", lease=10)

    assert store.finish(claim, Outcome(Ending.COMPLETED, result="late")) is False
    state = store.get(claim.job_id)
    assert (state.status, state.result) == (fsjobs.JobStatus.PENDING, None)
    os.close(lock_fd)
    os.close(hb_fd)
