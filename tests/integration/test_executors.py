"""
Executors with real processes: the process executor's limits, its children's
lives, per-queue concurrency, plain functions under ``allow_import``, logs and
progress from worker processes.
"""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import time

import pytest

import fsjobs
from fsjobs import Backoff, Job, JobStatus, Limit

from . import exec_tasks, plain_probe
from .harness import DEADLINE, EXIT_TIMEOUT, Children, until, wait_registered

pytestmark = [pytest.mark.slow, pytest.mark.asyncio]

MiB = 2**20
EXEC_TASKS = "tests.integration.exec_tasks"


def exec_worker(
    children: Children, root: pathlib.Path, *args: str, executor: str = "process"
) -> subprocess.Popen[bytes]:
    return children.start("tests.integration.exec_worker", root, "--executor", executor, *args)


def alive(pid: int) -> bool:
    """Whether any process (a zombie too) has this pid."""
    return os.path.exists(f"/proc/{pid}")


def logged_pids(log: pathlib.Path) -> dict[str, int]:
    """job id -> pid of the process that ran it, from `exec_tasks.pid_then_block`'s log."""
    if not log.exists():
        return {}
    text = log.read_text()
    lines = text.splitlines()[: text.count("\n")]
    return {job_id: int(pid) for job_id, _, pid in (line.split() for line in lines)}


async def started(
    children: Children, log: pathlib.Path, job_id: str, workers: list[subprocess.Popen[bytes]]
) -> int:
    """Wait until `pid_then_block` of `job_id` runs; its pid."""
    await until(lambda: job_id in logged_pids(log), f"job {job_id} to start", children, workers)
    return logged_pids(log)[job_id]


def blocking(log: pathlib.Path, release: pathlib.Path, **options: object) -> Job:
    return Job.from_func(
        exec_tasks.pid_then_block,
        {"log": str(log), "release": str(release)},
        executor="process",
        **options,
    )


# -- limits -----------------------------------------------------------------------------------


async def test_an_allocation_past_the_memory_limit_fails_with_memory_error_then_the_next_job_runs(
    root: pathlib.Path, queue: fsjobs.Queue, children: Children
) -> None:
    """256 MiB under a 128 MiB limit raises MemoryError in the task; the worker goes on."""
    worker = exec_worker(children, root, "--concurrency", "1")
    await wait_registered(root, children, [worker])
    limit = Limit(Limit.Type.MEMORY, 128 * MiB)
    greedy = await queue.push(
        Job.from_func(exec_tasks.hog, {"mib": 256}, limits=[limit], executor="process")
    )
    modest = await queue.push(
        Job.from_func(exec_tasks.hog, {"mib": 16}, limits=[limit], executor="process")
    )
    with pytest.raises(fsjobs.JobFailed) as failed:
        await queue.wait(greedy, timeout=DEADLINE)
    error = failed.value.state.error
    assert error is not None and error.type == "MemoryError", error
    assert str(128 * MiB) in error.message
    state = await queue.wait(modest, timeout=DEADLINE)
    assert state.result == 16 * MiB
    assert state.worker == failed.value.state.worker, "the same worker ran both"


async def test_a_sync_task_over_its_time_is_killed_long_before_it_would_end(
    root: pathlib.Path, queue: fsjobs.Queue, children: Children, tmp_path: pathlib.Path
) -> None:
    """timeout=1 on a task that would wait 120 s: timed_out soon, and its child is gone."""
    log, never = tmp_path / "log", tmp_path / "never"
    worker = exec_worker(children, root)
    await wait_registered(root, children, [worker])
    job_id = await queue.push(blocking(log, never, timeout=1))
    pid = await started(children, log, job_id, [worker])
    begun = time.monotonic()
    with pytest.raises(fsjobs.JobFailed) as failed:
        await queue.wait(job_id, timeout=DEADLINE)
    assert failed.value.state.status is JobStatus.TIMED_OUT
    assert time.monotonic() - begun < 60, "killed, not waited for (it would wait 120 s)"
    assert not alive(pid), "the child that ran it was killed"


async def test_a_task_that_sigkills_its_process_fails_that_attempt_and_is_retried(
    root: pathlib.Path, queue: fsjobs.Queue, children: Children
) -> None:
    """The first attempt dies by SIGKILL (an error naming it); the second completes."""
    worker = exec_worker(children, root)
    await wait_registered(root, children, [worker])
    job_id = await queue.push(
        Job.from_func(
            exec_tasks.kill_self_on_first_attempt,
            executor="process",
            max_attempts=2,
            backoff=Backoff(initial=0, jitter=0),
        )
    )
    state = await queue.wait(job_id, timeout=DEADLINE)
    assert (state.result, state.attempts) == ("attempt 2 survived", 2)
    errors = [e.data["error"] for e in await queue.history(job_id) if "error" in e.data]
    assert len(errors) == 1
    error = errors[0]
    assert isinstance(error, dict) and error["type"] == "fsjobs.errors.ChildDied"
    assert "killed by SIGKILL" in str(error["message"])


