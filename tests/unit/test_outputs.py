"""Output files: what the last attempt wrote into ctx.output_dir, listed and readable."""

from __future__ import annotations

import pathlib
import uuid

import pytest

import fsjobs
from fsjobs import JobStatus
from fsjobs.testing import drain


@pytest.mark.asyncio
async def test_outputs_are_listed_and_readable(root: pathlib.Path) -> None:
    """Files a task writes to ctx.output_dir appear in JobState.outputs and read_output()."""
    queue = fsjobs.Queue(root)

    @queue.task(name=f"tests.outputs.report.{uuid.uuid4().hex[:8]}")
    def report(ctx: fsjobs.Context) -> str:
        (ctx.output_dir / "report.txt").write_text("all good\n")
        (ctx.output_dir / "data.bin").write_bytes(b"\x00\x01")
        return "written"

    job_id = await report.enqueue()
    await drain(queue)
    state = await queue.get(job_id)
    assert (state.status, state.outputs) == (JobStatus.COMPLETED, ("data.bin", "report.txt"))
    assert await queue.read_output(job_id, "report.txt") == b"all good\n"
    with pytest.raises(FileNotFoundError):
        await queue.read_output(job_id, "missing.txt")
    with pytest.raises(fsjobs.InvalidJob):
        await queue.read_output(job_id, "../../fsjobs.json")


@pytest.mark.asyncio
async def test_a_failed_attempts_outputs_do_not_mix_with_the_next(root: pathlib.Path) -> None:
    """Each attempt has its own output directory: the job's outputs are the last attempt's."""
    queue = fsjobs.Queue(root)

    @queue.task(
        name=f"tests.outputs.flaky.{uuid.uuid4().hex[:8]}",
        max_attempts=2,
        backoff=fsjobs.Backoff(initial=0, jitter=0),
    )
    def flaky(ctx: fsjobs.Context) -> None:
        if ctx.attempt == 1:
            (ctx.output_dir / "partial.txt").write_text("half")
            raise RuntimeError("crashed half way")
        (ctx.output_dir / "final.txt").write_text("whole")

    job_id = await flaky.enqueue()
    await drain(queue, wait_scheduled=True, max_wait=30)
    state = await queue.get(job_id)
    assert (state.status, state.attempts, state.outputs) == (
        JobStatus.COMPLETED,
        2,
        ("final.txt",),
    )
    assert await queue.read_output(job_id, "final.txt") == b"whole"


@pytest.mark.asyncio
async def test_a_sync_task_reports_progress_from_its_thread(root: pathlib.Path) -> None:
    """ctx.progress_sync() works from a sync task's thread; the last value is kept."""
    queue = fsjobs.Queue(root)

    @queue.task(name=f"tests.outputs.steps.{uuid.uuid4().hex[:8]}")
    def steps(ctx: fsjobs.Context, n: int) -> int:
        for i in range(1, n + 1):
            ctx.progress_sync(100 * i / n, f"step {i} of {n}")
        return n

    job_id = await steps.enqueue(n=50)
    await drain(queue)
    state = await queue.get(job_id)
    assert (state.status, state.progress, state.progress_message) == (
        JobStatus.COMPLETED,
        100.0,
        "step 50 of 50",
    )
