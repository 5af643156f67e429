"""SyncQueue: the Queue's operations as blocking calls, from threads and from inside a loop."""

from __future__ import annotations

import asyncio
import inspect
import pathlib
import threading
import uuid
from collections.abc import Iterator

import pytest

import fsjobs
from fsjobs import Job, JobCancelled, JobFailed, JobNotDone, JobStatus, Queue, SyncQueue, Worker

HANG_GUARD = 60.0

#: Queue methods that have no blocking twin, and why.
ASYNC_ONLY = {
    "task": "declares a task (not an operation on the queue); tasks are shared by name",
    "periodic": "declares a periodic task; only a Worker (async) keeps schedules",
    "io": "runs a store step in the I/O threads: SyncQueue runs it in place",
}


@pytest.fixture
def sync(root: pathlib.Path) -> Iterator[SyncQueue]:
    q = SyncQueue(root, staleness=0)
    yield q
    q.close()


@pytest.fixture
def queue(root: pathlib.Path) -> Iterator[Queue]:
    q = Queue(root, staleness=0)
    yield q
    q.close()


def task_name() -> str:
    return f"tests.unit.sq.t{uuid.uuid4().hex}"


async def drain(queue: Queue) -> int:
    async with asyncio.timeout(HANG_GUARD):
        return await Worker(queue).run_until_empty()


def public_methods(cls: type) -> dict[str, inspect.Signature]:
    return {
        n: inspect.signature(f)
        for n, f in vars(cls).items()
        if callable(f) and not n.startswith("_") and n not in ASYNC_ONLY
    }


def test_every_queue_operation_has_a_blocking_twin_with_the_same_parameters() -> None:
    """
    A method added to Queue must be mirrored on SyncQueue (this fails until it is),
    with the same parameters and defaults, and as a plain blocking function.
    """
    async_ops = public_methods(Queue)
    sync_ops = public_methods(SyncQueue)
    assert set(async_ops) == set(sync_ops), "mirror the new Queue method on SyncQueue"
    for name, sig in async_ops.items():
        assert list(sig.parameters.values()) == list(sync_ops[name].parameters.values()), name
        method = getattr(SyncQueue, name)
        assert not inspect.iscoroutinefunction(method), name
        assert not inspect.isasyncgenfunction(method), name
    assert inspect.isgeneratorfunction(SyncQueue.watch)


def test_push_get_and_errors_as_queue_has_them(sync: SyncQueue) -> None:
    job_id = sync.push(Job(func=task_name(), kwargs={"a": 1}))
    state = sync.get(job_id)
    assert (state.status, state.kwargs) == (JobStatus.PENDING, {"a": 1})
    with pytest.raises(JobNotDone):
        sync.result(job_id)
    with pytest.raises(fsjobs.WaitTimeout):
        sync.wait(job_id, timeout=0.05)
    with pytest.raises(fsjobs.JobNotFound):
        sync.get("0" * 22)
    with pytest.raises(TypeError, match=r"takes an fsjobs\.Job"):
        sync.push({"func": "x"})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="interval"):
        sync.wait(job_id, interval=0)
    with pytest.raises(ValueError, match="empty string"):
        SyncQueue("")


def test_push_checks_kwargs_against_a_known_task(sync: SyncQueue, root: pathlib.Path) -> None:
    @Queue(root).task(name=task_name())
    def add(a: int, b: int) -> int:
        return a + b

    with pytest.raises(TypeError, match="missing arguments"):
        sync.push(Job(func=add.task_name, kwargs={"a": 1}))


@pytest.mark.asyncio
async def test_results_and_failures_after_a_worker_ran(sync: SyncQueue, queue: Queue) -> None:
    @queue.task(name=task_name())
    def add(a: int, b: int) -> int:
        return a + b

    @queue.task(name=task_name())
    def broken() -> None:
        print("about to fail")
        raise ValueError("no")

    ok = sync.push(add.job(a=2, b=3))
    bad = sync.push(broken.job())
    assert await drain(queue) == 2
    assert sync.result(ok) == 5
    assert sync.wait(ok).result == 5
    with pytest.raises(JobFailed, match="ValueError: no"):
        sync.wait(bad)
    assert [e.type for e in sync.history(ok)] == ["pushed", "claimed", "completed"]
    assert "about to fail" in sync.logs(bad)
    assert sync.logs(ok) == ""
    retried = sync.retry(bad)
    assert (retried.status, retried.max_attempts) == (JobStatus.PENDING, 2)
    counts = sync.counts()
    assert (counts[JobStatus.COMPLETED], counts[JobStatus.PENDING]) == (1, 1)


