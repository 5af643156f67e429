"""
Periodic ticks, pause and resume, and queue-wide caps across two "hosts": one GlusterFS
volume mounted twice (``scripts/sharedfs``; see ``test_two_hosts.py``). The tests of
``tests/integration/test_flow_processes.py``, with the workers split across the mounts.

* 3 workers (2 on A, 1 on B) keeping a 1 s schedule: one job per tick, none twice.
* A pause made through one mount stops the claims of workers on the other; a resume
  through it starts them again. Both reaction times are figures.
* ``concurrency=2`` with 3 workers at concurrency 4 (2 on A, 1 on B): never more than 2
  jobs run at once, by the tasks' own logged start and end times.
* ``rate="3/s"`` with workers on both mounts: at most 3 claims per window.
* A worker on A killed with SIGKILL while it holds the only slot: a worker on B frees
  the slot within the lease.

Without the bed the tests skip (see ``conftest.py``); the figures are printed and
recorded with `record_figures`.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import itertools
import os
import pathlib
import signal
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

import fsjobs
from fsjobs import Job, JobStatus
from fsjobs._schedule import parse_tick_key
from tests.integration.flow_tasks import (
    SPAN,
    max_overlap,
    quiet_for,
    read_spans,
    slot_dirs,
    starts,
)
from tests.integration.harness import Children, all_final, stop_workers, until, wait_registered
from tests.integration.tasks import BLOCK, RECORD, read_log

from .conftest import Shared, record_figures

pytestmark = [pytest.mark.sharedfs, pytest.mark.slow, pytest.mark.asyncio]

LEASE = 3.0
TICKS = 5


@pytest_asyncio.fixture
async def qa(shared: Shared) -> AsyncIterator[fsjobs.Queue]:
    q = fsjobs.Queue(shared.a)
    try:
        yield q
    finally:
        q.close()


@pytest_asyncio.fixture
async def qb(shared: Shared, qa: fsjobs.Queue) -> AsyncIterator[fsjobs.Queue]:
    await qa.io(qa.store.open)  # host A creates the root
    q = fsjobs.Queue(shared.b)
    try:
        yield q
    finally:
        q.close()


async def test_ticks_are_pushed_once_by_workers_on_both_hosts(
    shared: Shared, qa: fsjobs.Queue, qb: fsjobs.Queue, children: Children, tmp_path: pathlib.Path
) -> None:
    log = tmp_path / "ticks.log"
    tick = ["--tick-every", "1", "--tick-log", str(log)]
    workers = [
        children.worker(shared.a, concurrency=2, extra=tick),
        children.worker(shared.a, concurrency=2, extra=tick),
        children.worker(shared.b, concurrency=2, extra=tick),
    ]
    await wait_registered(shared.a, children, workers)

    async def ticks() -> dict[dt.datetime, list[fsjobs.JobState]]:
        by_tick: dict[dt.datetime, list[fsjobs.JobState]] = collections.defaultdict(list)
        for state in await qb.list_jobs(limit=1000, queue="*"):
            parsed = parse_tick_key(state.unique_key or "")
            if parsed is not None:
                by_tick[parsed[1]].append(state)
        return by_tick

    async def enough() -> bool:
        done = [t for t, jobs in (await ticks()).items() if jobs[0].status.is_final]
        return len(done) >= TICKS + 1

    await until(enough, f"{TICKS + 1} ticks to run", children, workers)
    stop_workers(children, workers)
    by_tick = await ticks()
    duplicates = sum(len(jobs) - 1 for jobs in by_tick.values())
    seconds = sorted(by_tick)
    skipped = [a for a, b in itertools.pairwise(seconds) if b - a > dt.timedelta(seconds=1)]
    runs = collections.Counter(line.split()[0] for line in log.read_text().splitlines())
    pids = collections.Counter(
        "a" if int(line.split()[1]) in (workers[0].pid, workers[1].pid) else "b"
        for line in log.read_text().splitlines()
    )
    record_figures(
        "flow_periodic",
        workers="2 on A, 1 on B",
        ticks=len(by_tick),
        duplicates=duplicates,
        skipped=len(skipped),
        ran_on_a=pids["a"],
        ran_on_b=pids["b"],
    )
    assert duplicates == 0, by_tick
    assert not skipped, skipped
    assert max(runs.values()) == 1


async def test_a_pause_through_one_mount_stops_workers_on_the_other(
    shared: Shared, qa: fsjobs.Queue, qb: fsjobs.Queue, children: Children, tmp_path: pathlib.Path
) -> None:
    log = tmp_path / "spans"
    workers = [children.worker(shared.b, concurrency=4), children.worker(shared.b, concurrency=4)]
    await wait_registered(shared.a, children, workers)
    jobs = await qa.push_many(
        [Job(func=SPAN, kwargs={"log": str(log), "hold": 0.02}) for _ in range(400)]
    )
    await until(lambda: len(read_spans(log)) >= 30, "B's workers to get going", children, workers)
    paused_at = time.time()
    assert await qa.pause()  # through mount A
    await until(quiet_for(log, 1.0), "claims on B to stop", children, workers)
    stopped = len(starts(log))
    last_claim = max(starts(log))
    held = await qa.push(Job(func=RECORD, kwargs={"log": str(tmp_path / "held"), "n": 1}))
    watch_until = time.monotonic() + 2.0
    while time.monotonic() < watch_until:
        children.check_alive(workers)
        assert (await qb.get(held)).status is JobStatus.PENDING
        assert len(starts(log)) == stopped, "nothing claimed on B while paused through A"
        await asyncio.sleep(0.05)  # the pace of the watch, not a synchronisation
    resumed_at = time.time()
    assert await qa.resume()
    await until(lambda: len(starts(log)) > stopped, "a claim on B after resume", children, workers)
    resume_to_claim = min(starts(log)[stopped:]) - resumed_at
    assert (await qa.wait(held, timeout=120)).status is JobStatus.COMPLETED
    await until(all_final(qb, len(jobs) + 1), "every job to end", children, workers, timeout=300)
    stop_workers(children, workers)
    record_figures(
        "flow_pause",
        paused_through="A",
        workers_on="B",
        pause_to_last_claim_s=round(last_claim - paused_at, 3),
        resume_to_claim_s=round(resume_to_claim, 3),
    )
    assert last_claim - paused_at < 2.0
    assert resume_to_claim < 3.0


async def test_the_concurrency_cap_holds_across_mounts(
    shared: Shared, qa: fsjobs.Queue, qb: fsjobs.Queue, children: Children, tmp_path: pathlib.Path
) -> None:
    log = tmp_path / "spans"
    await qa.configure(concurrency=2)
    workers = [
        children.worker(shared.a, concurrency=4),
        children.worker(shared.a, concurrency=4),
        children.worker(shared.b, concurrency=4),
    ]
    await wait_registered(shared.a, children, workers)
    total = 30
    # Pushed one at a time through either mount in turn, at a pace: each push wakes the
    # workers of its own mount (inotify sees only its own client's changes), so both
    # hosts take slots. A worker that frees a slot takes it again at once if it has
    # work, so a backlog lets one host keep both slots and the other poll, unserved:
    # the pace (about 6.7 jobs/s) stays under what the cap lets through (2 / 0.2 s),
    # while pushes still meet both slots taken now and then.
    for n in range(total):
        await (qa if n % 2 else qb).push(Job(func=SPAN, kwargs={"log": str(log), "hold": 0.2}))
        await asyncio.sleep(0.15)  # the pace of the pushes, not a synchronisation
    await until(all_final(qa, total), "every job to end", children, workers, timeout=300)
    stop_workers(children, workers)
    spans = read_spans(log)
    overlap = max_overlap(spans)
    host_of = {
        line.split()[2]: "a" if int(line.split()[3]) in (workers[0].pid, workers[1].pid) else "b"
        for line in log.read_text().splitlines()
        if line.startswith("start ")
    }
    pids = collections.Counter(host_of.values())
    both = _both_at_once(spans, host_of)
    record_figures(
        "flow_concurrency",
        cap=2,
        workers="2x4 on A, 1x4 on B",
        jobs=total,
        max_overlap=overlap,
        ran_on_a=pids["a"],
        ran_on_b=pids["b"],
        a_and_b_at_once=both,
    )
    assert len(spans) == total
    assert overlap <= 2
    assert pids["a"] and pids["b"], "both hosts ran some: the cap was shared across mounts"
    assert slot_dirs(shared.a) == []


async def test_the_rate_holds_across_mounts(
    shared: Shared, qa: fsjobs.Queue, qb: fsjobs.Queue, children: Children, tmp_path: pathlib.Path
) -> None:
    log = tmp_path / "log"
    rate = 3
    await qb.configure(rate=f"{rate}/s")
    workers = [children.worker(shared.a, concurrency=4), children.worker(shared.b, concurrency=4)]
    await wait_registered(shared.a, children, workers)
    total = 15
    ids = await qa.push_many(
        [Job(func=RECORD, kwargs={"log": str(log), "n": n}) for n in range(total)]
    )
    await until(lambda: len(read_log(log)) >= total, "every job to run", children, workers, 300)
    await until(all_final(qa, total), "every job to end", children, workers)
    stop_workers(children, workers)
    states = [await qa.get(j) for j in ids]
    per_window = collections.Counter(int(s.started_at.timestamp()) for s in states if s.started_at)
    record_figures(
        "flow_rate",
        rate=f"{rate}/s",
        workers="1x4 on A, 1x4 on B",
        claims_per_window=sorted(per_window.values(), reverse=True),
    )
    assert max(per_window.values()) <= rate, per_window


async def test_a_killed_workers_slot_is_freed_from_the_other_host(
    shared: Shared, qa: fsjobs.Queue, qb: fsjobs.Queue, children: Children, tmp_path: pathlib.Path
) -> None:
    log, release = tmp_path / "log", tmp_path / "release"
    await qa.configure(concurrency=1)
    a = children.worker(shared.a, concurrency=2, lease=LEASE)
    await wait_registered(shared.a, children, [a])
    blocked = await qa.push(
        Job(func=BLOCK, kwargs={"log": str(log), "release": str(release)}, max_attempts=2)
    )
    await until(lambda: bool(read_log(log)), "worker A to start the job", children, [a])
    b = children.worker(shared.b, concurrency=2, lease=LEASE)
    await wait_registered(shared.a, children, [b])
    later = await qb.push(Job(func=RECORD, kwargs={"log": str(tmp_path / "later"), "n": 1}))
    os.kill(a.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    a.wait()

    def slot_back() -> bool:
        top = shared.b / "queues" / "default" / "slots"
        owners = [o for s in (top.iterdir() if top.exists() else []) for o in _names(s)]
        return all(f"-{a.pid}-" not in o for o in owners)

    await until(slot_back, "the slot to come back (seen through B)", children, [b])
    back_s = time.monotonic() - killed_at
    release.touch()
    assert (await qb.wait(later, timeout=120)).status is JobStatus.COMPLETED
    assert (await qb.wait(blocked, timeout=120)).status is JobStatus.COMPLETED
    stop_workers(children, [b])
    record_figures(
        "flow_slot_recovery", kill="SIGKILL on A", lease_s=LEASE, slot_back_s=round(back_s, 2)
    )
    assert back_s < LEASE + 1.5  # the lease, and room for GlusterFS and a loaded machine


def _names(slot: pathlib.Path) -> list[str]:
    try:
        return os.listdir(slot)
    except FileNotFoundError:
        return []


def _both_at_once(spans: list[tuple[float, float, str]], host_of: dict[str, str]) -> bool:
    """Whether a job of A and a job of B ever ran at the same moment (the cap was shared)."""
    events = sorted(
        [(st, 1, host_of[j]) for st, _, j in spans] + [(e, -1, host_of[j]) for _, e, j in spans]
    )
    running = {"a": 0, "b": 0}
    for _, step, host in events:
        running[host] += step
        if running["a"] and running["b"]:
            return True
    return False
