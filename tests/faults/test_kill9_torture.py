"""
T1: kill -9 torture (Jepsen's total-queue check against an acknowledged history).

Three worker processes and one pusher (``tests.faults.torture_child``) share a root. A
supervisor loop SIGKILLs a random ready child every 50-500 ms and starts a new one in
its place, workers and pusher alike, until it has killed ``$FSJOBS_FAULT_KILLS`` (40 by
default; ``nox -s faults`` sets 200; ``$FSJOBS_FAULT_SEED`` replays a schedule). Then
the pusher is stopped, all the tortured workers are SIGKILLed at once and clean ones
start, which rescue and drain the queue, and the history is replayed against the store:

* ``lost``: acknowledged ids (oracle file, outside the root) that did not complete
  (``max_attempts`` is 20, so rescues do not make a job fail);
* ``duplicated_completions``: jobs with more than one published ``completed`` record
  (a record in a segment fenced by a rescue was never published);
* ``concurrent_duplicate_runs``: pairs of executions of one job whose [start, end]
  intervals overlap (a run cut short by SIGKILL ends at the kill);
* rescue latency: a ``rescued`` record's time minus the SIGKILL of the worker it names.
"""

from __future__ import annotations

import collections
import math
import os
import pathlib
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import attrs
import pytest

from fsjobs import JobStatus
from fsjobs.journal import RecordType
from fsjobs.store import Store

from ._fsck import check, published_completions, repair, report, walk

pytestmark = pytest.mark.slow

KILLS = int(os.environ.get("FSJOBS_FAULT_KILLS", "40"))
SEED = int(os.environ.get("FSJOBS_FAULT_SEED", str(random.randrange(2**32))))
WORKERS = 3
#: bounds for anything the test waits for, generous for a loaded 2-core machine
READY_TIMEOUT = 60.0
DRAIN_TIMEOUT = 180.0
EXIT_TIMEOUT = 60.0
REPO = pathlib.Path(__file__).resolve().parents[2]
WORKER_PID = re.compile(r"-(\d+)-[a-z0-9]+$")


@attrs.frozen
class Kill:
    role: str
    pid: int
    mono: float  # right after kill(): no instruction of the victim runs after this
    wall: float


class Children:
    """The supervised processes, one per role; the fixture kills whatever still runs."""

    def __init__(self, tmp_path: pathlib.Path, env: dict[str, str], root: pathlib.Path) -> None:
        self.dir = tmp_path / "children"
        self.dir.mkdir()
        self.env, self.root = env, root
        self.log = tmp_path / "executions"
        self.oracle = tmp_path / "oracle"
        self.oracle.touch()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.started: list[subprocess.Popen[bytes]] = []
        self.names: dict[int, str] = {}
        self.kills: list[Kill] = []
        self.unexpected_exits: list[str] = []
        self.rng = random.Random(SEED)
        #: what the "pusher" role runs: plain jobs, or workflows (test_kill9_workflows)
        self.pusher_mode = "pusher"

    def start(self, role: str) -> None:
        args: list[str] = ["--log", str(self.log)]
        if role == "pusher":
            args += ["--oracle", str(self.oracle), "--seed", str(self.rng.randrange(2**32))]
        name = f"{role}-{len(self.started)}"
        with open(self.dir / f"{name}.err", "wb") as err:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.faults.torture_child",
                    self.pusher_mode if role == "pusher" else "worker",
                    str(self.root),
                    *args,
                ],
                cwd=REPO,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        self.procs[role] = proc
        self.started.append(proc)
        self.names[proc.pid] = name

    def stderr(self, proc: subprocess.Popen[bytes]) -> str:
        return (self.dir / f"{self.names[proc.pid]}.err").read_text(errors="replace")

    def ready(self, role: str) -> bool:
        """A worker holds its lock file; a pusher has had a push acknowledged."""
        pid = self.procs[role].pid
        if role == "pusher":
            return f"ack {pid}-" in self.oracle.read_text()
        try:
            names = os.listdir(self.root / "workers")
        except FileNotFoundError:
            return False
        return any(f"-{pid}-" in n and n.endswith(".lock") for n in names)

    def check_exits(self) -> None:
        """A child that exited on its own is a failure to report; start another."""
        for role, proc in list(self.procs.items()):
            if proc.poll() is not None:
                self.unexpected_exits.append(
                    f"{self.names[proc.pid]} exited with {proc.returncode}:\n"
                    f"{self.stderr(proc)[-2000:]}"
                )
                self.start(role)

    def kill(self, role: str) -> None:
        proc = self.procs[role]
        wall = time.time()
        proc.kill()
        self.kills.append(Kill(role, proc.pid, time.monotonic(), wall))
        proc.wait()
        self.start(role)

    def pause(self, seconds: float) -> None:
        """Let the children run for `seconds` (the fault schedule), watching for exits."""
        until = time.monotonic() + seconds
        while (left := until - time.monotonic()) > 0:
            self.check_exits()
            time.sleep(min(left, 0.01))

    def kill_all(self) -> None:
        for p in self.started:
            if p.poll() is None:
                p.kill()
        for p in self.started:
            p.wait()


