"""
Two "hosts" on one machine: one GlusterFS volume mounted twice (``scripts/sharedfs``).

Every test gets one fresh directory, seen as ``shared.a`` through mount A and as ``shared.b``
through mount B. Processes started on a root under ``shared.a`` are the processes of host A,
those under ``shared.b`` of host B: separate FUSE clients, so locks, renames, creates and
links are decided by the server, names show across in milliseconds, file content can lag a
second, and inotify sees nothing from the other side (DESIGN.md §4.1).

The logs the tasks append to (``tests.integration.tasks``), the pushers' oracles and the
children's output stay on the local disk, outside the shared root: they are the tests'
view of what happened, not part of the system under test. Nothing sleeps in place of
synchronisation: the tests poll a condition with a deadline.

Sizes can be turned down for a quick run: ``$FSJOBS_SHAREDFS_JOBS`` (2000),
``$FSJOBS_SHAREDFS_KILLS`` (40), ``$FSJOBS_SHAREDFS_UNIQUE_ROUNDS`` (200). As in T1,
``$FSJOBS_FAULT_SEED`` replays a torture schedule (the kills and the hosts of the restarts).
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import itertools
import math
import os
import pathlib
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterable

import pytest
import pytest_asyncio

import fsjobs
from fsjobs import Event, Job, JobStatus
from fsjobs.journal import RecordType
from fsjobs.store import Store
from tests.faults import test_kill9_torture as t1
from tests.faults._fsck import check, describe_journal, published_completions, repair, walk
from tests.integration.harness import (
    DEADLINE,
    Children,
    all_final,
    nonzero_counts,
    stop_workers,
    until,
    wait_registered,
)
from tests.integration.tasks import BLOCK, RECORD, read_log

from .conftest import Shared, record_figures

pytestmark = [pytest.mark.sharedfs, pytest.mark.slow, pytest.mark.asyncio]

JOBS = int(os.environ.get("FSJOBS_SHAREDFS_JOBS", "2000"))
KILLS = int(os.environ.get("FSJOBS_SHAREDFS_KILLS", "40"))
UNIQUE_ROUNDS = int(os.environ.get("FSJOBS_SHAREDFS_UNIQUE_ROUNDS", "200"))
#: The lease of the rescue, frozen-worker and clock-skew tests (every worker must use the same).
LEASE = 2.0
#: Worker's default rescue_interval: how often it looks for dead or frozen owners.
RESCUE_INTERVAL = 1.0
#: Allowance on top of a documented bound for a loaded 2-core machine and GlusterFS.
MARGIN = 1.5
#: The wall-clock skew of the clock-skew test's workers: +5 min on one host, -5 min on the other.
SKEW = 300.0
#: How long the content of a file written through one mount may lag on the other (about 1 s
#: measured), with room: the limit for re-checking the whole tree until it agrees.
SETTLE = 20.0


@pytest_asyncio.fixture
async def qa(shared: Shared) -> AsyncIterator[fsjobs.Queue]:
    """The queue "default" as host A sees it."""
    q = fsjobs.Queue(shared.a)
    try:
        yield q
    finally:
        q.close()


@pytest_asyncio.fixture
async def qb(shared: Shared, qa: fsjobs.Queue) -> AsyncIterator[fsjobs.Queue]:
    """The same queue as host B sees it (after A created the root)."""
    q = fsjobs.Queue(shared.b)
    try:
        yield q
    finally:
        q.close()


def worker_id_of(root: pathlib.Path, proc: subprocess.Popen[bytes]) -> str:
    (lock,) = root.glob(f"workers/*-{proc.pid}-*.lock")
    return lock.name.removesuffix(".lock")


async def settled_check(
    root: pathlib.Path, acked: Iterable[str] = (), *, after_recovery: bool = True
) -> list[str]:
    """
    The fsck checker's problems once the tree looks the same from here as from the host
    that wrote it: checked again until clean, for at most `SETTLE` seconds (content read
    through one mount lags writes through the other by about a second).
    """
    give_up = time.monotonic() + SETTLE
    while True:
        problems = check(root, acked, after_recovery=after_recovery)
        if not problems or time.monotonic() > give_up:
            return problems
        await asyncio.sleep(0.2)


def published_and_fenced(events: list[Event], kind: str) -> tuple[int, int]:
    """How many `kind` records of a history were published, and how many were fenced."""
    published = sum(1 for e in events if e.type == kind and not e.fenced)
    fenced = sum(1 for e in events if e.type == kind and e.fenced)
    return published, fenced


# -- 1. workers and pushers on both hosts: every job exactly once ------------------------------


async def test_workers_on_both_hosts_drain_jobs_pushed_through_both_exactly_once(
    shared: Shared,
    qa: fsjobs.Queue,
    qb: fsjobs.Queue,
    children: Children,
    tmp_path: pathlib.Path,
) -> None:
    log = tmp_path / "log"
    workers = [children.worker(shared.a, concurrency=8), children.worker(shared.b, concurrency=8)]
    await wait_registered(shared.a, children, workers)
    began = time.monotonic()
    half = JOBS // 2
    pushers = [  # batches of 50 with push_many, as an app that enqueues a batch would
        children.pusher("batch", shared.a, "--log", log, "--count", str(half), "--batch", "50"),
        children.pusher(
            "batch",
            shared.b,
            "--log",
            log,
            "--count",
            str(JOBS - half),
            "--batch",
            "50",
            "--first",
            str(half),
        ),
    ]
    await until(
        lambda: all(p.poll() is not None for p in pushers),
        "the pushers to finish",
        children,
        workers,
        timeout=300,
    )
    pushed_s = time.monotonic() - began
    done_by_then = (await qa.counts())[JobStatus.COMPLETED]
    assert [p.returncode for p in pushers] == [0, 0], children.report()
    acked = [job_id for p in pushers for job_id in children.stdout(p)]
    n_of = {job_id: n for n, job_id in enumerate(acked)}  # pusher A: 0.., pusher B: half..
    assert len(acked) == JOBS and len(n_of) == JOBS

    await until(all_final(qb, JOBS), f"{JOBS} final jobs (seen from B)", children, workers, 300)
    drained_s = time.monotonic() - began
    await until(all_final(qa, JOBS), f"{JOBS} final jobs (seen from A)", children, workers)
    stop_workers(children, workers)

    runs = read_log(log)
    per_job = collections.Counter(job_id for job_id, *_ in runs)
    lost = sorted(set(acked) - set(per_job))
    duplicates = sorted(job_id for job_id, n in per_job.items() if n > 1)
    unexpected = sorted(set(per_job) - set(acked))
    by_host = collections.Counter(
        "a" if pid == workers[0].pid else "b" if pid == workers[1].pid else "?"
        for _, _, pid, _ in runs
    )
    states = {}
    for side, q in (("a", qa), ("b", qb)):
        got = await asyncio.gather(*(q.get(job_id) for job_id in acked))
        states[side] = {
            s.id: (s.status, s.attempts, s.result)
            for s in got
            if (s.status, s.attempts, s.result) != (JobStatus.COMPLETED, 1, n_of[s.id])
        }
    record_figures(
        "drain",
        jobs=JOBS,
        lost=len(lost),
        duplicates=len(duplicates),
        ran_on_a=by_host["a"],
        ran_on_b=by_host["b"],
        push_s=round(pushed_s, 1),
        completed_while_pushing=done_by_then,
        push_per_s=round(JOBS / pushed_s),
        push_to_all_done_s=round(drained_s, 1),
        end_to_end_per_s=round(JOBS / drained_s),
    )
    assert not lost, f"{len(lost)} acknowledged jobs never ran: {lost[:10]}"
    assert not duplicates, f"{len(duplicates)} jobs ran more than once: {duplicates[:10]}"
    assert not unexpected, f"jobs ran that were never acknowledged: {unexpected[:10]}"
    assert set(by_host) == {"a", "b"}, f"both hosts' workers should run jobs: {by_host}"
    assert states == {"a": {}, "b": {}}, "get() disagrees with what ran"
    for q in (qa, qb):
        assert await nonzero_counts(q) == {JobStatus.COMPLETED: JOBS}


# -- 2. kill -9 torture with the workers split across the hosts -------------------------------


class SplitChildren(t1.Children):
    """
    T1's supervised processes, each started on a random host, or on the next host of
    `next_hosts` while it is not empty.
    """

    def __init__(self, tmp_path: pathlib.Path, env: dict[str, str], shared: Shared) -> None:
        super().__init__(tmp_path, env, shared.a)
        self.shared = shared
        self.host_of: dict[int, str] = {}
        self.next_hosts: list[str] = []

    def start(self, role: str) -> None:
        host = self.next_hosts.pop(0) if self.next_hosts else self.rng.choice("ab")
        self.root = self.shared.on(host)
        super().start(role)
        self.host_of[self.procs[role].pid] = host


async def test_kill9_torture_across_hosts(
    shared: Shared, tmp_path: pathlib.Path, subprocess_env: dict[str, str]
) -> None:
    """
    T1 (tests/faults/test_kill9_torture.py) shortened, with three workers and a pusher on
    random hosts: a random one is SIGKILLed every 50-500 ms and restarts on a random host.
    Then every tortured worker is killed and clean ones (one per host) drain the queue.
    """
    children = SplitChildren(tmp_path, subprocess_env, shared)
    roles = [f"worker-{i}" for i in range(t1.WORKERS)] + ["pusher"]
    try:
        began = time.monotonic()
        children.next_hosts = ["a", "b"]  # worker-0 on A, worker-1 on B, the rest anywhere
        for role in roles:
            children.start(role)
        t1.kill_randomly(children, roles, KILLS)
        tortured_s = time.monotonic() - began
        kills = list(children.kills)
        pusher = children.procs.pop("pusher")
        pusher.kill()
        pusher.wait()
        children.next_hosts = ["a", "b", "a"]  # the clean workers: both hosts drain
        for role in roles[:-1]:
            children.kill(role)
        started, acked_by_tag, failed = t1._oracle(children.oracle)
        acked = set(acked_by_tag.values())
        store = Store(shared.b)  # the default staleness bound of a network filesystem
        try:
            live = (JobStatus.PENDING, JobStatus.RUNNING, JobStatus.SCHEDULED, JobStatus.RETRYING)
            final: set[str] = set()

            def drained() -> bool:
                if any(store.counts("default")[s] for s in live):
                    return False
                for job_id in acked - final:
                    try:
                        if not store.get(job_id).status.is_final:
                            return False
                    except Exception:
                        pass  # lost or unreadable: the checks below report it
                    final.add(job_id)
                return True

            drain_began = time.monotonic()
            t1._wait(drained, "the workers to drain the queue", t1.DRAIN_TIMEOUT, children)
            drain_s = time.monotonic() - drain_began
            for proc in children.procs.values():
                proc.send_signal(signal.SIGTERM)
            for proc in children.procs.values():
                try:
                    proc.wait(timeout=t1.EXIT_TIMEOUT)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            before_repair = await settled_check(shared.a, acked)
            problems = repair(shared.a)
            tree = walk(shared.a)
            problems += await settled_check(shared.a, acked)
            lost, duplicated, unexpected = [], [], []
            for job_id in sorted(acked | set(tree.markers)):
                try:
                    state = store.get(job_id)
                except Exception as exc:
                    lost.append(f"{job_id}: {exc!r}")
                    continue
                if state.kwargs.get("tag") not in started:
                    unexpected.append(job_id)
                if job_id in acked and state.status is not JobStatus.COMPLETED:
                    lost.append(f"{job_id}: {state.status.value} {state.error}")
                segments = tree.journals.get(job_id, [])
                if published_completions(segments) > 1:
                    duplicated.append(f"{job_id}: {describe_journal(segments)}")
        finally:
            store.close()
        overlaps = t1._overlaps(t1._runs(children.log, children.kills))
        kills_of: dict[int, list[t1.Kill]] = collections.defaultdict(list)
        for k in children.kills:
            kills_of[k.pid].append(k)
        latencies = []
        for segments in tree.journals.values():
            for _, seg in segments:
                for r in seg.records:
                    m = t1.WORKER_PID.search(r.get_str("worker") or "")
                    if r.type is RecordType.RESCUED and m:
                        at = r.at.timestamp()
                        before = [
                            k.wall for k in kills_of.get(int(m[1]), []) if k.wall <= at + 0.001
                        ]
                        if before:
                            latencies.append(at - max(before))
        restarted_on = collections.Counter(children.host_of[k.pid] for k in kills)
        record_figures(
            "kill9_torture",
            seed=t1.SEED,
            kills=len(kills),
            killed_on_a=restarted_on["a"],
            killed_on_b=restarted_on["b"],
            acked=len(acked),
            lost=len(lost),
            duplicated_completions=len(duplicated),
            concurrent_duplicate_runs=len(overlaps),
            rescues=len(latencies),
            rescue_latency_p50_s=round(t1._percentile(latencies, 0.5), 3),
            rescue_latency_max_s=round(max(latencies, default=math.nan), 3),
            fsck_problems_before_repair=len(before_repair),
            torture_s=round(tortured_s, 1),
            drain_s=round(drain_s, 1),
        )
        assert not children.unexpected_exits, "\n".join(children.unexpected_exits)
        assert not failed, f"pushes that raised: {list(failed.items())[:10]}"
        assert not lost, f"acknowledged jobs lost: {lost[:20]}"
        assert not duplicated, f"jobs completed more than once: {duplicated[:20]}"
        assert not overlaps, "concurrent runs of one job: " + "; ".join(
            f"{a.job_id}: pid {a.pid} [{a.start:.3f}, {a.end:.3f}] and pid {b.pid} "
            f"[{b.start:.3f}, {b.end:.3f}]"
            for a, b in overlaps[:10]
        )
        assert not unexpected, f"jobs that no push started: {unexpected[:20]}"
        assert not problems, "\n".join(problems[:40])
    finally:
        children.kill_all()


# -- 3. one unique key pushed from both hosts at once, 200 times ------------------------------


async def test_unique_key_pushed_from_both_hosts_at_once_makes_one_job(
    shared: Shared,
    qa: fsjobs.Queue,
    qb: fsjobs.Queue,
    children: Children,
    tmp_path: pathlib.Path,
) -> None:
    """
    Each round, a pusher on A (queue "default") and one on B (queue "other": keys are
    global) wait for the same go file and push the key ``round-<r>``. Both must get the
    one job's id (a push that meets the other's staging gets UniqueKeyBusy and retries).
    """
    sync, log = tmp_path / "sync", tmp_path / "log"
    sync.mkdir()
    pushers = [
        children.pusher(
            "unique",
            root,
            *("--log", log, "--sync", sync, "--rounds", str(UNIQUE_ROUNDS)),
            *("--queue", queue, "--details"),
        )
        for root, queue in ((shared.a, "default"), (shared.b, "other"))
    ]
    began = time.monotonic()
    for r in range(UNIQUE_ROUNDS):

        def both_ready(r: int = r) -> bool:
            return sum(1 for n in os.listdir(sync) if n.startswith(f"ready.{r}.")) == 2

        await until(both_ready, f"both pushers ready for round {r}", children, pushers)
        (sync / f"go.{r}").touch()
    await until(
        lambda: all(p.poll() is not None for p in pushers), "the pushers to finish", children
    )
    race_s = time.monotonic() - began
    assert [p.returncode for p in pushers] == [0, 0], children.report()
    # "<r> <id> <busy> <start> <end>" per round and pusher
    answers = [[line.split() for line in children.stdout(p)] for p in pushers]
    assert [len(a) for a in answers] == [UNIQUE_ROUNDS] * 2
    different_ids = [r for r, (x, y) in enumerate(zip(*answers, strict=True)) if x[1] != y[1]]
    busy = sum(int(line[2]) for side in answers for line in side)
    # How close the race was: the two pushes of a round began this far apart, and overlapped.
    skews = [abs(float(x[3]) - float(y[3])) for x, y in zip(*answers, strict=True)]
    overlapped = sum(
        1
        for x, y in zip(*answers, strict=True)
        if max(float(x[3]), float(y[3])) < min(float(x[4]), float(y[4]))
    )
    per_key: dict[str, dict[str, set[str]]] = {}
    for side, q in (("a", qa), ("b", qb)):
        states = await q.list_jobs(queue="*", limit=10 * UNIQUE_ROUNDS)
        keys: dict[str, set[str]] = collections.defaultdict(set)
        for s in states:
            keys[s.unique_key or "-"].add(s.id)
        per_key[side] = keys
    duplicate_rounds = sorted(
        {k for keys in per_key.values() for k, ids in keys.items() if len(ids) > 1}
    )
    problems = await settled_check(shared.a, after_recovery=False)
    record_figures(
        "unique_race",
        rounds=UNIQUE_ROUNDS,
        unique_race_duplicates=len(duplicate_rounds),
        rounds_with_different_ids=len(different_ids),
        unique_key_busy_retries=busy,
        rounds_pushes_overlapped=overlapped,
        start_skew_p50_ms=round(1000 * t1._percentile(skews, 0.5), 1),
        start_skew_max_ms=round(1000 * max(skews), 1),
        race_s=round(race_s, 1),
    )
    assert not duplicate_rounds, f"keys with more than one job: {duplicate_rounds[:10]}"
    assert not different_ids, f"rounds where A and B got different ids: {different_ids[:10]}"
    expected = {f"round-{r}": {answers[0][r][1]} for r in range(UNIQUE_ROUNDS)}
    assert per_key["a"] == per_key["b"] == expected
    for q in (qa, qb):
        assert await nonzero_counts(q, "*") == {JobStatus.PENDING: UNIQUE_ROUNDS}
    assert not problems, "\n".join(problems[:40])


# -- 4. a worker killed on A, its job rescued by a worker on B --------------------------------


async def test_job_of_worker_killed_on_a_is_rescued_by_b_within_the_bound(
    shared: Shared,
    qa: fsjobs.Queue,
    qb: fsjobs.Queue,
    children: Children,
    tmp_path: pathlib.Path,
) -> None:
    """
    docs/failures.md: a killed worker's jobs are put back by another worker within the
    rescue interval (its OFD lock goes with the process, across hosts too); a frozen one's
    within the lease. Asserted here: the rescue within the rescue interval plus a margin,
    and the rerun on B within the lease plus the rescue interval plus a margin.
    """
    log, release = tmp_path / "log", tmp_path / "release"
    a = children.worker(shared.a, concurrency=1, lease=LEASE)
    await wait_registered(shared.a, children, [a])
    job_id = await qa.push(
        Job(func=BLOCK, kwargs={"log": str(log), "release": str(release)}, max_attempts=2)
    )
    await until(lambda: ran(log, job_id, 1, a), "worker A to start the job", children, [a])
    b = children.worker(shared.b, concurrency=1, lease=LEASE)
    await wait_registered(shared.b, children, [b])
    b_id = worker_id_of(shared.b, b)

    killed_wall, killed = time.time(), time.monotonic()
    a.kill()
    a.wait()
    await until(lambda: ran(log, job_id, 2, b), "worker B to rerun the job", children, [b])
    rerun_s = time.monotonic() - killed
    release.touch()
    state = await qb.wait(job_id, timeout=DEADLINE)
    assert (state.status, state.attempts, state.worker) == (JobStatus.COMPLETED, 2, b_id)
    events = await qa.history(job_id)
    rescues = [e for e in events if e.type == "rescued"]
    rescue_s = rescues[0].at.timestamp() - killed_wall if rescues else math.nan
    completions, fenced = published_and_fenced(events, "completed")
    stop_workers(children, [b])
    record_figures(
        "rescue_killed",
        lease_s=LEASE,
        rescue_latency_s=round(rescue_s, 3),
        rerun_latency_s=round(rerun_s, 3),
        rescues=len(rescues),
        completions=completions,
    )
    assert len(rescues) == 1 and completions == 1 and fenced == 0, events
    assert rescue_s <= RESCUE_INTERVAL + MARGIN, f"rescued {rescue_s:.2f} s after the kill"
    assert rerun_s <= LEASE + RESCUE_INTERVAL + MARGIN, f"rerun {rerun_s:.2f} s after the kill"
    assert [r[:3] for r in read_log(log)] == [(job_id, 1, a.pid), (job_id, 2, b.pid)]
    for q in (qa, qb):
        assert await nonzero_counts(q) == {JobStatus.COMPLETED: 1}


def ran(log: pathlib.Path, job_id: str, attempt: int, proc: subprocess.Popen[bytes]) -> bool:
    return (job_id, attempt, proc.pid) in {r[:3] for r in read_log(log)}


# -- 5. a worker frozen on A: rescued on B after the lease, its late result discarded ---------


async def test_worker_frozen_on_a_is_rescued_by_b_and_its_late_result_is_discarded(
    shared: Shared,
    qa: fsjobs.Queue,
    qb: fsjobs.Queue,
    children: Children,
    tmp_path: pathlib.Path,
) -> None:
    """
    tests/integration/test_frozen_worker.py across hosts: A is SIGSTOPped mid-job (its FUSE
    client lives on, so its lock stays held); B rescues after the lease on its own monotonic
    clock and completes the job; then A wakes and its late outcome is never published.
    """
    log, release = tmp_path / "log", tmp_path / "release"
    a = children.worker(shared.a, concurrency=1, lease=LEASE)
    await wait_registered(shared.a, children, [a])
    a_id = worker_id_of(shared.a, a)
    job_id = await qa.push(
        Job(func=BLOCK, kwargs={"log": str(log), "release": str(release)}, max_attempts=3)
    )
    await until(lambda: ran(log, job_id, 1, a), "worker A to start the job", children, [a])
    os.kill(a.pid, signal.SIGSTOP)
    frozen = time.monotonic()
    try:
        b = children.worker(shared.b, concurrency=1, lease=LEASE)
        await wait_registered(shared.b, children, [b])
        b_ready_s = time.monotonic() - frozen
        b_id = worker_id_of(shared.b, b)
        await until(lambda: ran(log, job_id, 2, b), "worker B to rescue and rerun", children, [b])
        rerun_s = time.monotonic() - frozen
        release.touch()
        state = await qb.wait(job_id, timeout=DEADLINE)
        assert (state.status, state.attempts, state.worker) == (JobStatus.COMPLETED, 2, b_id)
        stop_workers(children, [b])  # from now on only A can run anything
    finally:
        os.kill(a.pid, signal.SIGCONT)
    # A wakes: its attempt finds the release file and returns, or A sees its marker gone.
    # A job only A can run shows when A is done with the old one (concurrency 1).
    later = await qa.push(Job(func=RECORD, kwargs={"log": str(log), "n": 7}))
    assert (await qa.wait(later, timeout=DEADLINE)).result == 7
    assert ran(log, later, 1, a)
    for q in (qa, qb):
        state = await q.get(job_id)
        assert (state.status, state.attempts, state.worker) == (JobStatus.COMPLETED, 2, b_id)
        assert await nonzero_counts(q) == {JobStatus.COMPLETED: 2}
    zombie_commits = sum(1 for p in shared.b.glob("queues/*/*/*/*") if p.name == job_id) - 1
    events = await qb.history(job_id)
    completions, late_records = published_and_fenced(events, "completed")
    stop_workers(children, [a])
    record_figures(
        "frozen_worker",
        lease_s=LEASE,
        rescue_rerun_latency_s=round(rerun_s, 3),
        rescuer_ready_after_s=round(b_ready_s, 3),
        zombie_commits=zombie_commits,
        late_records_fenced=late_records,
        completions=completions,
    )
    assert zombie_commits == 0 and completions == 1
    assert a_id != b_id
    assert rerun_s >= LEASE, f"B rescued a live worker's job after {rerun_s:.2f} s"
    assert rerun_s <= b_ready_s + LEASE + RESCUE_INTERVAL + MARGIN, f"rerun after {rerun_s:.2f} s"


# -- 6. clocks 10 minutes apart --------------------------------------------------------------


async def test_clock_skew_between_hosts_neither_rescues_early_nor_reorders(
    shared: Shared,
    qa: fsjobs.Queue,
    qb: fsjobs.Queue,
    children: Children,
    tmp_path: pathlib.Path,
) -> None:
    """
    The worker on A runs 5 minutes ahead, the one on B 5 minutes behind (wall clock only;
    each host's monotonic clock is right). Leases are measured on the rescuer's monotonic
    clock, so neither may rescue the other's live jobs, however wrong their file times
    look. Scheduled jobs are released by A's fast clock 5 minutes early (scheduled times are
    only as good as host clocks, docs/failures.md), but in scheduled_at order.
    """
    log, release = tmp_path / "log", tmp_path / "release"
    fast = children.worker(shared.a, concurrency=1, lease=LEASE, clock_offset=SKEW)
    slow = children.worker(shared.b, concurrency=1, lease=LEASE, clock_offset=-SKEW)
    workers = [fast, slow]
    await wait_registered(shared.a, children, workers)

    # Two long jobs, one on each host: watched for three leases, nobody rescues them.
    blockers = [
        await q.push(
            Job(func=BLOCK, kwargs={"log": str(log), "release": str(release)}, max_attempts=3)
        )
        for q in (qa, qb)
    ]

    def both_running() -> bool:  # concurrency 1: one on each worker
        return {r[0] for r in read_log(log) if r[1] == 1} >= set(blockers)

    await until(both_running, "both long jobs to start", children, workers)
    assert {r[2] for r in read_log(log)} == {fast.pid, slow.pid}
    watch_until = time.monotonic() + 3 * LEASE + 2 * RESCUE_INTERVAL
    while time.monotonic() < watch_until:  # an observation window, not synchronisation
        children.check_alive(workers)
        reruns = [r for r in read_log(log) if r[1] > 1]
        assert not reruns, f"a live worker's job was rescued and rerun: {reruns}"
        await asyncio.sleep(0.05)
    release.touch()

    # Scheduled jobs due one by one, in A's clock, over the next few seconds; pushed
    # latest first, through both hosts, so that neither ids nor push order give the order.
    n, gap = 12, 0.3
    first = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=SKEW + 2)
    due = [first + dt.timedelta(seconds=i * gap) for i in range(n)]
    ids: dict[str, int] = {}
    for i in reversed(range(n)):
        q = (qa, qb)[i % 2]
        job = Job(func=RECORD, kwargs={"log": str(log), "n": i}).with_scheduled_at(due[i])
        ids[await q.push(job)] = i
    total = len(blockers) + n
    await until(all_final(qb, total), "every job to finish", children, workers)
    stop_workers(children, workers)

    runs = [r for r in read_log(log) if r[0] in ids]
    order = [ids[r[0]] for r in runs]
    by = collections.Counter("fast" if r[2] == fast.pid else "slow" for r in runs)
    rescued = []
    for job_id in [*blockers, *ids]:
        events = await qa.history(job_id)
        rescued += [job_id for e in events if e.type == "rescued"]
    record_figures(
        "clock_skew",
        skew_s=f"+{SKEW:.0f}/-{SKEW:.0f}",
        lease_s=LEASE,
        premature_rescues=len(rescued),
        scheduled=n,
        out_of_order=sum(1 for x, y in itertools.pairwise(order) if x > y),
        scheduled_ran_on_fast=by["fast"],
        scheduled_ran_on_slow=by["slow"],
    )
    assert not rescued, f"jobs of live workers were rescued: {rescued}"
    assert order == list(range(n)), f"scheduled jobs ran in the order {order}"
    for q in (qa, qb):
        assert await nonzero_counts(q) == {JobStatus.COMPLETED: total}
    for job_id in blockers:
        assert (await qb.get(job_id)).attempts == 1
