"""
Dependencies and workflows with real worker processes: a child never starts before every
parent has ended, the last parent to finish releases it exactly once (whichever process
finished it), and a failed parent cancels what depends on it.

Jobs run the `span` task of ``tests.integration.tasks``, which logs its start and end
(CLOCK_MONOTONIC, shared by the processes of a host) to a file outside the root.
"""

from __future__ import annotations

import collections
import pathlib
import random

import attrs
import pytest

import fsjobs
from fsjobs import Job, JobStatus, Workflow, WorkflowStatus

from .harness import Children, stop_workers, until, wait_registered
from .tasks import SPAN

pytestmark = [pytest.mark.slow, pytest.mark.asyncio]

WORKERS = 3


@attrs.frozen
class Span:
    job_id: str
    pid: int
    start: float
    end: float


def read_spans(log: pathlib.Path) -> dict[str, list[Span]]:
    """Each job's executions, from the complete start/end line pairs of the log."""
    starts: dict[tuple[str, str, str], float] = {}
    spans: dict[str, list[Span]] = collections.defaultdict(list)
    text = log.read_text() if log.exists() else ""
    for line in text.splitlines()[: text.count("\n")]:
        kind, job_id, attempt, pid, at = line.split()
        if kind == "start":
            starts[(job_id, attempt, pid)] = float(at)
        else:
            begun = starts.pop((job_id, attempt, pid))
            spans[job_id].append(Span(job_id, int(pid), begun, float(at)))
    assert not starts, f"executions that never ended: {sorted(starts)}"
    return spans


def span_job(log: pathlib.Path, ms: int, *, fail: bool = False) -> Job:
    return Job(func=SPAN, kwargs={"log": str(log), "ms": ms, "fail": fail})


def order_violations(
    spans: dict[str, list[Span]], edges: list[tuple[str, str]]
) -> list[tuple[str, str]]:
    """(parent, child) edges where some run of the child started before the parent's last ended."""
    return [
        (p, c)
        for p, c in edges
        if any(run.start < max(r.end for r in spans[p]) for run in spans.get(c, []))
    ]


async def test_no_step_of_a_diamond_starts_before_its_parents_have_ended(
    root: pathlib.Path, queue: fsjobs.Queue, children: Children, tmp_path: pathlib.Path
) -> None:
    """Ten diamonds (top -> left, right -> bottom) at once, on three worker processes."""
    log = tmp_path / "log"
    workers = [children.worker(root, concurrency=4) for _ in range(WORKERS)]
    await wait_registered(root, children, workers)
    rng = random.Random(15)
    ids = []
    for _ in range(10):
        wf = (
            Workflow("diamond")
            .add("top", span_job(log, rng.randint(20, 80)))
            .add("left", span_job(log, rng.randint(20, 200)), after=["top"])
            .add("right", span_job(log, rng.randint(20, 200)), after=["top"])
            .add("bottom", span_job(log, rng.randint(0, 20)), after=["left", "right"])
        )
        ids.append(await queue.push_workflow(wf))

    async def all_done() -> bool:
        states = [await queue.get_workflow(i) for i in ids]
        return all(s.is_done for s in states)

    await until(all_done, "the diamonds to finish", children, workers)
    stop_workers(children, workers)
    spans = read_spans(log)
    edges = []
    for wf_id in ids:
        state = await queue.get_workflow(wf_id)
        assert state.status is WorkflowStatus.COMPLETED
        steps = state.steps
        for parent, child in (
            ("top", "left"),
            ("top", "right"),
            ("left", "bottom"),
            ("right", "bottom"),
        ):
            edges.append((steps[parent].id, steps[child].id))
        assert steps["bottom"].result == {"parents": ["left", "right"]}
        for step in steps.values():
            assert len(spans[step.id]) == 1, f"step {step.step} ran {len(spans[step.id])} times"
    assert order_violations(spans, edges) == []
    pids = {run.pid for runs in spans.values() for run in runs}
    assert len(pids) > 1, "the steps should have run on more than one worker process"