@pytest.fixture
def children(
    tmp_path: pathlib.Path, subprocess_env: dict[str, str], root: pathlib.Path
) -> Iterator[Children]:
    kids = Children(tmp_path, subprocess_env, root)
    try:
        yield kids
    finally:
        kids.kill_all()


def _wait(check: Callable[[], bool], what: str, timeout: float, children: Children) -> None:
    give_up = time.monotonic() + timeout
    while not check():
        children.check_exits()
        if time.monotonic() > give_up:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def _oracle(path: pathlib.Path) -> tuple[set[str], dict[str, str], dict[str, str]]:
    """(tags whose push started, tag -> acked id, tag -> error) from the complete lines."""
    started: set[str] = set()
    acked: dict[str, str] = {}
    failed: dict[str, str] = {}
    text = path.read_text()
    for line in text.splitlines()[: text.count("\n")]:
        kind, tag, rest = (*line.split(" ", 2), "")[:3]
        if kind == "start":
            started.add(tag)
        elif kind == "ack":
            acked[tag] = rest
        else:
            failed[tag] = rest
    return started, acked, failed


@attrs.define
class RunSpan:
    job_id: str
    pid: int
    start: float
    end: float = math.inf


def _runs(path: pathlib.Path, kills: list[Kill]) -> list[RunSpan]:
    """Executions from the log; one without an end line ends at its process's SIGKILL."""
    runs: list[RunSpan] = []
    open_runs: dict[tuple[str, int, int], RunSpan] = {}
    text = path.read_text() if path.exists() else ""
    for line in text.splitlines()[: text.count("\n")]:
        kind, job_id, attempt, pid, at = line.split()
        key = (job_id, int(attempt), int(pid))
        if kind == "start":
            runs.append(run := RunSpan(job_id, int(pid), float(at)))
            open_runs[key] = run
        elif key in open_runs:
            open_runs.pop(key).end = float(at)
    killed_at = collections.defaultdict(list)
    for k in kills:
        killed_at[k.pid].append(k.mono)
    for run in runs:
        if run.end == math.inf:
            after = [t for t in killed_at.get(run.pid, ()) if t >= run.start]
            if after:
                run.end = min(after)
    return runs


def _overlaps(runs: list[RunSpan]) -> list[tuple[RunSpan, RunSpan]]:
    per_job: dict[str, list[RunSpan]] = collections.defaultdict(list)
    for run in runs:
        per_job[run.job_id].append(run)
    pairs = []
    for spans in per_job.values():
        spans.sort(key=lambda r: r.start)
        for i, a in enumerate(spans):
            pairs += [(a, b) for b in spans[i + 1 :] if b.start < a.end]
    return pairs


def kill_randomly(children: Children, roles: list[str], kills: int) -> None:
    """Every 50-500 ms, SIGKILL a random child that is ready, until `kills` kills in all."""
    while len(children.kills) < kills:
        children.pause(children.rng.uniform(0.05, 0.5))
        _wait(
            lambda: any(children.ready(r) for r in roles),
            "a child to be ready",
            READY_TIMEOUT,
            children,
        )
        children.kill(children.rng.choice([r for r in roles if children.ready(r)]))


