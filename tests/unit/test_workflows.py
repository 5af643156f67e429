"""
Workflows: a named graph of jobs pushed all or nothing, its state, and the pushes a dead
pusher left behind (published if committed, aborted if not).
"""

from __future__ import annotations

import json
import os
import pathlib
import uuid

import pytest

import fsjobs
from fsjobs import InvalidJob, JobStatus, Workflow, WorkflowStatus
from fsjobs import _workflows as workflows
from fsjobs.fsck import fsck
from fsjobs.testing import drain

pytestmark = pytest.mark.asyncio


def name(tag: str) -> str:
    return f"tests.workflows.{tag}.{uuid.uuid4().hex[:8]}"


def tasks(queue: fsjobs.Queue) -> tuple[fsjobs.Task[..., str], fsjobs.Task[..., None]]:
    """`step` returns its tag and its parents' results; `boom` raises."""

    @queue.task(name=name("step"))
    def step(ctx: fsjobs.Context, tag: str) -> str:
        return tag + "(" + ",".join(f"{k}={v}" for k, v in sorted(ctx.parents.items())) + ")"

    @queue.task(name=name("boom"))
    def boom() -> None:
        raise ValueError("boom")

    return step, boom


def diamond(step: fsjobs.Task[..., str]) -> Workflow:
    return (
        Workflow("diamond")
        .add("top", step.job(tag="t"))
        .add("left", step.job(tag="l"), after=["top"])
        .add("right", step.job(tag="r"), after=["top"])
        .add("bottom", step.job(tag="b"), after=["left", "right"])
    )


def nothing_written(root: pathlib.Path) -> bool:
    return not list(root.glob("jobs/*/*")) and not list(root.glob("workflows/*/*"))


async def test_a_diamond_runs_each_step_after_its_parents(root: pathlib.Path) -> None:
    queue = fsjobs.Queue(root)
    step, _ = tasks(queue)
    wf_id = await queue.push_workflow(diamond(step))
    state = await queue.get_workflow(wf_id)
    assert (state.id, state.name, state.status) == (wf_id, "diamond", WorkflowStatus.RUNNING)
    assert {k: v.status for k, v in state.steps.items()} == {
        "top": JobStatus.PENDING,
        "left": JobStatus.BLOCKED,
        "right": JobStatus.BLOCKED,
        "bottom": JobStatus.BLOCKED,
    }
    assert state.after == {
        "top": (),
        "left": ("top",),
        "right": ("top",),
        "bottom": ("left", "right"),
    }
    bottom = state.steps["bottom"]
    assert (bottom.workflow, bottom.step) == (wf_id, "bottom")
    assert bottom.depends_on == (state.steps["left"].id, state.steps["right"].id)

    assert await drain(queue) == 4
    done = await queue.get_workflow(wf_id)
    assert done.status is WorkflowStatus.COMPLETED and done.is_done
    assert done.steps["bottom"].result == "b(left=l(top=t()),right=r(top=t()))"
    assert [w.id for w in await queue.list_workflows()] == [wf_id]
    assert fsck(queue.store).ok


async def test_a_failed_step_cancels_the_steps_after_it(root: pathlib.Path) -> None:
    queue = fsjobs.Queue(root)
    step, boom = tasks(queue)
    wf = (
        Workflow("pipeline")
        .add("fetch", step.job(tag="f"))
        .add("parse", boom.job(), after=["fetch"])
        .add("chart", step.job(tag="c"), after=["parse"])
        .add("side", step.job(tag="s"), after=["fetch"])
    )
    wf_id = await queue.push_workflow(wf)
    await drain(queue)
    state = await queue.get_workflow(wf_id)
    assert state.status is WorkflowStatus.FAILED
    statuses = {k: v.status for k, v in state.steps.items()}
    assert statuses == {
        "fetch": JobStatus.COMPLETED,
        "parse": JobStatus.FAILED,
        "chart": JobStatus.CANCELLED,
        "side": JobStatus.COMPLETED,
    }
    error = state.steps["chart"].error
    assert error is not None and error.type == "fsjobs.errors.DependencyFailed"
    assert error.message == f"parent {state.steps['parse'].id} (step 'parse') ended failed"


