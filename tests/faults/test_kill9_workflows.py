"""
T1 with workflows: kill -9 torture of workers and of a pusher of workflows and dependent jobs.

As in T1 (tests/faults/test_kill9_torture.py), three worker processes and one pusher share
a root, and a random one is SIGKILLed every 50-500 ms and restarted, until
``$FSJOBS_FAULT_KILLS`` kills (40 by default; ``nox -s faults`` sets 200). The pusher
(``tests.faults.torture_child workflows``) pushes workflows (diamonds, fan-ins of 3 to 6,
chains of 3) and pairs of jobs where the second depends on the first. Then the pusher
stops, every tortured worker is killed at once and clean ones drain the queue with no
help from fsck, and the history is checked against the store:

* ``lost``: acknowledged workflows that did not complete, and acknowledged jobs that did
  not complete (``max_attempts`` is 20: rescues do not make a step fail);
* ``half_workflows``: a committed workflow missing a step, or a step of a workflow that
  was never committed (a push is all or nothing);
* ``duplicated_completions`` and ``double_releases``: a job completed, or was released
  from ``blocked/``, more than once (records of fenced epochs do not count; see
  `published_completions`);
* ``order_violations``: a run of a job that started before a run of one of its parents
  ended (a run cut short by SIGKILL ends at the kill);
* ``concurrent_duplicate_runs``: two runs of one job that overlap;
* ``unexplained_reruns``: a job ran again although its earlier run's process was never
  killed (delivery is at least once, but only a kill may cause a second run here).
"""

from __future__ import annotations

import collections
import json
import math
import pathlib
import signal
import subprocess
import time
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from fsjobs import JobNotFound, JobStatus, WorkflowStatus, journal
from fsjobs._deptree import read_manifest
from fsjobs.fsck import fsck
from fsjobs.journal import RecordType
from fsjobs.store import Store

from . import test_kill9_torture as t1
from ._fsck import check, repair, report, walk

pytestmark = pytest.mark.slow
children = t1.children  # the fixture: T1's supervised processes

#: What fsck reports about dependencies and workflow pushes (fsjobs._depends, _workflows).
DEPENDENCY_PROBLEMS = frozenset({"blocked-missed", "workflow-push", "workflow-orphan"})
LIVE = (
    JobStatus.PENDING,
    JobStatus.RUNNING,
    JobStatus.SCHEDULED,
    JobStatus.RETRYING,
    JobStatus.BLOCKED,
)


def published_completions(segments: list[tuple[int, journal.ReadResult]]) -> int:
    """
    How many ``completed`` records of a job's journal were published: as T1 counts them
    (a segment whose next epoch a rescue opened was fenced), and also not one followed
    by a gap in the epochs. A gap is an epoch whose opening record was never written:
    the process that opened it (a rescuer, here: this torture retries nothing) was
    killed between its rename and its record, and that rename fenced the segment before.
    """
    count = 0
    for i, (epoch, seg) in enumerate(segments):
        completions = sum(1 for r in seg.records if r.type is RecordType.COMPLETED)
        if not completions:
            continue
        if i + 1 < len(segments):
            next_epoch, next_seg = segments[i + 1]
            first = next_seg.records[0].type if next_seg.records else None
            if next_epoch != epoch + 1 or first is RecordType.RESCUED:
                continue  # fenced: its owner's rename never happened
        count += completions
    return count


def read_oracle(
    path: pathlib.Path,
) -> tuple[set[str], dict[str, str], dict[str, str], dict[str, str]]:
    """(tags started, tag -> acked workflow id, tag -> acked job id, tag -> failure)."""
    started: set[str] = set()
    workflows: dict[str, str] = {}
    jobs: dict[str, str] = {}
    failed: dict[str, str] = {}
    text = path.read_text()
    for line in text.splitlines()[: text.count("\n")]:
        kind, tag, rest = (*line.split(" ", 2), "")[:3]
        if kind == "start":
            started.add(tag)
        elif kind == "ack":
            what, _, ident = rest.partition(" ")
            (workflows if what == "wf" else jobs)[tag] = ident
        else:
            failed[tag] = rest
    return started, workflows, jobs, failed