def test_hold_release_cancel_list_prune(sync: SyncQueue) -> None:
    first, second, third = sync.push_many(Job(func=task_name()) for _ in range(3))
    assert sync.hold(first) is True
    assert sync.get(first).status is JobStatus.HELD
    assert sync.release(first) is True
    assert sync.release(first) is False
    assert sync.cancel(second) is True
    with pytest.raises(JobCancelled):
        sync.result(second)
    page = sync.list_jobs(limit=2)
    assert [s.id for s in page] == [third, second]
    assert page.next_cursor is not None
    assert [s.id for s in sync.list_jobs(limit=2, cursor=page.next_cursor)] == [first]
    assert [s.id for s in sync.list_jobs(JobStatus.CANCELLED, queue="*")] == [second]
    assert sync.prune(0) == 1
    with pytest.raises(fsjobs.JobNotFound):
        sync.get(second)


@pytest.mark.asyncio
async def test_outputs_are_read_back(sync: SyncQueue, queue: Queue) -> None:
    @queue.task(name=task_name())
    def report(ctx: fsjobs.Context) -> None:
        (ctx.output_dir / "r.txt").write_bytes(b"done")

    job_id = sync.push(report.job())
    await drain(queue)
    assert sync.get(job_id).outputs == ("r.txt",)
    assert sync.read_output(job_id, "r.txt") == b"done"


@pytest.mark.asyncio
async def test_blocking_calls_work_on_the_thread_of_a_running_loop(
    sync: SyncQueue, queue: Queue
) -> None:
    """
    Called from a coroutine (the loop's own thread), SyncQueue neither needs nor
    starts an event loop: no 'asyncio.run() cannot be called from a running loop'.
    """

    @queue.task(name=task_name())
    async def double(n: int) -> int:
        return 2 * n

    job_id = sync.push(double.job(n=21))
    assert sync.get(job_id).status is JobStatus.PENDING
    await drain(queue)
    assert sync.wait(job_id).result == 42
    assert list(sync.watch(job_id))[-1].status is JobStatus.COMPLETED


@pytest.mark.asyncio
async def test_a_thread_blocked_in_wait_is_woken_by_a_worker_of_the_process(
    sync: SyncQueue, queue: Queue
) -> None:
    """
    The waiting thread polls every 100 s here: only the in-process wake-up of the
    worker's finish can end its wait in time.
    """
    release = asyncio.Event()

    @queue.task(name=task_name())
    async def gated() -> str:
        await release.wait()
        return "ok"

    job_id = sync.push(gated.job())
    loop = asyncio.get_running_loop()
    seen: list[JobStatus] = []

    def follow() -> None:
        for state in sync.watch(job_id, interval=100, timeout=HANG_GUARD):
            seen.append(state.status)
            if len(seen) == 1:  # the thread now waits for the job: let it finish
                loop.call_soon_threadsafe(release.set)

    waiting = threading.Thread(target=follow)
    waiting.start()
    assert await drain(queue) == 1
    await asyncio.to_thread(waiting.join, HANG_GUARD)
    assert not waiting.is_alive()
    assert seen[-1] is JobStatus.COMPLETED


def test_threads_push_and_read_concurrently(sync: SyncQueue) -> None:
    """One SyncQueue shared by eight threads: every push lands, with its own id."""
    name = task_name()
    ids: list[str] = []
    lock = threading.Lock()

    def pusher(k: int) -> None:
        for n in range(20):
            job_id = sync.push(Job(func=name, kwargs={"k": k, "n": n}))
            assert sync.get(job_id).kwargs == {"k": k, "n": n}
            with lock:
                ids.append(job_id)

    threads = [threading.Thread(target=pusher, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 160
    assert sync.counts()[JobStatus.PENDING] == 160


def test_with_block_creates_the_root_and_closes(tmp_path: pathlib.Path) -> None:
    root = tmp_path / "new"
    with SyncQueue(root) as q:
        assert (root / "fsjobs.json").exists()
        assert repr(q) == f"<fsjobs.SyncQueue 'default' at {str(root)!r}>"


@pytest.mark.asyncio
async def test_workflows_from_blocking_code(sync: SyncQueue, queue: Queue) -> None:
    @queue.task(name=task_name())
    def add(a: int, b: int) -> int:
        return a + b

    wf = fsjobs.Workflow("sums")
    wf.add("first", add.job(a=1, b=2))
    wf.add("second", add.job(a=3, b=4), after=["first"])
    wf_id = sync.push_workflow(wf)
    state = sync.get_workflow(wf_id)
    assert {n: s.status for n, s in state.steps.items()} == {
        "first": JobStatus.PENDING,
        "second": JobStatus.BLOCKED,
    }
    assert await drain(queue) == 2
    assert sync.get_workflow(wf_id).status is fsjobs.WorkflowStatus.COMPLETED
    assert [w.id for w in sync.list_workflows()] == [wf_id]
    with pytest.raises(TypeError, match=r"takes an fsjobs\.Workflow"):
        sync.push_workflow(add.job(a=1, b=1))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 1"):
        sync.list_workflows(0)
