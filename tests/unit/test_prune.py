"""Retention: prune() deletes final jobs past an age, with their files, and nothing else."""

from __future__ import annotations

import pathlib
import uuid

import pytest

import fsjobs
from fsjobs import JobStatus
from fsjobs.fsck import fsck
from fsjobs.testing import FakeClock, drain


@pytest.mark.asyncio
async def test_prune_deletes_old_final_jobs_and_keeps_the_rest(root: pathlib.Path) -> None:
    """Old completed and failed jobs go with their folders; recent, pending and corrupt stay."""
    clock = FakeClock()
    queue = fsjobs.Queue(root, clock=clock)

    @queue.task(name=f"tests.prune.task.{uuid.uuid4().hex[:8]}")
    def task(fail: bool) -> str:
        if fail:
            raise ValueError("no")
        return "ok"

    old = [await task.enqueue(fail=False), await task.enqueue(fail=True)]
    await drain(queue)
    clock.advance(8 * 86400)
    recent = await task.enqueue(fail=False)
    await drain(queue)
    waiting = await task.enqueue(fail=False)

    assert await queue.prune(older_than=7 * 86400) == 2
    for job_id in old:
        with pytest.raises(fsjobs.JobNotFound):
            await queue.get(job_id)
        assert not list(root.glob(f"jobs/*/{job_id}"))
    assert (await queue.get(recent)).status is JobStatus.COMPLETED
    assert (await queue.get(waiting)).status is JobStatus.PENDING
    assert await queue.prune(older_than=7 * 86400) == 0
    assert fsck(queue.store).problems == ()


@pytest.mark.asyncio
async def test_prune_can_be_limited_to_some_statuses(root: pathlib.Path) -> None:
    """statuses= chooses what goes; a pruned key is free again."""
    clock = FakeClock()
    queue = fsjobs.Queue(root, clock=clock)

    @queue.task(name=f"tests.prune.keyed.{uuid.uuid4().hex[:8]}")
    def keyed(fail: bool) -> None:
        if fail:
            raise ValueError("no")

    done = await queue.push(keyed.job(fail=False).with_unique_key("daily"))
    failed = await keyed.enqueue(fail=True)
    await drain(queue)
    clock.advance(3600)
    assert await queue.prune(older_than=60, statuses=["failed"]) == 1
    assert (await queue.get(done)).status is JobStatus.COMPLETED
    with pytest.raises(fsjobs.JobNotFound):
        await queue.get(failed)
    assert await queue.prune(older_than=60) == 1
    assert await queue.push(keyed.job(fail=False).with_unique_key("daily")) != done
    with pytest.raises(ValueError):
        await queue.prune(older_than=60, statuses=["pending"])
