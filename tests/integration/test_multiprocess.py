"""
Multi-process tests: real worker and pusher processes sharing one queue root.

Child processes are started with ``subprocess.Popen([sys.executable, "-m", ...])``:
workers run ``tests.integration.worker_main``, pushers ``tests.integration.pusher``,
and jobs run the tasks of ``tests.integration.tasks``, which append one line per
execution to a log file. The tests never sleep in place of synchronisation: they
poll a condition (the log, the queue's counts, a file) with a deadline.
"""

from __future__ import annotations

import collections
import itertools
import os
import pathlib
import random
import signal
import subprocess
import time
from collections.abc import Callable

import pytest

import fsjobs
from fsjobs import Job, JobStatus

from .harness import (
    DEADLINE,
    EXIT_TIMEOUT,
    Children,
    all_final,
    nonzero_counts,
    record_job,
    stop_workers,
    until,
    wait_registered,
)
from .tasks import BLOCK, RECORD, read_log

pytestmark = [pytest.mark.slow, pytest.mark.asyncio]


# -- 1. many workers, every job exactly once ------------------------------------------


async def test_three_workers_drain_1000_jobs_exactly_once(
    root: pathlib.Path, queue: fsjobs.Queue, children: Children, tmp_path: pathlib.Path
) -> None:
    log = tmp_path / "log"
    workers = [children.worker(root, concurrency=4) for _ in range(3)]
    await wait_registered(root, children, workers)

    jobs = [record_job(log, n) for n in range(1000)]
    ids: list[str] = []
    for start in range(0, len(jobs), 100):  # the workers claim while we push
        ids += await queue.push_many(jobs[start : start + 100])
    assert len(set(ids)) == 1000

    await until(all_final(queue, 1000), "1000 finished jobs", children, workers)
    stop_workers(children, workers)

    assert await nonzero_counts(queue) == {JobStatus.COMPLETED: 1000}
    runs = read_log(log)
    per_job = collections.Counter(job_id for job_id, *_ in runs)
    assert set(per_job) == set(ids), "a job ran that was not pushed, or one never ran"
    assert [job_id for job_id, n in per_job.items() if n != 1] == [], "jobs ran more than once"
    assert {attempt for _, attempt, _, _ in runs} == {1}
    assert {pid for _, _, pid, _ in runs} <= {w.pid for w in workers}
    for n, job_id in enumerate(ids):
        state = await queue.get(job_id)
        assert (state.status, state.attempts, state.result) == (JobStatus.COMPLETED, 1, n)


# -- 2. a worker killed mid-job ------------------------------------------------------------


@pytest.mark.parametrize("max_attempts", [2, 1], ids=["runs-again", "worker-lost"])
async def test_job_of_killed_worker_runs_again_or_fails_as_worker_lost(
    max_attempts: int,
    root: pathlib.Path,
    queue: fsjobs.Queue,
    children: Children,
    tmp_path: pathlib.Path,
) -> None:
    log, release = tmp_path / "log", tmp_path / "release"
    a = children.worker(root, concurrency=1)
    await wait_registered(root, children, [a])
    job = Job(
        func=BLOCK, kwargs={"log": str(log), "release": str(release)}, max_attempts=max_attempts
    )
    job_id = await queue.push(job)

    def ran(attempt: int, worker: subprocess.Popen[bytes]) -> Callable[[], bool]:
        return lambda: (job_id, attempt, worker.pid) in {r[:3] for r in read_log(log)}

    await until(ran(1, a), "worker A to start the job", children, [a])
    state = await queue.get(job_id)
    assert (state.status, state.attempts) == (JobStatus.RUNNING, 1)

    a.kill()
    assert a.wait(timeout=EXIT_TIMEOUT) == -signal.SIGKILL
    assert (await queue.get(job_id)).status is JobStatus.RUNNING  # nobody has noticed yet

    b = children.worker(root, concurrency=1)
    if max_attempts == 2:
        await until(ran(2, b), "worker B to run the job again", children, [b])
        release.touch()
        state = await queue.wait(job_id, timeout=DEADLINE)
        assert (state.status, state.attempts, state.max_attempts) == (JobStatus.COMPLETED, 2, 2)
        assert state.result == job_id
        assert [r[:3] for r in read_log(log)] == [(job_id, 1, a.pid), (job_id, 2, b.pid)]
    else:
        with pytest.raises(fsjobs.JobFailed) as failed:
            await queue.wait(job_id, timeout=DEADLINE)
        state = failed.value.state
        assert (state.status, state.attempts, state.max_attempts) == (JobStatus.FAILED, 1, 1)
        assert state.error is not None and state.error.type == "WorkerLost"
        assert [r[:3] for r in read_log(log)] == [(job_id, 1, a.pid)], "the last attempt re-ran"
    stop_workers(children, [b])
    assert await nonzero_counts(queue) == {state.status: 1}