async def test_a_cancelled_workflow(root: pathlib.Path) -> None:
    queue = fsjobs.Queue(root)
    step, _ = tasks(queue)
    wf_id = await queue.push_workflow(diamond(step))
    state = await queue.get_workflow(wf_id)
    assert await queue.cancel(state.steps["top"].id)
    done = await queue.get_workflow(wf_id)
    assert done.status is WorkflowStatus.CANCELLED
    assert {s.status for s in done.steps.values()} == {JobStatus.CANCELLED}


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda s: Workflow("w").add("a", s.job(tag="a"), after=["b"]), "unknown steps"),
        (
            lambda s: (
                Workflow("w")
                .add("a", s.job(tag="a"), after=["b"])
                .add("b", s.job(tag="b"), after=["a"])
            ),
            "cycle",
        ),
        (lambda s: Workflow("w").add("a", s.job(tag="a"), after=["a"]), "after itself"),
        (lambda s: Workflow("w"), "no steps"),
    ],
)
async def test_bad_graphs_are_refused_before_anything_is_written(
    root: pathlib.Path, build: object, message: str
) -> None:
    queue = fsjobs.Queue(root)
    step, _ = tasks(queue)
    with pytest.raises(InvalidJob, match=message):
        await queue.push_workflow(build(step))  # type: ignore[operator]
    assert nothing_written(root)


async def test_steps_are_checked_as_they_are_added() -> None:
    job = fsjobs.Job(func="x.y")
    wf = Workflow("w").add("a", job)
    with pytest.raises(InvalidJob, match="already"):
        wf.add("a", job)
    with pytest.raises(InvalidJob, match="unique_key"):
        wf.add("b", job.with_unique_key("k"))
    with pytest.raises(InvalidJob):
        wf.add("bad name", job)
    with pytest.raises(InvalidJob, match="list of step names"):
        wf.add("c", job, after="a")
    with pytest.raises(TypeError):
        wf.add("d", "x.y")  # type: ignore[arg-type]
    assert list(wf.steps) == ["a"]


async def test_steps_go_to_their_own_queues_and_may_depend_on_other_jobs(
    root: pathlib.Path,
) -> None:
    queue = fsjobs.Queue(root)
    other = fsjobs.Queue(root, "other")
    step, _ = tasks(queue)
    outside = await queue.push(step.job(tag="o"))
    wf = (
        Workflow("mixed")
        .add("a", step.job(tag="a").with_depends_on([outside]))
        .add("b", step.job(tag="b"), after=["a"], queue="other")
    )
    wf_id = await queue.push_workflow(wf)
    state = await queue.get_workflow(wf_id)
    assert state.steps["a"].status is JobStatus.BLOCKED  # its outside parent has not run
    assert state.steps["b"].queue == "other"
    await drain(queue)
    await drain(other)
    done = await queue.get_workflow(wf_id)
    assert done.status is WorkflowStatus.COMPLETED
    assert done.steps["a"].result == f"a({outside}=o())"  # an outside parent: by its id
    assert done.steps["b"].result == "b(a=a(" + outside + "=o()))"


