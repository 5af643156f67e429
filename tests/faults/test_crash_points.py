"""
T2: a crash at the k-th filesystem call (SQLite's crash loop).

Operations: push (plain, with a unique key that is free, taken by a completed job or
taken by a pending one), push_many of 3, claim+finish (completed, retrying), rescue of a
dead worker's job, cancel (pending, running), hold, release of a hold, retry of a failed
job; and with dependencies: a push that depends on a pending job, the finish of a job
whose dependent is blocked (it releases it), the cancel of such a job (it cancels its
dependent), and `push_workflow` of a diamond (every step or none). For each, and for k =
1, 2, ... until the operation completes without crashing, a fresh queue root is set up,
a child (forked by ``tests.faults.crash_child``) runs the operation and dies with
``os._exit`` just before its k-th call of an `os` function the store uses. The child
writes an ack file only once the API call has returned. After each crash the parent
checks the invariants on the tree as the crash left it, runs recovery (``Store.rescue``
from a fresh worker id and ``fsjobs fsck --repair``, whose unrepaired findings count as
failures; then a re-push of the unique key, then a `Worker` that drains the queue) and
checks them again, and that every acknowledged job completed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pathlib
import select
import shutil
import subprocess
import sys
import typing
from collections.abc import Callable, Iterator
from unittest import mock

import attrs
import pytest

import fsjobs
from fsjobs import ErrorInfo, JobStatus
from fsjobs import _deptree as deptree
from fsjobs import _workflows as workflows
from fsjobs.store import Ending, Outcome, Store
from fsjobs.testing import drain

from . import crash_child
from ._fsck import check, repair, report, walk
from .crash_child import CRASHED, NOOP, QUEUE

pytestmark = pytest.mark.slow

REPO = pathlib.Path(__file__).resolve().parents[2]
#: Crash points tried per operation before giving up on it completing (a runaway guard).
MAX_K = 400
KEY = "the-key"


class Zygote:
    """The fork server: one command out, one exit status back."""

    def __init__(self, tmp_path: pathlib.Path, env: dict[str, str]) -> None:
        self.err_path = tmp_path / "zygote.err"
        with open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.faults.crash_child"],
                cwd=REPO,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
            )

    def run(self, cmd: dict[str, object]) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(cmd).encode() + b"\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], crash_child.CHILD_TIMEOUT + 30)
        line = self.proc.stdout.readline() if ready else b""
        if not line:
            pytest.fail(f"the fork server did not answer:\n{self.err_path.read_text()[-3000:]}")
        return int(json.loads(line)["rc"])

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def zygote(tmp_path: pathlib.Path, subprocess_env: dict[str, str]) -> Iterator[Zygote]:
    z = Zygote(tmp_path, subprocess_env)
    try:
        yield z
    finally:
        z.close()


# -- scenarios ------------------------------------------------------------------------


@attrs.define
class Setup:
    """What the parent made before the child ran: acknowledged jobs, and facts to check."""

    acked: list[str] = attrs.Factory(list)
    #: the job the child's claim/rescue works on
    target: str | None = None
    #: the job that owned the unique key before the child's push
    owner: str | None = None
    #: a job blocked on `target`: it ends completed if the target does, else cancelled
    dependent: str | None = None


def _job(n: int, key: str | None = None) -> fsjobs.Job:
    return crash_child.job_of({"n": n, "unique_key": key})


def _push(store: Store, n: int = 100, key: str | None = None) -> str:
    (job_id,) = store.push_many([(_job(n, key), QUEUE)])
    return job_id


def _dead_workflow_push(store: Store) -> Setup:
    """A push_workflow whose pusher died after its commit: its steps are still staged."""
    with mock.patch.object(workflows, "_publish", side_effect=RuntimeError("the pusher dies")):
        wf_id = store.push_workflow(crash_child.diamond(), QUEUE)
    assert len(list(pathlib.Path(store.root).glob("tmp/wfstep.*"))) == 4
    return Setup(acked=[s.id for s in store.get_workflow(wf_id).steps.values()])


def _dead_uncommitted_workflow_push(store: Store) -> Setup:
    """A push_workflow whose pusher died just before its commit, cleaning nothing up."""

    def as_the_kernel(tree: object, wf_id: str, plan: object, name: str, fd: int) -> None:
        os.close(fd)

    with (
        mock.patch.object(deptree, "link_manifest", side_effect=KeyboardInterrupt),
        mock.patch.object(workflows, "_abandon", as_the_kernel),
        contextlib.suppress(KeyboardInterrupt),
    ):
        store.push_workflow(crash_child.diamond(), QUEUE)
    assert len(list(pathlib.Path(store.root).glob("tmp/wfstep.*"))) == 4
    return Setup()


def _parent_with_blocked_child(store: Store) -> Setup:
    parent = _push(store)
    (child,) = store.push_many([(_job(101).with_depends_on([parent]), QUEUE)])
    assert store.get(child).status is JobStatus.BLOCKED
    return Setup(acked=[parent, child], target=parent, dependent=child)


def _nothing(store: Store) -> Setup:
    return Setup()


def _one_pending(store: Store) -> Setup:
    job_id = _push(store)
    return Setup(acked=[job_id], target=job_id)


def _key_owner_completed(store: Store) -> Setup:
    owner = _push(store, key=KEY)
    (path,) = store.ready(QUEUE)
    claim = store.claim(QUEUE, path, "setup-worker")
    assert claim is not None
    assert store.finish(claim, Outcome(Ending.COMPLETED, result=0))
    return Setup(acked=[owner], owner=owner)


def _key_owner_pending(store: Store) -> Setup:
    owner = _push(store, key=KEY)
    return Setup(acked=[owner], owner=owner)


def _three_pending(store: Store) -> Setup:
    ids = [_push(store, n) for n in (100, 101, 102)]
    return Setup(acked=ids, target=ids[0])


def _running_on_dead_worker(store: Store) -> Setup:
    """A job claimed by a worker that never held its lock file: it is dead to everyone."""
    job_id = _push(store)
    (path,) = store.ready(QUEUE)
    claim = store.claim(QUEUE, path, "dead-worker")
    assert claim is not None
    store.close_claim(claim)
    return Setup(acked=[job_id], target=job_id)


def _held(store: Store) -> Setup:
    job_id = _push(store)
    assert store.hold(job_id) is JobStatus.HELD
    return Setup(acked=[job_id], target=job_id)


def _failed(store: Store) -> Setup:
    job_id = _push(store)
    (path,) = store.ready(QUEUE)
    claim = store.claim(QUEUE, path, "setup-worker")
    assert claim is not None
    error = ErrorInfo("Boom", "planned", "")
    assert store.finish(claim, Outcome(Ending.FAILED, error=error))
    return Setup(acked=[job_id], target=job_id)


@attrs.frozen
class Scenario:
    name: str
    cmd: dict[str, typing.Any]
    setup: Callable[[Store], Setup]
    #: what the target job may end as after recovery and the drain
    final_ok: frozenset[JobStatus] = frozenset({JobStatus.COMPLETED})
    #: for a "call": the target's status once the call returned, and after the drain
    acked_status: JobStatus | None = None
    acked_final: JobStatus | None = None


def _call(method: str) -> dict[str, typing.Any]:
    return {"op": "call", "method": method}


def _push_cmd(*keys: str | None) -> dict[str, typing.Any]:
    return {"op": "push", "jobs": [{"n": n, "unique_key": k} for n, k in enumerate(keys)]}


SCENARIOS = [
    Scenario("push", _push_cmd(None), _nothing),
    Scenario("push_unique", _push_cmd(KEY), _nothing),
    Scenario("push_unique_owner_completed", _push_cmd(KEY), _key_owner_completed),
    Scenario("push_unique_owner_pending", _push_cmd(KEY), _key_owner_pending),
    Scenario("push_many_3", _push_cmd(None, None, None), _nothing),
    Scenario(
        "claim_finish_completed",
        {"op": "claim_finish", "status": "completed", "result": {"ok": 1}},
        _one_pending,
    ),
    Scenario(
        "claim_finish_retrying",
        {"op": "claim_finish", "status": "retrying", "result": None},
        _one_pending,
    ),
    Scenario(
        "claim_finish_many_3",
        {"op": "claim_finish_many", "result": {"ok": 3}},
        _three_pending,
    ),
    Scenario("rescue_dead_worker", {"op": "rescue"}, _running_on_dead_worker),
    Scenario(
        "cancel_pending",
        _call("cancel"),
        _one_pending,
        frozenset({JobStatus.COMPLETED, JobStatus.CANCELLED}),
        JobStatus.CANCELLED,
        JobStatus.CANCELLED,
    ),
    Scenario(
        "cancel_running",
        _call("cancel"),
        _running_on_dead_worker,
        frozenset({JobStatus.COMPLETED, JobStatus.CANCELLED}),
        JobStatus.RUNNING,
        JobStatus.CANCELLED,
    ),
    Scenario(
        "hold_pending",
        _call("hold"),
        _one_pending,
        frozenset({JobStatus.COMPLETED, JobStatus.HELD}),
        JobStatus.HELD,
        JobStatus.HELD,
    ),
    Scenario(
        "release_hold",
        _call("release_hold"),
        _held,
        frozenset({JobStatus.COMPLETED, JobStatus.HELD}),
        JobStatus.PENDING,
        JobStatus.COMPLETED,
    ),
    Scenario(
        "retry_failed",
        _call("retry"),
        _failed,
        frozenset({JobStatus.COMPLETED, JobStatus.FAILED}),
        JobStatus.PENDING,
        JobStatus.COMPLETED,
    ),
    Scenario(
        "push_depends_on", {"op": "push", "jobs": [{"n": 0, "after_target": True}]}, _one_pending
    ),
    Scenario(
        "finish_releases_dependent",
        {"op": "claim_finish", "status": "completed", "result": {"ok": 1}},
        _parent_with_blocked_child,
    ),
    Scenario(
        "cancel_cascades_to_dependent",
        _call("cancel"),
        _parent_with_blocked_child,
        frozenset({JobStatus.COMPLETED, JobStatus.CANCELLED}),
        JobStatus.CANCELLED,
        JobStatus.CANCELLED,
    ),
    Scenario("push_workflow", {"op": "push_workflow"}, _nothing),
    Scenario("sweep_publishes_a_dead_push", {"op": "sweep"}, _dead_workflow_push),
    Scenario("sweep_aborts_a_dead_push", {"op": "sweep"}, _dead_uncommitted_workflow_push),
]


# -- checks -----------------------------------------------------------------------------


def _get(store: Store, job_id: str) -> fsjobs.JobState | None:
    """The job's state, or None if it cannot be read (`check` reports why)."""
    try:
        return store.get(job_id)
    except Exception:
        return None