# -- 3. concurrent pushes of one unique key ---------------------------------------------


async def test_concurrent_pushes_of_a_unique_key_create_one_job(
    root: pathlib.Path, queue: fsjobs.Queue, children: Children, tmp_path: pathlib.Path
) -> None:
    """Six processes push the same key at once (to two queues: keys are global), for 4 keys."""
    n_procs, rounds = 6, 4
    sync = tmp_path / "sync"
    sync.mkdir()
    log = tmp_path / "log"
    pushers = [
        children.pusher(
            "unique",
            root,
            "--log",
            log,
            "--sync",
            sync,
            "--rounds",
            str(rounds),
            "--queue",
            ("default", "other")[i % 2],
        )
        for i in range(n_procs)
    ]
    for r in range(rounds):

        def all_ready(r: int = r) -> bool:
            return len([n for n in os.listdir(sync) if n.startswith(f"ready.{r}.")]) == n_procs

        await until(all_ready, f"all pushers ready for round {r}", children, pushers)
        (sync / f"go.{r}").touch()

        def all_pushed(r: int = r) -> bool:
            return all(len(children.stdout(p)) > r for p in pushers)

        await until(all_pushed, f"all pushes of round {r}", children, pushers)
        answers = {children.stdout(p)[r] for p in pushers}
        assert len({a.split()[1] for a in answers}) == 1, f"round {r}: different ids {answers}"
        (job_id,) = {a.split()[1] for a in answers}

        states = await queue.list_jobs(queue="*", limit=1000)
        assert len(states) == r + 1, [(s.id, s.unique_key, s.queue) for s in states]
        keyed = [s for s in states if s.unique_key == f"round-{r}"]
        assert [(s.id, s.status) for s in keyed] == [(job_id, JobStatus.PENDING)]
        assert await nonzero_counts(queue, "*") == {JobStatus.PENDING: r + 1}

    for p in pushers:
        assert p.wait(timeout=EXIT_TIMEOUT) == 0, children.report()


# -- 4. pushers and workers at the same time ---------------------------------------------


async def test_concurrent_pushers_and_workers_lose_nothing(
    root: pathlib.Path, queue: fsjobs.Queue, children: Children, tmp_path: pathlib.Path
) -> None:
    log = tmp_path / "log"
    workers = [children.worker(root, concurrency=4) for _ in range(2)]
    await wait_registered(root, children, workers)
    pushers = [
        children.pusher("batch", root, "--log", log, "--count", "200"),
        children.pusher("batch", root, "--log", log, "--count", "200", "--batch", "7"),
        children.pusher("batch", root, "--log", log, "--count", "200", "--batch", "50"),
    ]
    for p in pushers:
        assert p.wait(timeout=DEADLINE) == 0, children.report()
    acked = [job_id for p in pushers for job_id in children.stdout(p)]
    assert len(acked) == 600 and len(set(acked)) == 600

    await until(all_final(queue, len(acked)), "every pushed job to finish", children, workers)
    stop_workers(children, workers)

    assert await nonzero_counts(queue) == {JobStatus.COMPLETED: 600}
    per_job = collections.Counter(job_id for job_id, *_ in read_log(log))
    assert set(per_job) == set(acked)
    assert [job_id for job_id, n in per_job.items() if n != 1] == []


# -- 5. a pusher killed mid-push ------------------------------------------------------------


