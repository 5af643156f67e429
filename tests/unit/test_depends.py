"""
`Job.depends_on`: a job waits, ``blocked``, until its parents complete; a parent that does
not complete cancels it; both are decided once, by a rename out of ``blocked/``.
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import pathlib
import uuid

import pytest

import fsjobs
from fsjobs import DependencyFailed, Job, JobStatus
from fsjobs import _deptree as deptree
from fsjobs.fsck import fsck
from fsjobs.testing import drain

pytestmark = pytest.mark.asyncio


def name(tag: str) -> str:
    return f"tests.depends.{tag}.{uuid.uuid4().hex[:8]}"


def tasks(queue: fsjobs.Queue) -> tuple[fsjobs.Task[..., int], fsjobs.Task[..., None]]:
    """`add` returns x plus its parents' results (ctx.parents); `boom` raises."""

    @queue.task(name=name("add"))
    def add(ctx: fsjobs.Context, x: int) -> int:
        return x + sum(ctx.parents.values())

    @queue.task(name=name("boom"))
    def boom() -> None:
        raise ValueError("boom")

    return add, boom


def status_dirs(root: pathlib.Path, job_id: str) -> list[str]:
    """The state directories holding a marker of the job (every one: a job has exactly one)."""
    found = [p for p in root.glob("queues/*/*/**/*") if job_id in p.name and p.is_file()]
    return sorted(p.relative_to(root).parts[2] for p in found)


async def test_a_job_waits_blocked_for_its_parents_and_reads_their_results(
    root: pathlib.Path,
) -> None:
    """Blocked until every parent completed; then run once, with ctx.parents by id."""
    queue = fsjobs.Queue(root)
    add, _ = tasks(queue)
    a = await add.enqueue(x=1)
    b = await add.enqueue(x=2)
    child = await queue.push(add.job(x=100).with_depends_on([a, b]))
    state = await queue.get(child)
    assert (state.status, state.depends_on, state.attempts) == (JobStatus.BLOCKED, (a, b), 0)
    assert status_dirs(root, child) == ["blocked"]
    assert (await queue.counts())[JobStatus.BLOCKED] == 1
    assert [s.id for s in await queue.list_jobs(JobStatus.BLOCKED)] == [child]
    assert await queue.hold(child) is False  # only jobs that could run can be held

    assert await drain(queue) == 3
    done = await queue.get(child)
    assert (done.status, done.result, done.attempts) == (JobStatus.COMPLETED, 103, 1)
    history = [(e.type, e.epoch) for e in await queue.history(child)]
    assert history == [("pushed", 0), ("unblocked", 1), ("claimed", 2), ("completed", 2)]
    assert sorted(p.name for p in root.glob(f"jobs/*/{a}/dependents/*")) == [child]
    assert not list(root.glob("queues/*/releasing/*")), "every check removed its entry"
    assert fsck(queue.store).ok


async def test_parents_that_completed_already_let_the_job_go_straight_to_pending(
    root: pathlib.Path,
) -> None:
    queue = fsjobs.Queue(root)
    add, _ = tasks(queue)
    parent = await add.enqueue(x=1)
    await drain(queue)
    child = await queue.push(add.job(x=1).with_depends_on([parent]))
    assert (await queue.get(child)).status is JobStatus.PENDING
    await drain(queue)
    assert (await queue.get(child)).result == 2


async def test_a_parent_that_failed_already_sends_the_job_straight_to_cancelled(
    root: pathlib.Path,
) -> None:
    queue = fsjobs.Queue(root)
    add, boom = tasks(queue)
    parent = await boom.enqueue()
    await drain(queue)
    child = await queue.push(add.job(x=1).with_depends_on([parent]))
    state = await queue.get(child)
    assert state.status is JobStatus.CANCELLED
    assert state.error is not None
    assert state.error.type == "fsjobs.errors.DependencyFailed"
    assert state.error.message == f"parent {parent} ended failed"
    with pytest.raises(fsjobs.JobCancelled):
        await queue.wait(child, timeout=5)
    assert fsck(queue.store).ok


