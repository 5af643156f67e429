"""A frozen worker (SIGSTOP: alive, lock held, heartbeat stopped) is rescued after its lease."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import time

import pytest

import fsjobs
from fsjobs import Job, JobStatus

from .harness import DEADLINE, Children, nonzero_counts, stop_workers, until, wait_registered
from .tasks import BLOCK, RECORD, read_log

pytestmark = [pytest.mark.slow, pytest.mark.asyncio]
LEASE = 2.0


def worker_id_of(root: pathlib.Path, proc: subprocess.Popen[bytes]) -> str:
    (lock,) = root.glob(f"workers/*-{proc.pid}-*.lock")
    return lock.name.removesuffix(".lock")


async def test_frozen_worker_is_rescued_after_the_lease_and_its_late_result_is_discarded(
    root: pathlib.Path, queue: fsjobs.Queue, children: Children, tmp_path: pathlib.Path
) -> None:
    """
    Worker A freezes mid-job holding its lock; B rescues the job after the lease and
    runs it; when A wakes, its late outcome is not published and A keeps working.
    """
    log, release = tmp_path / "log", tmp_path / "release"
    a = children.worker(root, concurrency=1, lease=LEASE)
    await wait_registered(root, children, [a])
    a_id = worker_id_of(root, a)
    job_id = await queue.push(
        Job(func=BLOCK, kwargs={"log": str(log), "release": str(release)}, max_attempts=3)
    )

    def ran(attempt: int, proc: subprocess.Popen[bytes]) -> bool:
        return (job_id, attempt, proc.pid) in {r[:3] for r in read_log(log)}

    await until(lambda: ran(1, a), "worker A to start the job", children, [a])
    os.kill(a.pid, signal.SIGSTOP)
    frozen_at = time.monotonic()
    try:
        b = children.worker(root, concurrency=1, lease=LEASE)
        await wait_registered(root, children, [b])
        b_id = worker_id_of(root, b)
        await until(lambda: ran(2, b), "worker B to rescue and rerun the job", children, [b])
        rescue_latency = time.monotonic() - frozen_at
        release.touch()
        state = await queue.wait(job_id, timeout=DEADLINE)
        assert (state.status, state.attempts, state.worker) == (JobStatus.COMPLETED, 2, b_id)
    finally:
        os.kill(a.pid, signal.SIGCONT)

    # A wakes up: its attempt finds the release file and returns, or A notices its
    # marker is gone. Either way nothing of A's may be published.
    later = await queue.push(Job(func=RECORD, kwargs={"log": str(log), "n": 7}))
    assert (await queue.wait(later, timeout=DEADLINE)).result == 7
    state = await queue.get(job_id)
    assert (state.status, state.attempts, state.worker) == (JobStatus.COMPLETED, 2, b_id)
    assert await nonzero_counts(queue) == {JobStatus.COMPLETED: 2}
    zombie_commits = sum(1 for p in root.glob("queues/*/completed/*/*") if p.name == job_id) - 1
    assert zombie_commits == 0
    assert a_id != b_id
    stop_workers(children, [a, b])
    print(f"FIGURES frozen lease_s={LEASE} rescue_latency_s={rescue_latency:.2f} zombie_commits=0")