def test_kill9_torture(children: Children, root: pathlib.Path) -> None:
    roles = [f"worker-{i}" for i in range(WORKERS)] + ["pusher"]
    began = time.monotonic()
    for role in roles:
        children.start(role)
    # -- the faults -----------------------------------------------------------------
    kill_randomly(children, roles, KILLS)
    tortured = time.monotonic() - began
    kills = len(children.kills)
    # -- the drain: the pusher stops; every tortured worker dies at once, and clean
    # workers (never killed) take over, rescue what the old ones held, and drain.
    pusher = children.procs.pop("pusher")
    pusher.kill()
    pusher.wait()
    for role in roles[:-1]:
        children.kill(role)
    started, acked_by_tag, failed = _oracle(children.oracle)
    acked = set(acked_by_tag.values())
    store = Store(root, staleness=0)
    try:
        live = (JobStatus.PENDING, JobStatus.RUNNING, JobStatus.SCHEDULED, JobStatus.RETRYING)

        final: set[str] = set()

        def drained() -> bool:
            """No live marker, and every acked job final (a listing can miss a moving job)."""
            counts = store.counts("default")
            if any(counts[s] for s in live):
                return False
            for job_id in acked - final:
                try:
                    if not store.get(job_id).status.is_final:
                        return False
                except Exception:
                    pass  # lost or unreadable: waiting will not help; the checks report it
                final.add(job_id)
            return True

        drain_began = time.monotonic()
        _wait(drained, "the workers to drain the queue", DRAIN_TIMEOUT, children)
        drain_s = time.monotonic() - drain_began
        for proc in children.procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in children.procs.values():
            try:
                proc.wait(timeout=EXIT_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        # -- the history against the store ------------------------------------------
        problems = repair(root)  # fsck --repair: anything it cannot repair is a failure
        tree = walk(root)
        problems += check(root, acked, after_recovery=True, tree=tree)
        lost, unexpected, duplicated = [], [], []
        for job_id in sorted(acked | set(tree.markers)):
            try:
                state = store.get(job_id)
            except Exception as exc:
                lost.append(f"{job_id}: {exc!r}")
                continue
            tag = state.kwargs.get("tag")
            if tag not in started:
                unexpected.append(job_id)
            if tag in failed:
                failed[tag] += f" (but job {job_id} was published)"
            if job_id in acked and state.status is not JobStatus.COMPLETED:
                lost.append(f"{job_id}: {state.status.value} {state.error}")
            if published_completions(tree.journals.get(job_id, [])) > 1:
                duplicated.append(job_id)
        completed = store.counts("default")[JobStatus.COMPLETED]
    finally:
        store.close()
    runs = _runs(children.log, children.kills)
    overlaps = _overlaps(runs)
    # -- rescue latency -----------------------------------------------------------------
    kills_of: dict[int, list[Kill]] = collections.defaultdict(list)
    for k in children.kills:
        kills_of[k.pid].append(k)
    latencies: list[float] = []
    rescues_of_unkilled = 0
    for segments in tree.journals.values():
        for _, seg in segments:
            for r in seg.records:
                if r.type is not RecordType.RESCUED:
                    continue
                m = WORKER_PID.search(r.get_str("worker") or "")
                at = r.at.timestamp()  # milliseconds: allow for the rounding
                of_worker = kills_of.get(int(m[1]) if m else -1, [])
                before = [k for k in of_worker if k.wall <= at + 0.001]
                if before:
                    latencies.append(at - max(k.wall for k in before))
                else:
                    rescues_of_unkilled += 1
    killed_workers = sum(1 for k in children.kills[:kills] if k.role != "pusher")
    report(
        f"FIGURES T1 kills={kills} acked={len(acked)} lost={len(lost)} "
        f"duplicated_completions={len(duplicated)} "
        f"concurrent_duplicate_runs={len(overlaps)} "
        f"rescue_latency_s p50={_percentile(latencies, 0.5):.3f} "
        f"p99={_percentile(latencies, 0.99):.3f}"
    )
    report(
        f"NOTES T1 seed={SEED} worker_kills={killed_workers} "
        f"pusher_kills={kills - killed_workers} final_worker_kills={len(children.kills) - kills} "
        f"jobs={len(tree.markers)} "
        f"completed={completed} unacked_committed={len(set(tree.markers) - acked)} "
        f"unexpected={len(unexpected)} failed_pushes={len(failed)} executions={len(runs)} "
        f"reruns={len(runs) - len({r.job_id for r in runs})} rescues={len(latencies)} "
        f"rescues_of_unkilled={rescues_of_unkilled} "
        f"rescue_latency_max_s={max(latencies, default=math.nan):.3f} "
        f"torture_s={tortured:.1f} drain_s={drain_s:.1f}"
    )
    assert not children.unexpected_exits, "\n".join(children.unexpected_exits)
    assert not failed, "pushes that raised: " + "\n".join(
        f"{tag}: {why}" for tag, why in list(failed.items())[:10]
    )
    assert not lost, f"acknowledged jobs lost: {lost[:20]}"
    assert not duplicated, f"jobs completed more than once: {duplicated[:20]}"
    assert not overlaps, "concurrent runs of one job: " + "; ".join(
        f"{a.job_id}: pid {a.pid} [{a.start:.3f}, {a.end:.3f}] and pid {b.pid} "
        f"[{b.start:.3f}, {b.end:.3f}]"
        for a, b in overlaps[:10]
    )
    assert not unexpected, f"jobs that no push started: {unexpected[:20]}"
    assert not problems, "\n".join(problems[:40])