async def test_an_unknown_parent_is_refused_and_nothing_is_written(root: pathlib.Path) -> None:
    queue = fsjobs.Queue(root)
    add, _ = tasks(queue)
    real = await add.enqueue(x=1)
    missing = "0" * 22
    with pytest.raises(fsjobs.JobNotFound) as info:
        await queue.push(add.job(x=1).with_depends_on([real, missing]))
    assert info.value.job_id == missing
    assert [p.name for p in root.glob("jobs/*/*")] == [real]
    assert not list(root.glob(f"jobs/*/{real}/dependents/*"))


async def test_depends_on_is_checked_when_the_job_is_built() -> None:
    job = Job(func="x.y")
    with pytest.raises(fsjobs.InvalidJob):
        job.with_depends_on(["not an id"])
    with pytest.raises(fsjobs.InvalidJob):
        Job(func="x.y", depends_on="01m8tscbft00002brqb7y7")  # type: ignore[arg-type]
    ids = ["01m8tscbft00002brqb7y7", "01m8tscbge0000v6ddvb6c"]
    assert job.with_depends_on([*ids, ids[0]]).depends_on == tuple(ids)


async def test_a_failure_cancels_the_dependents_and_theirs_naming_the_parent(
    root: pathlib.Path,
) -> None:
    """failed -> child cancelled (naming it) -> grandchild cancelled (naming the child)."""
    queue = fsjobs.Queue(root)
    add, boom = tasks(queue)
    ok = await add.enqueue(x=1)
    bad = await boom.enqueue()
    child = await queue.push(add.job(x=1).with_depends_on([ok, bad]))
    grandchild = await queue.push(add.job(x=1).with_depends_on([child]))
    other = await queue.push(add.job(x=1).with_depends_on([ok]))
    await drain(queue)
    states = {j: await queue.get(j) for j in (child, grandchild, other)}
    assert states[child].status is JobStatus.CANCELLED
    assert states[child].error is not None
    assert states[child].error.message == f"parent {bad} ended failed"
    assert states[grandchild].status is JobStatus.CANCELLED
    assert states[grandchild].error is not None
    assert states[grandchild].error.message == f"parent {child} ended cancelled"
    assert (states[other].status, states[other].result) == (JobStatus.COMPLETED, 2)
    history = await queue.history(grandchild)
    assert [(e.type, e.epoch) for e in history] == [("pushed", 0), ("cancelled", 1)]
    assert history[-1].data["parent"] == child
    assert fsck(queue.store).ok


async def test_cancelling_a_parent_or_a_blocked_job_cascades(root: pathlib.Path) -> None:
    queue = fsjobs.Queue(root)
    add, _ = tasks(queue)
    parent = await add.enqueue(x=1)
    child = await queue.push(add.job(x=1).with_depends_on([parent]))
    grandchild = await queue.push(add.job(x=1).with_depends_on([child]))
    assert await queue.cancel(child) is True  # a blocked job: cancelled at once
    assert (await queue.get(child)).error is None  # the operator's cancel, not a parent's
    gc = await queue.get(grandchild)
    assert gc.status is JobStatus.CANCELLED
    assert gc.error is not None and gc.error.message == f"parent {child} ended cancelled"

    second = await queue.push(add.job(x=2).with_depends_on([parent]))
    assert await queue.cancel(parent) is True
    assert (await queue.get(second)).status is JobStatus.CANCELLED
    assert await drain(queue) == 0
    assert fsck(queue.store).ok


async def test_retry_needs_completed_parents_and_does_not_resurrect_dependents(
    root: pathlib.Path,
) -> None:
    queue = fsjobs.Queue(root)
    add, _ = tasks(queue)
    calls: list[int] = []

    @queue.task(name=name("flaky"))
    def flaky() -> int:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("first time")
        return 5

    parent = await flaky.enqueue()
    child = await queue.push(add.job(x=1).with_depends_on([parent]))
    await drain(queue)
    assert (await queue.get(child)).status is JobStatus.CANCELLED
    with pytest.raises(DependencyFailed, match=f"parent {parent} is failed"):
        await queue.retry(child)
    assert (await queue.get(child)).status is JobStatus.CANCELLED

    await queue.retry(parent)
    await drain(queue)
    assert (await queue.get(parent)).status is JobStatus.COMPLETED
    # The retried parent completed; its dependent stays cancelled until retried itself.
    assert (await queue.get(child)).status is JobStatus.CANCELLED
    await queue.retry(child)
    await drain(queue)
    assert (await queue.get(child)).result == 6