def _unfinished_with_key(store: Store, root: pathlib.Path) -> list[str]:
    tree = walk(root)
    out = []
    for job_id in sorted(tree.ids_in("waiting", "pending", "running")):
        state = _get(store, job_id)
        if state is not None and state.unique_key == KEY:
            out.append(job_id)
    return out


def _epochs(root: pathlib.Path) -> dict[str, int]:
    return {job_id: len(segs) for job_id, segs in walk(root).journals.items()}


async def _drain(root: pathlib.Path) -> int:
    queue = fsjobs.Queue(root, QUEUE, staleness=0)
    try:
        queue.task(name=NOOP)(crash_child.noop)
        return await drain(queue, wait_scheduled=True, max_wait=10)
    finally:
        queue.close()


@attrs.define
class Verdict:
    problems: list[str] = attrs.Factory(list)
    lost: int = 0


def verify(
    scenario: Scenario, root: pathlib.Path, setup: Setup, answer: dict[str, typing.Any] | None
) -> Verdict:
    """Everything the tree must satisfy after the child ran (crashed or not)."""
    v = Verdict()
    acked = list(setup.acked)
    if answer is not None and scenario.cmd["op"] == "push":
        acked += answer["ids"]
    # 1. As the crash left it (steps of a committed workflow may still be staged: no marker).
    staged = scenario.cmd["op"] == "sweep"
    v.problems += [f"after the crash: {p}" for p in check(root, [] if staged else acked)]
    store = Store(root, staleness=0)
    try:
        if staged:
            v.problems += [
                f"after the crash: step {j} is unreadable" for j in acked if not _get(store, j)
            ]
        before = walk(root)
        new_visible = set(before.markers) - set(setup.acked)
        if scenario.cmd["op"] == "push_workflow":
            if answer is not None:
                acked += [s.id for s in store.get_workflow(answer["wf"]).steps.values()]
            if new_visible and not _manifests(root)[0]:
                v.problems.append(f"steps visible before the commit: {sorted(new_visible)}")
        if scenario.cmd["op"] == "push":
            if len(new_visible) > len(scenario.cmd["jobs"]):
                v.problems.append(f"{len(new_visible)} new jobs visible: {sorted(new_visible)}")
            if scenario.setup is _key_owner_pending and new_visible:
                v.problems.append(f"a push of a taken key published {sorted(new_visible)}")
        if answer is not None:
            v.problems += _check_answer(scenario, store, setup, answer)
        # 2. Recovery: a fresh worker rescues whatever the dead child held.
        store.rescue(QUEUE, "recovery")
        v.problems += [f"after rescue: {p}" for p in repair(root)]
        v.problems += [f"after rescue: {p}" for p in check(root, acked, after_recovery=True)]
        if scenario.cmd["op"] == "push_workflow":
            v.problems += [f"after rescue: {p}" for p in _all_or_nothing(root, answer)]
        if scenario.cmd["op"] == "sweep":
            v.problems += [f"after rescue: {p}" for p in _all_or_nothing(root, None)]
        # 3. The key is not stuck: a push of it returns the unfinished owner, or a new job.
        if any(j.get("unique_key") for j in scenario.cmd.get("jobs", ())):
            owners = _unfinished_with_key(store, root)
            again = _push(store, key=KEY)
            if owners and owners != [again]:
                v.problems.append(f"re-push of the key returned {again}, the owner is {owners}")
            acked.append(again)
        visible = walk(root).markers
        final_before = {}
        for job_id, n in _epochs(root).items():
            state = _get(store, job_id) if job_id in visible else None
            if state is not None and state.status.is_final:
                final_before[job_id] = n
    finally:
        store.close()
    # 4. A worker drains everything; final jobs stay untouched.
    asyncio.run(_drain(root))
    v.problems += [f"after the drain: {p}" for p in repair(root)]
    v.problems += [f"after the drain: {p}" for p in check(root, acked, after_recovery=True)]
    store = Store(root, staleness=0)
    try:
        after = _epochs(root)
        for job_id, n in final_before.items():
            if after.get(job_id) != n:
                v.problems.append(f"final job {job_id} was touched again by the drain")
        for job_id in sorted(set(acked) | set(walk(root).markers)):
            state = _get(store, job_id)
            ok = {JobStatus.COMPLETED}
            if job_id == setup.target and answer and scenario.acked_final:
                ok = {scenario.acked_final}
            elif job_id == setup.target:
                ok = set(scenario.final_ok)
            elif job_id == setup.dependent:
                parent = _get(store, setup.target or "")
                done = parent is not None and parent.status is JobStatus.COMPLETED
                ok = {JobStatus.COMPLETED if done else JobStatus.CANCELLED}
            if state is None or state.status not in ok:
                what = "unreadable" if state is None else state.status.value
                v.problems.append(f"job {job_id} is {what} after the drain")
                v.lost += job_id in acked
    finally:
        store.close()
    return v


