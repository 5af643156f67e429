"""Operator holds: a held job does not run, keeps its unique key, and comes back as it was."""

from __future__ import annotations

import datetime as dt
import pathlib
import uuid

import pytest

import fsjobs
from fsjobs import JobStatus
from fsjobs.testing import drain


def name(tag: str) -> str:
    return f"tests.hold.{tag}.{uuid.uuid4().hex[:8]}"


@pytest.mark.asyncio
async def test_a_held_job_does_not_run_until_released(root: pathlib.Path) -> None:
    """Hold parks a pending job; release puts it back with its priority; then it runs."""
    queue = fsjobs.Queue(root)
    order: list[str] = []

    @queue.task(name=name("rec"))
    def rec(tag: str) -> None:
        order.append(tag)

    held = await queue.push(rec.job(tag="held").with_priority(-5))
    other = await rec.enqueue(tag="other")
    assert await queue.hold(held) is True
    assert await queue.hold(held) is True, "holding a held job changes nothing"
    state = await queue.get(held)
    assert (state.status, state.priority, state.attempts) == (JobStatus.HELD, -5, 0)
    assert not state.is_done

    assert await drain(queue) == 1
    assert order == ["other"]
    assert await queue.release(held) is True
    assert await queue.release(held) is False, "no longer held"
    assert (await queue.get(held)).status is JobStatus.PENDING
    assert await drain(queue) == 1
    assert order == ["other", "held"]
    assert (await queue.get(other)).status is JobStatus.COMPLETED


@pytest.mark.asyncio
async def test_a_held_scheduled_job_goes_back_to_waiting(root: pathlib.Path) -> None:
    """A scheduled job held and released is scheduled again, for the same time."""
    queue = fsjobs.Queue(root)
    when = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)).replace(microsecond=0)
    job_id = await queue.push(fsjobs.Job(func=name("later"), scheduled_at=when))
    assert await queue.hold(job_id) is True
    assert await queue.release(job_id) is True
    state = await queue.get(job_id)
    assert (state.status, state.scheduled_at) == (JobStatus.SCHEDULED, when)


@pytest.mark.asyncio
async def test_a_held_job_keeps_its_unique_key_and_can_be_cancelled(root: pathlib.Path) -> None:
    """Pushing the key of a held job returns the held job; cancelling it frees the key."""
    queue = fsjobs.Queue(root)
    job = fsjobs.Job(func=name("keyed"), unique_key="nightly")
    job_id = await queue.push(job)
    assert await queue.hold(job_id) is True
    assert job_id == await queue.push(job)
    assert await queue.cancel(job_id) is True
    assert (await queue.get(job_id)).status is JobStatus.CANCELLED
    assert job_id != await queue.push(job), "a cancelled job frees its key"


@pytest.mark.asyncio
async def test_running_and_final_jobs_cannot_be_held(root: pathlib.Path) -> None:
    """Only a job that has not started can be held."""
    queue = fsjobs.Queue(root)

    @queue.task(name=name("done"))
    def done() -> None:
        return None

    finished = await done.enqueue()
    await drain(queue)
    assert await queue.hold(finished) is False
    running = await done.enqueue()
    store = queue.store
    lock_fd, hb_fd = store.register_worker("holder-1")
    claim = store.claim("default", store.ready("default")[0], "holder-1")
    assert claim is not None and claim.job_id == running
    assert await queue.hold(running) is False
    store.close_claim(claim)
    store.unregister_worker("holder-1", lock_fd, hb_fd)