async def test_a_fan_in_of_twenty_releases_its_child_exactly_once_five_times_over(
    root: pathlib.Path, queue: fsjobs.Queue, children: Children, tmp_path: pathlib.Path
) -> None:
    """
    Twenty parents of nearly equal length, run by three processes, finish at nearly the
    same moment; whichever finishes last releases the child, once. Rounds 0, 2 and 4
    use `Job.depends_on`, rounds 1 and 3 a workflow.
    """
    log = tmp_path / "log"
    workers = [children.worker(root, concurrency=8) for _ in range(WORKERS)]
    await wait_registered(root, children, workers)
    rng = random.Random(20)
    for round_ in range(5):
        if round_ % 2 == 0:
            parents = await queue.push_many([span_job(log, rng.randint(30, 40)) for _ in range(20)])
            child = await queue.push(span_job(log, 0).with_depends_on(parents))
        else:
            wf = Workflow("fan-in")
            for i in range(20):
                wf.add(f"p{i}", span_job(log, rng.randint(30, 40)))
            wf.add("child", span_job(log, 0), after=[f"p{i}" for i in range(20)])
            state = await queue.get_workflow(await queue.push_workflow(wf))
            parents = [state.steps[f"p{i}"].id for i in range(20)]
            child = state.steps["child"].id
        final = await queue.wait(child, timeout=120)
        spans = read_spans(log)
        assert final.status is JobStatus.COMPLETED
        assert len(spans[child]) == 1, f"round {round_}: the child ran {len(spans[child])} times"
        assert order_violations(spans, [(p, child) for p in parents]) == []
        assert len(final.result["parents"]) == 20  # type: ignore[index]
        assert (await queue.history(child))[1].type == "unblocked"
    # A pusher that saw a parent running left its entry; the workers' sweeps remove them.
    await until(
        lambda: not list(root.glob("queues/*/releasing/*")),
        "the sweeps to settle every releasing entry",
        children,
        workers,
    )
    stop_workers(children, workers)


async def test_a_failed_parent_cancels_its_dependents_and_theirs(
    root: pathlib.Path, queue: fsjobs.Queue, children: Children, tmp_path: pathlib.Path
) -> None:
    log = tmp_path / "log"
    workers = [children.worker(root, concurrency=4) for _ in range(2)]
    await wait_registered(root, children, workers)
    good = await queue.push(span_job(log, 50))
    bad = await queue.push(span_job(log, 50, fail=True))
    child = await queue.push(span_job(log, 0).with_depends_on([good, bad]))
    grandchild = await queue.push(span_job(log, 0).with_depends_on([child]))
    wf = (
        Workflow("after-bad")
        .add("a", span_job(log, 0).with_depends_on([bad]))
        .add("b", span_job(log, 0), after=["a"])
    )
    wf_id = await queue.push_workflow(wf)
    with pytest.raises(fsjobs.JobCancelled):
        await queue.wait(grandchild, timeout=60)

    async def reason_written() -> bool:  # the canceller renames first, then writes why
        return (await queue.get(grandchild)).error is not None

    await until(reason_written, "the grandchild's cancel record", children, workers)
    error = (await queue.get(grandchild)).error
    assert error is not None
    assert (error.type, error.message) == (
        "fsjobs.errors.DependencyFailed",
        f"parent {child} ended cancelled",
    )

    async def workflow_done() -> bool:
        return (await queue.get_workflow(wf_id)).is_done

    await until(workflow_done, "the workflow to end", children, workers)
    stop_workers(children, workers)
    state = await queue.get_workflow(wf_id)
    assert state.status is WorkflowStatus.CANCELLED
    assert {s.status for s in state.steps.values()} == {JobStatus.CANCELLED}
    error = (await queue.get(child)).error
    assert error is not None and error.message == f"parent {bad} ended failed"
    ran = set(read_spans(log))
    assert ran == {good, bad}, "no dependent of the failed job ran"