def _check_answer(
    scenario: Scenario, store: Store, setup: Setup, answer: dict[str, typing.Any]
) -> list[str]:
    """The acknowledged outcome is what the store shows."""
    problems = []
    op = scenario.cmd["op"]
    if op == "push":
        ids = answer["ids"]
        if len(ids) != len(scenario.cmd["jobs"]):
            problems.append(f"push returned {ids}")
        if setup.owner is not None:
            taken = scenario.setup is _key_owner_pending
            if (ids == [setup.owner]) != taken:
                problems.append(f"push of the key returned {ids}; the old owner is {setup.owner}")
        blocked = any(j.get("after_target") for j in scenario.cmd["jobs"])
        for job_id in ids:
            state = _get(store, job_id)
            want = JobStatus.BLOCKED if blocked else JobStatus.PENDING
            if state is None or state.status is not want:
                problems.append(f"acked push {job_id} is {state}")
    elif op == "claim_finish":
        if answer["claimed"] != setup.target or answer["won"] is not True:
            problems.append(f"claim+finish answered {answer}")
        state = _get(store, setup.target or "")
        want = JobStatus(scenario.cmd["status"])
        if state is None or state.status is not want:
            problems.append(f"acked finish: job is {state}, not {want.value}")
        elif want is JobStatus.COMPLETED and state.result != scenario.cmd["result"]:
            problems.append(f"acked result {scenario.cmd['result']}, stored {state.result}")
    elif op == "claim_finish_many":
        if answer["claimed"] != sorted(setup.acked) or answer["won"] != [True] * 3:
            problems.append(f"claim+finish_many answered {answer}")
        for job_id in setup.acked:
            state = _get(store, job_id)
            if state is None or (state.status, state.result) != (JobStatus.COMPLETED, {"ok": 3}):
                problems.append(f"acked group finish: {job_id} is {state}")
    elif op == "call":
        state = _get(store, setup.target or "")
        if state is None or state.status is not scenario.acked_status:
            problems.append(f"{scenario.cmd['method']} returned {answer}, the job is {state}")
    elif op == "push_workflow":
        wf = store.get_workflow(answer["wf"])
        if len(wf.steps) != 4:
            problems.append(f"acked workflow has {len(wf.steps)} steps")
    if setup.dependent is not None and op != "push":
        # The acknowledged finish or cancel settled the dependent before returning.
        state = _get(store, setup.dependent)
        want = JobStatus.PENDING if op == "claim_finish" else JobStatus.CANCELLED
        if state is None or state.status is not want:
            problems.append(f"acked {op}: its dependent is {state}, not {want.value}")
    elif op == "rescue":
        if answer["ids"] != [setup.target]:
            problems.append(f"rescue answered {answer}")
        state = _get(store, setup.target or "")
        if state is None or state.status is not JobStatus.PENDING:
            problems.append(f"acked rescue: job is {state}")
    return problems


