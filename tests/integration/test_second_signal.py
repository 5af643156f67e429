"""
A second SIGTERM to a real ``fsjobs worker`` during its grace period gives the
running job back at once and the process exits 0 (DESIGN.md §9.7, "Fitting in").
"""

from __future__ import annotations

import pathlib
import signal
import subprocess
import textwrap

import pytest

import fsjobs
from fsjobs import Job, JobStatus

from .harness import EXIT_TIMEOUT, Children, until, wait_registered

pytestmark = [pytest.mark.slow, pytest.mark.asyncio]

TASKS = textwrap.dedent(
    """
    import asyncio
    import os
    import time

    import fsjobs

    queue = fsjobs.Queue(os.environ["FSJOBS_ROOT"])

    @queue.task(name="sigtasks.block")
    async def block(started: str, release: str) -> str:
        with open(started, "a") as f:
            f.write("started\\n")
        give_up = time.monotonic() + 300
        while not os.path.exists(release) and time.monotonic() < give_up:
            await asyncio.sleep(0.01)
        return "released"
    """
)


def cli_worker(children: Children, root: pathlib.Path, *args: str) -> subprocess.Popen[bytes]:
    return children.start("fsjobs", "--root", root, "worker", "sigtasks", *args)


async def test_a_second_sigterm_releases_the_running_job_and_exits_0(
    root: pathlib.Path, queue: fsjobs.Queue, children: Children, tmp_path: pathlib.Path
) -> None:
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "sigtasks.py").write_text(TASKS)
    children.env = dict(
        children.env,
        FSJOBS_ROOT=str(root),
        PYTHONPATH=f"{modules}:{children.env['PYTHONPATH']}",
    )
    started, release = tmp_path / "started", tmp_path / "release"
    worker = cli_worker(children, root, "--concurrency", "1")
    await wait_registered(root, children, [worker])
    job_id = await queue.push(
        Job(func="sigtasks.block", kwargs={"started": str(started), "release": str(release)})
    )
    await until(started.exists, "the job to start", children, [worker])

    worker.send_signal(signal.SIGTERM)
    # The grace period has begun: the worker waits for its running job.
    await until(
        lambda: "waiting up to" in children.stderr(worker), "the grace period", children, [worker]
    )
    worker.send_signal(signal.SIGTERM)
    try:
        code = worker.wait(timeout=EXIT_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the worker did not exit after a second SIGTERM\n{children.report()}")
    assert code == 0, children.report()
    assert "SIGTERM again, releasing running jobs" in children.stderr(worker)
    state = await queue.get(job_id)
    assert (state.status, state.attempts, state.max_attempts) == (JobStatus.PENDING, 0, 1)

    release.touch()
    second = cli_worker(children, root, "--until-empty")
    assert second.wait(timeout=EXIT_TIMEOUT) == 0, children.report()
    state = await queue.get(job_id)
    assert (state.status, state.attempts, state.result) == (JobStatus.COMPLETED, 1, "released")