async def test_prune_keeps_a_parent_while_a_dependent_is_unfinished(root: pathlib.Path) -> None:
    queue = fsjobs.Queue(root)
    add, _ = tasks(queue)
    parent = await add.enqueue(x=1)
    await drain(queue)
    child = await queue.push(
        add.job(x=1)
        .with_depends_on([parent])
        .with_scheduled_at(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    )
    assert (await queue.get(child)).status is JobStatus.SCHEDULED
    assert await queue.prune(0) == 0  # the child will need the parent's result
    assert await queue.cancel(child)
    assert await queue.prune(0) == 2
    with pytest.raises(fsjobs.JobNotFound):
        await queue.get(parent)


async def test_a_blocked_job_keeps_its_unique_key(root: pathlib.Path) -> None:
    queue = fsjobs.Queue(root)
    add, _ = tasks(queue)
    parent = await add.enqueue(x=1)
    child = await queue.push(add.job(x=1).with_depends_on([parent]).with_unique_key("k"))
    assert (await queue.get(child)).status is JobStatus.BLOCKED
    assert await queue.push(add.job(x=2).with_unique_key("k")) == child
    assert not list(root.glob("tmp/*")), "the keyed push left its staging marker"
    await drain(queue)
    assert (await queue.get(child)).result == 2
    assert await queue.push(add.job(x=2).with_unique_key("k")) != child  # final: free again


async def test_a_parent_in_another_queue(root: pathlib.Path) -> None:
    first = fsjobs.Queue(root, "first")
    second = fsjobs.Queue(root, "second")
    add, _ = tasks(first)
    parent = await first.push(add.job(x=1))
    child = await second.push(add.job(x=1).with_depends_on([parent]))
    await drain(second)
    assert (await second.get(child)).status is JobStatus.BLOCKED
    await drain(first)
    assert (await second.get(child)).status is JobStatus.PENDING
    await drain(second)
    assert (await second.get(child)).result == 2


async def test_a_released_job_scheduled_ahead_waits(root: pathlib.Path) -> None:
    queue = fsjobs.Queue(root)
    add, _ = tasks(queue)
    parent = await add.enqueue(x=1)
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).replace(microsecond=0)
    child = await queue.push(add.job(x=1).with_depends_on([parent]).with_scheduled_at(later))
    await drain(queue)
    state = await queue.get(child)
    assert (state.status, state.ready_at) == (JobStatus.SCHEDULED, later)