def _manifests(root: pathlib.Path) -> tuple[list[str], list[str]]:
    """(committed workflow ids, aborted ones) from the manifests and tombstones."""
    committed, aborted = [], []
    for path in root.glob("workflows/*/*.json"):
        body = json.loads(path.read_text())
        (aborted if body.get("aborted") else committed).append(path.stem)
    return committed, aborted


def _all_or_nothing(root: pathlib.Path, answer: dict[str, typing.Any] | None) -> list[str]:
    """After recovery: either the workflow with its four steps, or nothing of it at all."""
    problems = []
    committed, aborted = _manifests(root)
    markers = set(walk(root).markers)
    folders = {p.name for p in root.glob("jobs/*/*")}
    # A lock being made (wfnew.*) precedes everything else: fsck removes it after the horizon.
    left = sorted(p.name for p in root.glob("tmp/wf*") if not p.name.startswith("wfnew."))
    if left:
        problems.append(f"workflow files left in tmp/: {left}")
    if committed:
        if len(committed) != 1 or len(markers) != 4 or folders != markers:
            problems.append(
                f"committed {committed}: markers {sorted(markers)}, folders {sorted(folders)}"
            )
    elif markers or folders:
        problems.append(
            f"not committed (aborted: {aborted}), yet {sorted(markers | folders)} exist"
        )
    if answer is not None and committed != [answer["wf"]]:
        problems.append(f"push_workflow returned {answer['wf']}, committed are {committed}")
    return problems


