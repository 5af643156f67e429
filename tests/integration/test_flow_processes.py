"""
Periodic ticks, pause and resume, and queue-wide caps, with real worker processes.

* 3 workers keeping a 1 s ``every=`` schedule for about 5 ticks give exactly one job per
  tick: no tick twice, none skipped while they ran.
* A job pushed to a paused queue stays pending while workers run and completes after
  resume; the reaction times (pause -> last claim, resume -> claim) are measured.
* ``concurrency=2`` with 3 workers at concurrency 4: the tasks' own start and end times
  never overlap more than 2 deep.
* ``rate="3/s"``: at most 3 claims in each second-long window.
* A worker killed with SIGKILL while it holds the only slot: the slot comes back within
  the lease, and the next job runs.

Figures are printed as ``FIGURES flow ...`` lines. Nothing sleeps in place of
synchronisation: the tests poll a condition with a deadline.
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

import pytest

import fsjobs
from fsjobs import Job, JobStatus
from fsjobs._schedule import parse_tick_key

from .flow_tasks import SPAN, TICK, max_overlap, quiet_for, read_spans, slot_dirs, starts
from .harness import Children, all_final, stop_workers, until, wait_registered
from .tasks import BLOCK, RECORD, read_log

pytestmark = [pytest.mark.slow, pytest.mark.asyncio]

#: the lease of the workers of the slot-recovery test (their rescue looks every second)
LEASE = 3.0
#: ticks the periodic test waits for
TICKS = 5


async def test_three_workers_push_one_job_per_tick(
    root: pathlib.Path, queue: fsjobs.Queue, children: Children, tmp_path: pathlib.Path
) -> None:
    log = tmp_path / "ticks.log"
    tick = ["--tick-every", "1", "--tick-log", str(log)]
    workers = [children.worker(root, concurrency=2, extra=tick) for _ in range(3)]
    await wait_registered(root, children, workers)

    async def ticks() -> dict[dt.datetime, list[fsjobs.JobState]]:
        by_tick: dict[dt.datetime, list[fsjobs.JobState]] = collections.defaultdict(list)
        for state in await queue.list_jobs(limit=1000, queue="*"):
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
    skipped = [
        a + dt.timedelta(seconds=1)
        for a, b in itertools.pairwise(seconds)
        if b - a > dt.timedelta(seconds=1)
    ]
    runs = collections.Counter(
        job_id for job_id, _ in (line.split() for line in log.read_text().splitlines())
    )
    statuses = collections.Counter(j.status for jobs in by_tick.values() for j in jobs)
    assert duplicates == 0, by_tick
    assert not skipped, f"ticks skipped while workers ran: {skipped}"
    assert all(jobs[0].scheduled_at == t for t, jobs in by_tick.items()), "scheduled_at = tick"
    assert max(runs.values()) == 1, "each tick's job ran once"
    pushers = {j.worker for jobs in by_tick.values() for j in jobs}
    files = sorted(p.name for p in (root / "periodic").iterdir())
    assert files == [f"{TICK}.json"]
    print(
        f"\nFIGURES flow periodic workers=3 ticks={len(by_tick)} duplicates={duplicates} "
        f"skipped={len(skipped)} runs={sum(runs.values())} ran_on_workers={len(pushers)} "
        f"statuses={dict(statuses)}"
    )


async def test_pause_holds_jobs_pending_while_workers_run_and_resume_runs_them(
    root: pathlib.Path, queue: fsjobs.Queue, children: Children, tmp_path: pathlib.Path
) -> None:
    log = tmp_path / "log"
    workers = [children.worker(root, concurrency=4) for _ in range(3)]
    await wait_registered(root, children, workers)
    # A stream of short jobs keeps the workers claiming; pause in the middle of it.
    jobs = await queue.push_many(
        [Job(func=SPAN, kwargs={"log": str(log), "hold": 0.02}) for _ in range(600)]
    )
    await until(lambda: len(read_spans(log)) >= 50, "the workers to get going", children, workers)
    paused_at = time.time()
    await queue.pause()
    await until(quiet_for(log, 0.5), "claims to stop and running jobs to end", children, workers)
    stopped = len(starts(log))
    held = await queue.push(Job(func=RECORD, kwargs={"log": str(tmp_path / "held"), "n": 1}))
    # Stays pending while the workers keep looking (several looks of 100 ms each).
    watch_until = time.monotonic() + 2.0
    while time.monotonic() < watch_until:
        children.check_alive(workers)
        assert (await queue.get(held)).status is JobStatus.PENDING
        assert len(starts(log)) == stopped, "nothing claimed while paused"
        await _pause(0.05)
    last_claim = max(starts(log))
    resumed_at = time.time()
    await queue.resume()
    await until(lambda: len(starts(log)) > stopped, "a claim after resume", children, workers)
    resume_to_claim = min(starts(log)[stopped:]) - resumed_at
    state = await queue.wait(held, timeout=60)
    assert state.status is JobStatus.COMPLETED
    pause_to_last = last_claim - paused_at
    await until(all_final(queue, len(jobs) + 1), "every job to end", children, workers)
    stop_workers(children, workers)
    assert pause_to_last < 1.0, "workers stop claiming within a few looks"
    assert resume_to_claim < 2.0
    print(
        f"\nFIGURES flow pause workers=3 pause_to_last_claim_s={pause_to_last:.3f} "
        f"resume_to_claim_s={resume_to_claim:.3f} held_pending_for_s=2.0"
    )


async def _pause(seconds: float) -> None:
    await asyncio.sleep(seconds)  # the pace of a watch loop, not a synchronisation


async def test_concurrency_cap_holds_across_worker_processes(
    root: pathlib.Path, queue: fsjobs.Queue, children: Children, tmp_path: pathlib.Path
) -> None:
    log = tmp_path / "spans"
    await queue.configure(concurrency=2)
    workers = [children.worker(root, concurrency=4) for _ in range(3)]
    await wait_registered(root, children, workers)
    total = 30
    await queue.push_many(
        [Job(func=SPAN, kwargs={"log": str(log), "hold": 0.15}) for _ in range(total)]
    )
    await until(all_final(queue, total), "every job to end", children, workers)
    spans = read_spans(log)
    overlap = max_overlap(spans)
    pids = {line.split()[3] for line in log.read_text().splitlines() if line.startswith("start")}
    stop_workers(children, workers)
    assert len(spans) == total
    assert overlap == 2, f"at most 2 at once, and the cap is used: {overlap}"
    assert slot_dirs(root) == [], "every slot was given back"
    print(
        f"\nFIGURES flow concurrency cap=2 workers=3x4 jobs={total} max_overlap={overlap} "
        f"worker_processes_used={len(pids)}"
    )


async def test_rate_caps_claims_per_window(
    root: pathlib.Path, queue: fsjobs.Queue, children: Children, tmp_path: pathlib.Path
) -> None:
    log = tmp_path / "log"
    rate = 3
    await queue.configure(rate=f"{rate}/s")
    workers = [children.worker(root, concurrency=4) for _ in range(3)]
    await wait_registered(root, children, workers)
    total = 15
    ids = await queue.push_many(
        [Job(func=RECORD, kwargs={"log": str(log), "n": n}) for n in range(total)]
    )
    tokens: dict[str, set[str]] = collections.defaultdict(set)
    rate_dir = root / "queues" / "default" / "rate"

    def done_and_tokens() -> bool:  # the windows' tokens, seen before claimers remove them
        for window in os.listdir(rate_dir) if rate_dir.exists() else []:
            try:
                tokens[window].update(os.listdir(rate_dir / window))
            except FileNotFoundError:
                continue
        return len(read_log(log)) >= total

    await until(done_and_tokens, "every job to run", children, workers)
    await until(all_final(queue, total), "every job to end", children, workers)
    stop_workers(children, workers)
    per_window = collections.Counter(
        int(s.started_at.timestamp()) for s in [await queue.get(j) for j in ids] if s.started_at
    )
    assert max(per_window.values()) <= rate, per_window
    assert all(len(t) <= rate and t <= {str(k) for k in range(rate)} for t in tokens.values())
    assert sum(len(t) for t in tokens.values()) >= total, "no claim without a token"
    print(
        f"\nFIGURES flow rate={rate}/s workers=3x4 jobs={total} "
        f"claims_per_window={sorted(per_window.values(), reverse=True)} "
        f"tokens_taken={sum(len(t) for t in tokens.values())}"
    )


async def test_a_killed_workers_slot_comes_back_within_the_lease(
    root: pathlib.Path, queue: fsjobs.Queue, children: Children, tmp_path: pathlib.Path
) -> None:
    log, release = tmp_path / "log", tmp_path / "release"
    await queue.configure(concurrency=1)
    a = children.worker(root, concurrency=2, lease=LEASE)
    await wait_registered(root, children, [a])
    blocked = await queue.push(
        Job(func=BLOCK, kwargs={"log": str(log), "release": str(release)}, max_attempts=2)
    )
    await until(lambda: bool(read_log(log)), "worker A to start the job", children, [a])
    assert len(slot_dirs(root)) == 1
    b = children.worker(root, concurrency=2, lease=LEASE)
    await wait_registered(root, children, [b])
    later = await queue.push(Job(func=RECORD, kwargs={"log": str(tmp_path / "later"), "n": 1}))
    await _pause(0.5)
    assert (await queue.get(later)).status is JobStatus.PENDING, "the one slot is A's"
    os.kill(a.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    a.wait()
    await until(
        lambda: not slot_dirs(root) or _other_owner(root, a.pid),
        "the slot to come back",
        children,
        [b],
    )
    slot_back = time.monotonic() - killed_at
    release.touch()
    assert (await queue.wait(later, timeout=60)).status is JobStatus.COMPLETED
    assert (await queue.wait(blocked, timeout=60)).status is JobStatus.COMPLETED
    stop_workers(children, [b])
    assert slot_back < LEASE, f"the slot came back after {slot_back:.2f} s"
    assert slot_dirs(root) == []
    print(f"\nFIGURES flow slot_recovery kill=SIGKILL lease_s={LEASE} slot_back_s={slot_back:.2f}")


def _other_owner(root: pathlib.Path, dead_pid: int) -> bool:
    """The slot is held again, by another worker than the dead one."""
    top = root / "queues" / "default" / "slots"
    for slot in top.iterdir() if top.exists() else []:
        for owner in os.listdir(slot) if slot.exists() else []:
            if f"-{dead_pid}-" not in owner:
                return True
    return False
