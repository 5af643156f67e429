"""SyncQueue from a plain blocking script, while a worker process runs the jobs."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

import fsjobs
from fsjobs import JobStatus

from .harness import DEADLINE, Children, stop_workers, wait_registered
from .tasks import read_log

pytestmark = [pytest.mark.slow, pytest.mark.asyncio]


async def test_a_blocking_script_pushes_waits_cancels_and_retries_with_a_worker_process(
    root: pathlib.Path, queue: fsjobs.Queue, children: Children, tmp_path: pathlib.Path
) -> None:
    """
    A script with no event loop of its own: its jobs run in the worker process, four
    threads wait on them at once, watch() sees a job start, cancel() stops it while it
    runs, a failure raises JobFailed and retry() queues it again.
    """
    log, release = tmp_path / "log", tmp_path / "release"
    worker = children.worker(root, concurrency=4)
    await wait_registered(root, children, [worker])

    proc = subprocess.run(
        [sys.executable, "-m", "tests.integration.sync_client", str(root), str(log), str(release)],
        env=children.env,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr + children.report()
    seen = json.loads(proc.stdout)

    assert seen["results"] == list(range(12))
    assert seen["result_of_first"] == 0
    ran_in = {pid for job_id, _, pid, _ in read_log(log) if job_id in seen["ids"]}
    assert ran_in == {worker.pid}, "the jobs ran in the worker process, not in the script"
    assert seen["watched"][-1] == "running"
    assert seen["cancelled"] is True
    assert (await queue.get(seen["blocked"])).status is JobStatus.CANCELLED
    assert seen["failed_with"] == "fsjobs.errors.UnknownTask"
    assert seen["retried_max_attempts"] == 2
    with pytest.raises(fsjobs.JobFailed) as failed:
        await queue.wait(seen["broken"], timeout=DEADLINE)
    assert failed.value.state.attempts == 2, "the retry ran once more"
    assert seen["completed"] == 12
    assert seen["listed"] == 14
    stop_workers(children, [worker])