# -- the test ----------------------------------------------------------------------------


def test_crash_at_every_filesystem_call(
    tmp_path: pathlib.Path, scratch: pathlib.Path, zygote: Zygote
) -> None:
    crash_points = 0
    failures: list[str] = []
    lost = 0
    per_op: dict[str, int] = {}
    only = os.environ.get("FSJOBS_CRASH_ONLY")  # a comma-separated list, to try a few
    chosen = [s for s in SCENARIOS if only is None or s.name in only.split(",")]
    for scenario in chosen:
        for k in range(1, MAX_K + 1):
            root = scratch / f"{scenario.name}-{k:03d}"
            root.mkdir()
            store = Store(root, staleness=0)
            try:
                setup = scenario.setup(store)
            finally:
                store.close()
            ack = tmp_path / f"{scenario.name}-{k:03d}.ack"
            cmd = {
                **scenario.cmd,
                "root": str(root),
                "k": k,
                "ack": str(ack),
                "worker": f"w{k}",
                "target": setup.target,
            }
            rc = zygote.run(cmd)
            if rc not in (0, CRASHED):
                err = pathlib.Path(f"{ack}.err")
                detail = err.read_text() if err.exists() else f"exit status {rc}"
                failures.append(f"{scenario.name} k={k}: the child failed:\n{detail}")
                break
            answer = json.loads(ack.read_text()) if ack.exists() else None
            verdict = verify(scenario, root, setup, answer)
            lost += verdict.lost
            failures += [f"{scenario.name} k={k}: {p}" for p in verdict.problems]
            if not verdict.problems:
                shutil.rmtree(root)  # keep only the roots that show a failure
            if rc == 0:
                per_op[scenario.name] = k - 1
                break
            crash_points += 1
        else:
            failures.append(f"{scenario.name}: still crashing after {MAX_K} calls")
    report(
        f"FIGURES T2 operations={len(chosen)} crash_points={crash_points} "
        f"invariant_failures={len(failures)} lost={lost}"
    )
    report("NOTES T2 calls_per_operation " + " ".join(f"{k}={v}" for k, v in per_op.items()))
    assert not failures, "\n".join(failures[:40])
    assert lost == 0