async def test_a_check_left_by_a_dead_finisher_is_done_by_the_next_sweep(
    root: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    A finisher killed between its finish rename and its check leaves its releasing
    entry behind (made before the rename); a worker's sweep settles it.
    """
    queue = fsjobs.Queue(root)
    add, _ = tasks(queue)
    parent = await add.enqueue(x=1)
    child = await queue.push(add.job(x=1).with_depends_on([parent]))

    def killed(tree: object, entry: deptree.Entry | None, won: bool) -> None:
        assert entry is not None
        deptree.close_entry(queue.store.tree, entry, remove=False)  # as the kernel would

    monkeypatch.setattr(fsjobs._depends, "done", killed)
    await drain(queue)
    monkeypatch.undo()
    assert (await queue.get(parent)).status is JobStatus.COMPLETED
    assert (await queue.get(child)).status is JobStatus.BLOCKED
    (entry,) = root.glob("queues/default/releasing/*")
    assert entry.name.startswith(f"{parent}.")
    assert await queue.io(queue.store.sweep, ["default"]) == 1
    assert (await queue.get(child)).status is JobStatus.PENDING
    assert not list(root.glob("queues/default/releasing/*"))


async def test_fsck_releases_a_blocked_job_whose_check_was_lost(
    root: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even with the entry gone (a power cut), fsck --repair finds the job blocked for nothing."""
    queue = fsjobs.Queue(root)
    add, boom = tasks(queue)
    parent = await add.enqueue(x=1)
    bad = await boom.enqueue()
    child = await queue.push(add.job(x=1).with_depends_on([parent]))
    doomed = await queue.push(add.job(x=1).with_depends_on([bad]))
    monkeypatch.setattr(fsjobs._depends, "intent", lambda *args: None)
    await drain(queue)
    monkeypatch.undo()
    assert {(await queue.get(j)).status for j in (child, doomed)} == {JobStatus.BLOCKED}
    report = fsck(queue.store)
    assert sorted(p.kind for p in report.unrepaired()) == ["blocked-missed"] * 2
    repaired = fsck(queue.store, repair=True)
    assert repaired.ok and len(repaired.problems) == 2
    assert (await queue.get(child)).status is JobStatus.PENDING
    cancelled = await queue.get(doomed)
    assert cancelled.status is JobStatus.CANCELLED
    assert cancelled.error is not None and bad in cancelled.error.message
    assert fsck(queue.store).ok


async def test_a_pusher_that_saw_a_parent_running_leaves_its_entry_for_a_sweep(
    root: pathlib.Path,
) -> None:
    """The parent's finisher may have looked for dependents just before this one appeared."""
    queue = fsjobs.Queue(root)
    add, _ = tasks(queue)
    parent = await add.enqueue(x=1)
    (path,) = await queue.io(queue.store.ready, "default")
    claim = await queue.io(queue.store.claim, "default", path, "test-worker")
    assert claim is not None
    child = await queue.push(add.job(x=1).with_depends_on([parent]))
    (entry,) = root.glob("queues/default/releasing/*")
    assert entry.name.startswith(f"{child}.")
    assert await queue.io(queue.store.sweep, ["default"]) == 1
    assert list(root.glob("queues/default/releasing/*")) == [entry]  # still running: kept
    outcome = fsjobs.store.Outcome(fsjobs.store.Ending.COMPLETED, result=1)
    assert await queue.io(queue.store.finish, claim, outcome)
    assert (await queue.get(child)).status is JobStatus.PENDING
    await queue.io(queue.store.sweep, ["default"])
    assert not list(root.glob("queues/default/releasing/*"))


async def test_the_root_records_the_feature_before_the_first_blocked_job(
    root: pathlib.Path,
) -> None:
    queue = fsjobs.Queue(root)
    add, _ = tasks(queue)
    parent = await add.enqueue(x=1)
    assert json.loads((root / "fsjobs.json").read_text())["features"] == []
    await queue.push(add.job(x=1).with_depends_on([parent]))
    assert json.loads((root / "fsjobs.json").read_text())["features"] == ["depends_on@0.2"]


async def test_a_format_file_replaced_by_another_host_is_read_again(
    root: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Adding a feature replaces fsjobs.json; a reader on another host may get ESTALE once."""
    queue = fsjobs.Queue(root)
    add, _ = tasks(queue)
    await add.enqueue(x=1)
    real = fsjobs._durable.read_file
    stale = [True]

    def read_file(dir_fd: int, name: str, limit: int) -> bytes:
        if name == "fsjobs.json" and stale:
            stale.pop()
            raise OSError(errno.ESTALE, "Stale file handle")
        return real(dir_fd, name, limit)

    monkeypatch.setattr(fsjobs._durable, "read_file", read_file)
    fresh = fsjobs.store.Store(root)
    assert fresh.refresh_format() is not None and not stale
    fresh.close()


async def test_a_sweep_never_raises(root: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker sweeps every second: an error there is logged, never stops the worker."""
    queue = fsjobs.Queue(root)
    add, _ = tasks(queue)
    parent = await add.enqueue(x=1)
    await queue.push(add.job(x=1).with_depends_on([parent]))

    def broken(*args: object) -> int:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(fsjobs._depends, "sweep", broken)
    assert await queue.io(queue.store.sweep, ["default"]) == 0