async def test_cancelling_a_running_process_job_leaves_no_process_with_its_childs_pid(
    root: pathlib.Path, queue: fsjobs.Queue, children: Children, tmp_path: pathlib.Path
) -> None:
    log, never = tmp_path / "log", tmp_path / "never"
    worker = exec_worker(children, root)
    await wait_registered(root, children, [worker])
    job_id = await queue.push(blocking(log, never))
    pid = await started(children, log, job_id, [worker])
    assert await queue.cancel(job_id, timeout=DEADLINE)
    assert (await queue.get(job_id)).status is JobStatus.CANCELLED
    assert not alive(pid)


async def test_children_are_reused_and_never_more_than_the_concurrency(
    root: pathlib.Path, queue: fsjobs.Queue, children: Children
) -> None:
    """Twelve jobs, concurrency 2: at most two distinct children ran them."""
    worker = exec_worker(children, root, "--concurrency", "2")
    await wait_registered(root, children, [worker])
    ids = await queue.push_many([Job.from_func(exec_tasks.pid) for _ in range(12)])
    pids = {(await queue.wait(i, timeout=DEADLINE)).result for i in ids}
    assert 1 <= len(pids) <= 2
    assert worker.pid not in pids, "they ran in children, not in the worker"


# -- children die with their worker ------------------------------------------------------------


async def test_a_child_kills_its_task_when_its_workers_heartbeat_is_older_than_2_3_of_the_lease(
    root: pathlib.Path, queue: fsjobs.Queue, children: Children, tmp_path: pathlib.Path
) -> None:
    """A frozen worker (SIGSTOP) with a 3 s lease: its child is gone while it is frozen."""
    log, never = tmp_path / "log", tmp_path / "never"
    worker = exec_worker(children, root, "--lease", "3")
    await wait_registered(root, children, [worker])
    job_id = await queue.push(blocking(log, never))
    pid = await started(children, log, job_id, [worker])
    worker.send_signal(signal.SIGSTOP)
    try:
        await until(lambda: not alive(pid), "the child to kill itself", children)
    finally:
        worker.send_signal(signal.SIGCONT)
    assert "killing itself: its worker's heartbeat" in children.stderr(worker)


async def test_a_child_of_a_healthy_worker_runs_past_two_thirds_of_the_lease(
    root: pathlib.Path, queue: fsjobs.Queue, children: Children
) -> None:
    """Lease 1.5 s: a 3 s task completes, as the heartbeats keep reaching its child."""
    worker = exec_worker(children, root, "--lease", "1.5")
    await wait_registered(root, children, [worker])
    job_id = await queue.push(Job.from_func(exec_tasks.sleep, {"seconds": 3}, executor="process"))
    assert (await queue.wait(job_id, timeout=DEADLINE)).result == "slept"
    assert "killing itself" not in children.stderr(worker)


async def test_a_child_dies_with_its_worker(
    root: pathlib.Path, queue: fsjobs.Queue, children: Children, tmp_path: pathlib.Path
) -> None:
    log, never = tmp_path / "log", tmp_path / "never"
    worker = exec_worker(children, root)
    await wait_registered(root, children, [worker])
    job_id = await queue.push(blocking(log, never))
    pid = await started(children, log, job_id, [worker])
    worker.kill()
    worker.wait()
    await until(lambda: not alive(pid), "the orphaned child to die", children)


# -- per-queue concurrency, from the command line ----------------------------------------------


def overlap(events: list[tuple[float, int]]) -> int:
    """The most intervals open at once, from (time, +1 start / -1 end) events."""
    most = now = 0
    for _, change in sorted(events, key=lambda e: (e[0], e[1])):  # an end before a start
        now += change
        most = max(most, now)
    return most


