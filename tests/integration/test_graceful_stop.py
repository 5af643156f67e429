"""SIGTERM: a worker stops claiming, lets running jobs finish, and gives back the rest."""

from __future__ import annotations

import pathlib
import signal
import subprocess

import pytest

import fsjobs
from fsjobs import Job, JobStatus

from .harness import DEADLINE, EXIT_TIMEOUT, Children, until, wait_registered
from .tasks import BLOCK, RECORD, read_log

pytestmark = [pytest.mark.slow, pytest.mark.asyncio]


async def test_sigterm_lets_the_running_job_finish_and_claims_nothing_new(
    root: pathlib.Path, queue: fsjobs.Queue, children: Children, tmp_path: pathlib.Path
) -> None:
    """Within the grace period the running job completes; jobs pushed after SIGTERM wait."""
    log, release = tmp_path / "log", tmp_path / "release"
    worker = children.worker(root, concurrency=2, grace=DEADLINE)
    await wait_registered(root, children, [worker])
    running = await queue.push(Job(func=BLOCK, kwargs={"log": str(log), "release": str(release)}))
    await until(lambda: any(r[0] == running for r in read_log(log)), "the job to start", children)

    worker.send_signal(signal.SIGTERM)
    later = await queue.push(Job(func=RECORD, kwargs={"log": str(log)}))
    release.touch()
    assert worker.wait(timeout=EXIT_TIMEOUT) == 0, children.report()

    assert (await queue.get(running)).status is JobStatus.COMPLETED
    state = await queue.get(later)
    assert (state.status, state.attempts) == (JobStatus.PENDING, 0)
    assert later not in {r[0] for r in read_log(log)}


async def test_a_job_still_running_after_the_grace_period_is_given_back_unharmed(
    root: pathlib.Path, queue: fsjobs.Queue, children: Children, tmp_path: pathlib.Path
) -> None:
    """Past the grace period the task is cancelled and the job released, its attempt given back."""
    log, release = tmp_path / "log", tmp_path / "release"
    first = children.worker(root, concurrency=1, grace=0.2)
    await wait_registered(root, children, [first])
    job_id = await queue.push(
        Job(func=BLOCK, kwargs={"log": str(log), "release": str(release)}, max_attempts=1)
    )
    await until(lambda: any(r[0] == job_id for r in read_log(log)), "the job to start", children)

    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=EXIT_TIMEOUT) == 0, children.report()
    state = await queue.get(job_id)
    assert (state.status, state.attempts) == (JobStatus.PENDING, 0), "released, not failed"

    release.touch()
    second = children.worker(root, concurrency=1)
    state = await queue.wait(job_id, timeout=DEADLINE)
    assert (state.status, state.attempts, state.max_attempts) == (JobStatus.COMPLETED, 1, 1)
    second.send_signal(signal.SIGTERM)
    try:
        assert second.wait(timeout=EXIT_TIMEOUT) == 0
    except subprocess.TimeoutExpired:
        pytest.fail(children.report())