@pytest.mark.parametrize("seed", range(10))
async def test_pusher_killed_mid_push_leaves_no_half_job(
    seed: int,
    root: pathlib.Path,
    queue: fsjobs.Queue,
    children: Children,
    tmp_path: pathlib.Path,
) -> None:
    rng = random.Random(seed)
    log, oracle = tmp_path / "log", tmp_path / "oracle"
    pusher = children.pusher("forever", root, "--log", log, "--oracle", oracle)
    at_least = rng.randint(3, 60)

    def acks() -> int:
        return oracle.read_text().count("ack ") if oracle.exists() else 0

    await until(lambda: acks() >= at_least, f"{at_least} acknowledged pushes", children, [pusher])
    time.sleep(rng.uniform(0, 0.02))  # not synchronisation: lands the kill anywhere in a push
    pusher.kill()
    assert pusher.wait(timeout=EXIT_TIMEOUT) == -signal.SIGKILL

    started: dict[int, str | None] = {}
    acked: dict[int, str] = {}
    text = oracle.read_text()
    for line in text.splitlines()[: text.count("\n")]:
        kind, i, value = line.split()
        if kind == "start":
            started[int(i)] = None if value == "-" else value
        else:
            acked[int(i)] = value
    in_flight = [i for i in started if i not in acked]
    assert len(in_flight) <= 1 and set(acked) <= set(started)

    # Every acknowledged push is there, whole, and pending.
    for i, job_id in acked.items():
        state = await queue.get(job_id)
        assert (state.status, state.func, state.kwargs) == (
            JobStatus.PENDING,
            RECORD,
            {"log": str(log), "n": i},
        )
        assert state.unique_key == started[i]

    # Everything visible is readable: a marker without a readable job would be
    # counted by counts() and skipped by list_jobs().
    counts = await nonzero_counts(queue)
    visible = await queue.list_jobs(status=JobStatus.PENDING, limit=10_000)
    assert counts == {JobStatus.PENDING: len(visible)}, (counts, len(visible))
    for state in visible:
        again = await queue.get(state.id)
        assert again.func == RECORD and set(again.kwargs) == {"log", "n"}
    visible_ids = {s.id for s in visible}
    assert set(acked.values()) <= visible_ids
    extra = [s for s in visible if s.id not in set(acked.values())]
    # At most the push that was in flight committed without being acknowledged.
    assert [s.kwargs["n"] for s in extra] in ([], in_flight), (extra, in_flight)

    # The in-flight push's unique key is not stuck: a new push of it returns the
    # job if that push committed, or creates one if it did not.
    key = started[in_flight[0]] if in_flight else None
    if key is not None:
        job_id = await queue.push(record_job(log, in_flight[0], unique_key=key))
        if extra:
            assert job_id == extra[0].id
        else:
            assert job_id not in visible_ids
        keyed = [s for s in await queue.list_jobs(limit=10_000) if s.unique_key == key]
        assert [(s.id, s.status) for s in keyed] == [(job_id, JobStatus.PENDING)]


# -- 6. priorities, two queues, one worker ---------------------------------------------------


async def test_worker_runs_each_queue_in_priority_order(
    root: pathlib.Path, queue: fsjobs.Queue, children: Children, tmp_path: pathlib.Path
) -> None:
    """Jobs pushed before the worker starts; it serves two queues, one job at a time."""
    log = tmp_path / "log"
    priorities = {
        "alpha": [3, -2, 0, 3, -7, 0, 2**31 - 1, -(2**31), 1, -2, 0],
        "beta": [0, 5, -1, 5, 0, -100, 7, -1],
    }
    expected: dict[str, list[str]] = {}
    for name, prios in priorities.items():
        q = fsjobs.Queue(root, name=name)
        try:
            ids = [await q.push(record_job(log, n, priority=p)) for n, p in enumerate(prios)]
        finally:
            q.close()
        # lower values first; equal priorities in push order
        expected[name] = [ids[n] for n in sorted(range(len(prios)), key=lambda n: prios[n])]

    worker = children.worker(root, concurrency=1, queues=("alpha", "beta"))
    total = sum(map(len, priorities.values()))
    await until(lambda: len(read_log(log)) >= total, "every job to run", children, [worker])
    stop_workers(children, [worker])

    assert await nonzero_counts(queue, "*") == {JobStatus.COMPLETED: total}
    runs = read_log(log)
    assert len(runs) == total
    for name in priorities:
        assert [job_id for job_id, _, _, q in runs if q == name] == expected[name], name
    # The worker takes turns among its queues while both have jobs (round-robin).
    both = 2 * min(map(len, priorities.values()))
    order = [q for *_, q in runs][:both]
    assert all(a != b for a, b in itertools.pairwise(order)), order