async def test_a_staged_step_reads_as_where_it_is_going_until_a_sweep_publishes_it(
    root: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pusher that dies after the commit: its steps exist; a sweep puts them in place."""
    queue = fsjobs.Queue(root)
    step, _ = tasks(queue)

    def died(*args: object) -> None:
        raise KeyboardInterrupt  # stands for the pusher's death right after the commit

    monkeypatch.setattr(workflows, "_publish", died)
    with pytest.raises(KeyboardInterrupt):
        await queue.io(queue.store.push_workflow, diamond(step), "default")
    monkeypatch.undo()
    (manifest,) = root.glob("workflows/*/*.json")
    wf_id = manifest.stem
    assert len(list(root.glob("tmp/wfstep.*"))) == 4
    state = await queue.get_workflow(wf_id)
    assert {k: v.status for k, v in state.steps.items()} == {
        "top": JobStatus.PENDING,
        "left": JobStatus.BLOCKED,
        "right": JobStatus.BLOCKED,
        "bottom": JobStatus.BLOCKED,
    }
    assert await queue.io(queue.store.ready, "default") == []  # nothing to claim while staged
    assert await queue.io(queue.store.sweep, ["default"]) == 1
    assert not list(root.glob("tmp/wf*"))
    assert await drain(queue) == 4
    assert (await queue.get_workflow(wf_id)).status is WorkflowStatus.COMPLETED
    assert fsck(queue.store).ok


async def test_a_push_that_fails_before_its_commit_removes_what_it_wrote(
    root: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = fsjobs.Queue(root)
    step, _ = tasks(queue)
    parent = await queue.push(step.job(tag="p"))

    def died(*args: object) -> bool:
        raise KeyboardInterrupt  # interrupted just before its commit

    monkeypatch.setattr(fsjobs._deptree, "link_manifest", died)
    wf = diamond(step).add("tail", step.job(tag="x").with_depends_on([parent]))
    with pytest.raises(KeyboardInterrupt):
        await queue.push_workflow(wf)
    monkeypatch.undo()
    # The failed push cleaned up after itself: nothing of it is left.
    assert [p.name for p in root.glob("jobs/*/*")] == [parent]
    assert not list(root.glob("tmp/wf*"))
    assert not list(root.glob(f"jobs/*/{parent}/dependents/*"))


async def test_a_sweep_aborts_a_push_whose_pusher_was_killed_before_its_commit(
    root: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = fsjobs.Queue(root)
    step, _ = tasks(queue)
    parent = await queue.push(step.job(tag="p"))
    wf = diamond(step).add("tail", step.job(tag="x").with_depends_on([parent]))

    def killed(*args: object) -> bool:
        raise KeyboardInterrupt  # the pusher dies just before its commit...

    def as_the_kernel(tree: object, wf_id: str, ids: object, name: str, lock_fd: int) -> None:
        os.close(lock_fd)  # ...and cleans nothing up: its lock is dropped, nothing else

    monkeypatch.setattr(fsjobs._deptree, "link_manifest", killed)
    monkeypatch.setattr(workflows, "_abandon", as_the_kernel)
    with pytest.raises(KeyboardInterrupt):
        await queue.push_workflow(wf)
    monkeypatch.undo()
    assert len(list(root.glob("tmp/wfstep.*"))) == 5
    assert len(list(root.glob("jobs/*/*"))) == 6
    report = fsck(queue.store)
    assert [p.kind for p in report.unrepaired()] == ["workflow-push"]
    assert await queue.io(queue.store.sweep, ["default"]) == 1
    (tombstone,) = root.glob("workflows/*/*.json")
    assert json.loads(tombstone.read_text())["aborted"] is True
    assert [p.name for p in root.glob("jobs/*/*")] == [parent]
    assert not list(root.glob("tmp/wf*"))
    assert not list(root.glob(f"jobs/*/{parent}/dependents/*"))
    with pytest.raises(fsjobs.JobNotFound):
        await queue.get_workflow(tombstone.stem)
    assert await queue.list_workflows() == []
    assert fsck(queue.store).ok


async def test_get_workflow_of_an_unknown_id(root: pathlib.Path) -> None:
    queue = fsjobs.Queue(root)
    with pytest.raises(fsjobs.JobNotFound):
        await queue.get_workflow("0" * 22)
    with pytest.raises(InvalidJob):
        await queue.get_workflow("../etc")