async def test_per_queue_concurrency_is_never_exceeded(
    root: pathlib.Path, children: Children, tmp_path: pathlib.Path
) -> None:
    """``fsjobs worker --queues a=2,b=1``: at most 2 jobs of a and 1 of b at once, 3 in all."""
    log = tmp_path / "stamps"
    a, b = fsjobs.Queue(root, "a"), fsjobs.Queue(root, "b")
    for q in (a, b):
        await q.push_many(
            Job.from_func(exec_tasks.stamp, {"log": str(log), "label": f"{q.name}{i}", "hold": 0.3})
            for i in range(6)
        )
    worker = children.start(
        "fsjobs", "worker", EXEC_TASKS, "--root", root, "--queues", "a=2,b=1",
        "--allow-import", EXEC_TASKS, "--until-empty",
    )  # fmt: skip
    assert worker.wait(timeout=EXIT_TIMEOUT) == 0, children.report()
    assert children.stdout(worker) == ["ran 12 jobs"]
    per_queue: dict[str, list[tuple[float, int]]] = {"a": [], "b": []}
    for line in log.read_text().splitlines():
        kind, label, at = line.split()
        per_queue[label[0]].append((float(at), 1 if kind == "start" else -1))
    assert len(per_queue["a"]) == len(per_queue["b"]) == 12
    assert overlap(per_queue["a"]) == 2, "a ran two at a time, never more"
    assert overlap(per_queue["b"]) == 1
    assert overlap(per_queue["a"] + per_queue["b"]) <= 3


# -- plain functions ---------------------------------------------------------------------------


async def test_a_plain_function_runs_only_under_a_prefix_that_covers_it(
    root: pathlib.Path, queue: fsjobs.Queue, children: Children, tmp_path: pathlib.Path
) -> None:
    """
    ``tests.integration.plain_pro`` is not a component of its name: UnknownTask,
    no retry, and its module is never imported. ``tests.integration`` covers it.
    """
    trace = tmp_path / "imports"
    children.env["FSJOBS_TEST_IMPORT_TRACE"] = str(trace)
    job_id = await queue.push(Job.from_func(plain_probe.greet, {"name": "ann"}, max_attempts=3))

    def worker(prefix: str) -> None:
        proc = children.start(
            "fsjobs", "worker", EXEC_TASKS, "--root", root, "--until-empty",
            "--allow-import", prefix,
        )  # fmt: skip
        assert proc.wait(timeout=EXIT_TIMEOUT) == 0, children.report()

    worker("tests.integration.plain_pro")
    state = await queue.get(job_id)
    assert (state.status, state.attempts) == (JobStatus.FAILED, 1)
    assert state.error is not None and state.error.type == "fsjobs.errors.UnknownTask"
    assert not trace.exists(), "the module was imported without a prefix covering it"

    await queue.retry(job_id)
    worker("tests.integration")
    assert (await queue.get(job_id)).result == "hello ann"
    assert trace.exists()


# -- logs and progress --------------------------------------------------------------------------


async def test_the_logs_of_two_concurrent_async_tasks_do_not_mix(
    root: pathlib.Path, queue: fsjobs.Queue, children: Children, tmp_path: pathlib.Path
) -> None:
    """Each job's log holds its own prints and log records, and nothing of the other's."""
    meeting = tmp_path / "meeting"
    meeting.mkdir()
    worker = exec_worker(children, root, "--concurrency", "2")
    await wait_registered(root, children, [worker])
    ids = {
        me: await queue.push(
            Job.from_func(exec_tasks.chatter, {"me": me, "meeting": str(meeting), "lines": 50})
        )
        for me in ("ann", "bob")
    }
    for job_id in ids.values():
        await queue.wait(job_id, timeout=DEADLINE)
    for me, other in (("ann", "bob"), ("bob", "ann")):
        text = await queue.logs(ids[me])
        assert [line for line in text.splitlines() if "prints" in line] == [
            f"{me} prints line {i}" for i in range(50)
        ]
        assert sum(f"INFO chatter: {me} logs line" in line for line in text.splitlines()) == 50
        assert other not in text
    assert "prints line" not in children.stderr(worker) + "".join(children.stdout(worker))


@pytest.mark.parametrize("executor", ["thread", "process"])
async def test_a_sync_tasks_plain_progress_call_is_recorded(
    root: pathlib.Path,
    queue: fsjobs.Queue,
    children: Children,
    tmp_path: pathlib.Path,
    executor: str,
) -> None:
    """``ctx.progress(50, ...)`` without await, in a thread or a child: get() shows it."""
    release = tmp_path / "release"
    worker = exec_worker(children, root, executor=executor)
    await wait_registered(root, children, [worker])
    job_id = await queue.push(
        Job.from_func(exec_tasks.progress_then_block, {"release": str(release)})
    )

    async def reported() -> bool:
        state = await queue.get(job_id)
        return (state.progress, state.progress_message) == (50, "half way")

    await until(reported, "the progress report", children, [worker])
    assert (await queue.get(job_id)).status is JobStatus.RUNNING
    release.touch()
    assert (await queue.wait(job_id, timeout=DEADLINE)).result == "done"