def torture(
    children: t1.Children,
    kills: int,
    store_root: pathlib.Path,
    check_tree: Callable[[Iterable[str]], list[str]],
    staleness: float | None = 0,
    before_drain: Callable[[], None] = lambda: None,
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """
    Run the torture and the drain; return the figures and the problems by kind (each
    list must be empty). `store_root` is where this process reads the store (a mount on
    the shared-filesystem bed), `check_tree` the invariant check of the settled tree;
    `before_drain` runs before the clean workers start.
    """
    children.pusher_mode = "workflows"
    roles = [f"worker-{i}" for i in range(t1.WORKERS)] + ["pusher"]
    began = time.monotonic()
    for role in roles:
        children.start(role)
    t1.kill_randomly(children, roles, kills)
    tortured_s = time.monotonic() - began
    pusher = children.procs.pop("pusher")
    pusher.kill()
    pusher.wait()
    before_drain()
    for role in roles[:-1]:  # every tortured worker at once; clean ones drain
        children.kill(role)
    started, acked_wfs, acked_jobs, failed = read_oracle(children.oracle)
    store = Store(store_root, staleness=staleness)
    problems: dict[str, list[str]] = collections.defaultdict(list)
    try:
        final: set[str] = set()

        def drained() -> bool:
            counts = store.counts("default")
            if any(counts[s] for s in LIVE) or list(store_root.glob("tmp/wflock.*")):
                return False
            for ident in set(acked_wfs.values()) | set(acked_jobs.values()):
                if ident in final:
                    continue
                try:
                    done = (
                        store.get_workflow(ident).is_done
                        if ident in acked_wfs.values()
                        else store.get(ident).status.is_final
                    )
                except JobNotFound:
                    done = True  # lost: waiting will not help; the checks report it
                if not done:
                    return False
                final.add(ident)
            return True

        drain_began = time.monotonic()
        give_up = drain_began + t1.DRAIN_TIMEOUT
        while not drained() and time.monotonic() < give_up:
            children.check_exits()
            time.sleep(0.05)
        if not drained():
            problems["not_drained"].append(f"not drained after {t1.DRAIN_TIMEOUT} s")
        drain_s = time.monotonic() - drain_began
        for proc in children.procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in children.procs.values():
            try:
                proc.wait(timeout=t1.EXIT_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        # -- the history against the store ------------------------------------------
        # What the workers left for fsck to settle: nothing (dead workers' lock files aside).
        before = [p for p in fsck(store).unrepaired() if p.kind in DEPENDENCY_PROBLEMS]
        problems["fsck_before_repair"] += [f"{p.kind} {p.path}: {p.message}" for p in before]
        problems["fsck"] += repair(store_root)
        tree = walk(store_root)
        committed, aborted = {}, []
        for path in store_root.glob("workflows/*/*.json"):
            body = read_manifest(store.tree, path.stem)  # content may lag: read until whole
            assert body is not None
            if body.get("aborted"):
                aborted.append(path.stem)
            else:
                steps = body["steps"]
                assert isinstance(steps, list)
                committed[path.stem] = {step["id"] for step in steps}  # type: ignore[index]
        step_ids = {j for ids in committed.values() for j in ids}
        problems["invariants"] += check_tree(step_ids | set(acked_jobs.values()))
        for tag, wf_id in acked_wfs.items():
            try:
                state = store.get_workflow(wf_id)
            except JobNotFound:
                problems["lost"].append(f"workflow {wf_id} ({tag}) is gone")
                continue
            if state.status is not WorkflowStatus.COMPLETED:
                problems["lost"].append(f"workflow {wf_id} ({tag}) is {state.status.value}")
        for tag, job_id in acked_jobs.items():
            try:
                status = store.get(job_id).status
            except JobNotFound:
                status = None
            if status is not JobStatus.COMPLETED:
                problems["lost"].append(f"job {job_id} ({tag}) is {status}")
        edges = []
        for job_id in sorted(tree.markers):
            try:
                state = store.get(job_id)
            except JobNotFound as exc:
                problems["lost"].append(f"{job_id}: {exc!r}")
                continue
            tag = str(state.kwargs.get("tag", "")).partition("/")[0]
            if tag not in started:
                problems["unexpected"].append(job_id)
            if state.workflow is not None and job_id not in committed.get(state.workflow, ()):
                problems["half_workflows"].append(f"{job_id} of uncommitted {state.workflow}")
            edges += [(parent, job_id) for parent in state.depends_on]
            segments = tree.journals.get(job_id, [])
            if published_completions(segments) > 1:
                history = [
                    (
                        epoch,
                        [
                            (r.type.value, r.get_str("worker") or r.get_str("by"))
                            for r in seg.records
                        ],
                    )
                    for epoch, seg in segments
                ]
                problems["duplicated_completions"].append(f"{job_id}: {history}")
            releases = sum(
                1 for _, seg in segments for r in seg.records if r.type is RecordType.UNBLOCKED
            )
            if releases > 1:
                problems["double_releases"].append(job_id)
        for wf_id, ids in committed.items():
            missing = ids - set(tree.markers)
            if missing:
                problems["half_workflows"].append(f"{wf_id} lacks {sorted(missing)}")
        problems["failed_pushes"] += [f"{tag}: {why}" for tag, why in failed.items()]
    finally:
        store.close()
    runs = t1._runs(children.log, children.kills)
    overlaps = t1._overlaps(runs)
    problems["concurrent_duplicate_runs"] += [
        f"{a.job_id}: pids {a.pid}, {b.pid}" for a, b in overlaps
    ]
    by_job: dict[str, list[t1.RunSpan]] = collections.defaultdict(list)
    for run in runs:
        by_job[run.job_id].append(run)
    for parent, child in edges:
        parent_end = max((r.end for r in by_job.get(parent, ())), default=math.inf)
        for run in by_job.get(child, ()):
            if run.start < parent_end:
                problems["order_violations"].append(f"{child} started before {parent} ended")
    killed = collections.defaultdict(list)
    for k in children.kills:
        killed[k.pid].append(k.mono)
    reruns = 0
    for job_id, spans in by_job.items():
        spans.sort(key=lambda r: r.start)
        for run in spans[:-1]:
            reruns += 1
            if not any(at >= run.start for at in killed.get(run.pid, ())):
                problems["unexplained_reruns"].append(f"{job_id}: pid {run.pid} was never killed")
    figures = {
        "seed": t1.SEED,
        "kills": len(children.kills[:kills]),
        "acked_workflows": len(acked_wfs),
        "acked_jobs": len(acked_jobs),
        "committed_workflows": len(committed),
        "aborted_pushes": len(aborted),
        "jobs": len(tree.markers),
        "edges": len(edges),
        "executions": len(runs),
        "reruns": reruns,
        "torture_s": round(tortured_s, 1),
        "drain_s": round(drain_s, 1),
    }
    for kind in (
        "lost",
        "half_workflows",
        "duplicated_completions",
        "double_releases",
        "order_violations",
        "concurrent_duplicate_runs",
        "unexplained_reruns",
        "fsck_before_repair",
    ):
        figures[kind] = len(problems.get(kind, []))
    return figures, problems


def assert_no_problems(children: t1.Children, problems: dict[str, list[str]]) -> None:
    assert not children.unexpected_exits, "\n".join(children.unexpected_exits)
    found = {kind: items[:10] for kind, items in problems.items() if items}
    assert not found, json.dumps(found, indent=2)


def test_kill9_torture_with_workflows(children: t1.Children, root: pathlib.Path) -> None:
    figures, problems = torture(
        children,
        t1.KILLS,
        root,
        lambda acked: check(root, acked, after_recovery=True),
    )
    report("FIGURES T1-workflows " + " ".join(f"{k}={v}" for k, v in figures.items()))
    assert_no_problems(children, problems)
