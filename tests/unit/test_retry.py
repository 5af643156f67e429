"""queue.retry(): re-open a failed, timed-out or cancelled job as a new epoch of the same job."""

from __future__ import annotations

import asyncio
import pathlib
import uuid

import pytest

import fsjobs
from fsjobs import JobStatus
from fsjobs.testing import drain


def name(tag: str) -> str:
    return f"tests.retry.{tag}.{uuid.uuid4().hex[:8]}"


@pytest.mark.asyncio
async def test_a_failed_job_runs_again_with_one_more_attempt(root: pathlib.Path) -> None:
    """Retrying a failed job runs it again; attempts go on counting; history is kept."""
    queue = fsjobs.Queue(root)
    calls: list[int] = []

    @queue.task(name=name("flaky"))
    def flaky() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("first time")
        return "second time"

    job_id = await flaky.enqueue()
    await drain(queue)
    failed = await queue.get(job_id)
    assert (failed.status, failed.attempts, failed.max_attempts) == (JobStatus.FAILED, 1, 1)

    reopened = await queue.retry(job_id)
    assert (reopened.status, reopened.attempts, reopened.max_attempts) == (JobStatus.PENDING, 1, 2)
    assert reopened.error is not None and reopened.error.message == "first time"
    await drain(queue)
    done = await queue.get(job_id)
    assert (done.status, done.attempts, done.result, done.error) == (
        JobStatus.COMPLETED,
        2,
        "second time",
        None,
    )
    segments = sorted(p.name for p in root.glob(f"jobs/*/{job_id}/*.jsonl"))
    assert segments == ["000000.jsonl", "000001.jsonl", "000002.jsonl", "000003.jsonl"]

    history = await queue.history(job_id)
    assert [(e.type, e.epoch, e.attempt) for e in history] == [
        ("pushed", 0, None),
        ("claimed", 1, 1),
        ("failed", 1, 1),
        ("retried", 2, 1),
        ("claimed", 3, 2),
        ("completed", 3, 2),
    ]
    spec, error = history[0].data["spec"], history[2].data["error"]
    assert isinstance(spec, dict) and spec["func"] == flaky.task_name
    assert isinstance(error, dict) and error["message"] == "first time"
    assert [e.at for e in history] == sorted(e.at for e in history)
    assert not any(e.fenced for e in history)


@pytest.mark.asyncio
async def test_only_final_unsuccessful_jobs_can_be_retried(root: pathlib.Path) -> None:
    """Retrying a completed or pending job is refused and changes nothing."""
    queue = fsjobs.Queue(root)

    @queue.task(name=name("ok"))
    def ok() -> int:
        return 1

    done = await ok.enqueue()
    await drain(queue)
    waiting = await ok.enqueue()
    for job_id in (done, waiting):
        before = await queue.get(job_id)
        with pytest.raises(fsjobs.InvalidJob, match="only failed, timed-out or cancelled"):
            await queue.retry(job_id)
        assert await queue.get(job_id) == before
    with pytest.raises(fsjobs.InvalidJob):
        await queue.retry(waiting, more_attempts=0)


@pytest.mark.asyncio
async def test_a_cancelled_job_can_be_retried_and_its_old_request_does_not_stop_it(
    root: pathlib.Path,
) -> None:
    """A job cancelled while running, then retried, runs to completion."""
    queue = fsjobs.Queue(root)
    ran: list[int] = []

    @queue.task(name=name("work"))
    def work() -> str:
        ran.append(1)
        return "done"

    job_id = await work.enqueue()
    store = queue.store
    lock_fd, hb_fd = store.register_worker("owner-1")
    claim = store.claim("default", store.ready("default")[0], "owner-1")
    assert claim is not None
    assert await queue.cancel(job_id, timeout=0.01) is False  # running: a request is left
    store.finish(claim, fsjobs.store.Outcome(fsjobs.store.Ending.CANCELLED))
    store.unregister_worker("owner-1", lock_fd, hb_fd)
    assert (await queue.get(job_id)).status is JobStatus.CANCELLED

    await queue.retry(job_id)
    await drain(queue)
    assert ran == [1]
    assert await queue.result(job_id) == "done"


@pytest.mark.asyncio
async def test_retry_respects_unique_keys(root: pathlib.Path) -> None:
    """A keyed job is not retried while another unfinished job holds its key; then it is."""
    queue = fsjobs.Queue(root)

    @queue.task(name=name("keyed"))
    def keyed(fail: bool) -> str:
        if fail:
            raise ValueError("no")
        return "yes"

    first = await queue.push(keyed.job(fail=True).with_unique_key("report-7"))
    await drain(queue)
    assert (await queue.get(first)).status is JobStatus.FAILED
    second = await queue.push(keyed.job(fail=False).with_unique_key("report-7"))
    assert second != first, "a final job frees its key"

    with pytest.raises(fsjobs.UniqueKeyConflict):
        await queue.retry(first)
    assert (await queue.get(first)).status is JobStatus.FAILED

    await drain(queue)  # the second job completes and frees the key
    await queue.retry(first)
    assert first == await queue.push(keyed.job(fail=False).with_unique_key("report-7"))


@pytest.mark.asyncio
async def test_concurrent_retries_reopen_the_job_once(root: pathlib.Path) -> None:
    """Two retries of the same job: one rename wins; the job runs once more, not twice."""
    queue = fsjobs.Queue(root)
    ran: list[int] = []

    @queue.task(name=name("once"))
    def once() -> None:
        ran.append(1)
        raise RuntimeError("again")

    job_id = await once.enqueue()
    await drain(queue)
    other = fsjobs.Queue(root)
    for _ in range(5):  # the two retries race in two threads
        outcomes = await asyncio.gather(
            queue.retry(job_id), other.retry(job_id), return_exceptions=True
        )
        refused = [o for o in outcomes if isinstance(o, BaseException)]
        assert all(isinstance(o, fsjobs.InvalidJob) for o in refused), refused
        assert (await queue.get(job_id)).status is JobStatus.PENDING
        await drain(queue)
    assert ran == [1] * 6, "each round re-opened the job exactly once"
    assert (await queue.get(job_id)).attempts == 6
