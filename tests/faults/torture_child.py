"""
The processes of the kill -9 torture test (T1)::

    python -m tests.faults.torture_child worker ROOT --log LOG [--concurrency N]
    python -m tests.faults.torture_child pusher ROOT --log LOG --oracle FILE --seed S
    python -m tests.faults.torture_child workflows ROOT --log LOG --oracle FILE --seed S

``worker`` runs a `Worker` with the `step` task until SIGTERM. ``step`` appends
``"start <job_id> <attempt> <pid> <monotonic>"`` to the execution log when it starts and
``"end ..."`` when it ends (returns or is cancelled), so the test can see whether two
executions of one job overlapped. CLOCK_MONOTONIC is shared by all processes of the host.

``pusher`` pushes until killed: single pushes, push_many batches of 2-5, and single
pushes with a unique key from a small pool. Before a push it appends
``"start <tag>"`` per job to the oracle file, after it returns ``"ack <tag> <job_id>"``
(for a unique key that was taken, the id is the owner's). A push that raises is
recorded as ``"fail <tag> <repr>"`` (but for the ids a PushError says were published)
and the pusher goes on. Tags are ``<pid>-<i>`` and are
also the jobs' kwargs, so the test can tell a job that committed without an ack from
one that was never pushed. Lines are appended with one ``write`` to an ``O_APPEND`` file:
a SIGKILL never tears them.

``workflows`` pushes graphs instead (tests/faults/test_kill9_workflows.py): workflows
shaped as a diamond, a fan-in of 3 to 6 parents, or a chain of 3, acknowledged as
``"ack <tag> wf <workflow id>"``; and pairs of single pushes, a job then one that
depends on it (`Job.depends_on`), each acknowledged as ``"ack <tag> job <id>"``. A
step's kwargs ``tag`` is ``<tag>/<step>``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import os
import random
import signal
import time

import fsjobs
from tests.integration.tasks import append_line
from tests.integration.worker_main import remember_early_signals, run_until_signalled

STEP = "tests.faults.torture_child.step"
QUEUE = "default"
MAX_ATTEMPTS = 20


async def step(ctx: fsjobs.Context, log: str, tag: str, ms: int) -> str:
    """One execution: logged at start and at end, `ms` milliseconds apart."""
    append_line(log, f"start {ctx.job_id} {ctx.attempt} {os.getpid()} {time.monotonic():.6f}\n")
    try:
        await asyncio.sleep(ms / 1000)
    finally:
        append_line(log, f"end {ctx.job_id} {ctx.attempt} {os.getpid()} {time.monotonic():.6f}\n")
    return tag


async def work(args: argparse.Namespace) -> None:
    queue = fsjobs.Queue(args.root, QUEUE)
    try:
        queue.task(name=STEP)(step)
        worker = fsjobs.Worker(queue, concurrency=args.concurrency, handle_signals=True)
        await run_until_signalled(worker)
    finally:
        queue.close()


def _job(log: str, tag: str, rng: random.Random, key: str | None = None) -> fsjobs.Job:
    return fsjobs.Job(
        func=STEP,
        kwargs={"log": log, "tag": tag, "ms": rng.randint(0, 40)},
        max_attempts=MAX_ATTEMPTS,
        unique_key=key,
    )


async def _push(queue: fsjobs.Queue, jobs: list[fsjobs.Job]) -> list[str]:
    while True:
        try:
            return [await queue.push(jobs[0])] if len(jobs) == 1 else await queue.push_many(jobs)
        except fsjobs.UniqueKeyBusy:
            await asyncio.sleep(0.01)  # the contract: busy means try again


async def push(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    queue = fsjobs.Queue(args.root, QUEUE)
    pid = os.getpid()
    i = 0
    try:
        while True:
            r = rng.random()
            n = 1 if r < 0.6 else rng.randint(2, 5)
            key = f"key-{rng.randrange(8)}" if r < 0.15 else None
            tags = [f"{pid}-{i + j}" for j in range(n)]
            i += n
            jobs = [_job(args.log, tag, rng, key) for tag in tags]
            append_line(args.oracle, "".join(f"start {tag}\n" for tag in tags))
            try:
                ids = await _push(queue, jobs)
            except Exception as exc:  # reported to the test, which fails on it
                published = exc.published_ids if isinstance(exc, fsjobs.PushError) else []
                why = repr(exc).replace("\n", " ")
                append_line(
                    args.oracle,
                    "".join(f"ack {t} {j}\n" for t, j in zip(tags, published, strict=False))
                    + "".join(f"fail {tag} {why}\n" for tag in tags[len(published) :]),
                )
            else:
                acks = zip(tags, ids, strict=True)
                append_line(args.oracle, "".join(f"ack {t} {j}\n" for t, j in acks))
            await asyncio.sleep(args.pause)  # the push rate; not synchronisation
    finally:
        queue.close()


def _shape(rng: random.Random) -> list[tuple[str, list[str]]]:
    """The steps of a random workflow: (name, after)."""
    r = rng.random()
    if r < 0.4:
        return [("top", []), ("left", ["top"]), ("right", ["top"]), ("bottom", ["left", "right"])]
    if r < 0.7:
        parents = [f"p{i}" for i in range(rng.randint(3, 6))]
        return [*((p, []) for p in parents), ("join", parents)]
    return [("a", []), ("b", ["a"]), ("c", ["b"])]


async def push_workflows(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    queue = fsjobs.Queue(args.root, QUEUE)
    pid = os.getpid()
    try:
        for i in itertools.count():
            tag = f"{pid}-{i}"
            if rng.random() < 0.25:  # a job, then one that depends on it
                parent_id = None
                for part in "ab":
                    append_line(args.oracle, f"start {tag}{part}\n")
                    job = _job(args.log, f"{tag}{part}/{part}", rng)
                    if parent_id is not None:
                        job = job.with_depends_on([parent_id])
                    try:
                        parent_id = await queue.push(job)
                    except Exception as exc:  # reported to the test, which fails on it
                        why = repr(exc).replace("\n", " ")
                        append_line(args.oracle, f"fail {tag}{part} {why}\n")
                        break
                    append_line(args.oracle, f"ack {tag}{part} job {parent_id}\n")
            else:
                wf = fsjobs.Workflow("torture")
                for name, after in _shape(rng):
                    wf.add(name, _job(args.log, f"{tag}/{name}", rng), after=after)
                append_line(args.oracle, f"start {tag}\n")
                try:
                    wf_id = await queue.push_workflow(wf)
                except Exception as exc:
                    why = repr(exc).replace("\n", " ")
                    append_line(args.oracle, f"fail {tag} {why}\n")
                else:
                    append_line(args.oracle, f"ack {tag} wf {wf_id}\n")
            await asyncio.sleep(args.pause)  # the push rate; not synchronisation
    finally:
        queue.close()


def main(argv: list[str] | None = None) -> None:
    remember_early_signals()
    parser = argparse.ArgumentParser(prog="python -m tests.faults.torture_child")
    parser.add_argument("mode", choices=["worker", "pusher", "workflows"])
    parser.add_argument("root")
    parser.add_argument("--log", required=True)
    parser.add_argument("--oracle")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--pause", type=float, default=0.02)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR, format="%(asctime)s %(process)d %(message)s")
    if args.mode == "worker":
        asyncio.run(work(args))
    else:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        asyncio.run(push(args) if args.mode == "pusher" else push_workflows(args))


if __name__ == "__main__":
    main()
