"""
A pushing process for the integration tests::

    python -m tests.integration.pusher unique ROOT --log LOG --sync DIR --rounds R --queue Q
        [--details]
    python -m tests.integration.pusher batch ROOT --log LOG --count N [--batch B] [--queue Q]
        [--first F]
    python -m tests.integration.pusher forever ROOT --log LOG --oracle FILE

``unique``: for each round r, announce readiness with the file ``DIR/ready.<r>.<pid>``,
wait for ``DIR/go.<r>``, push one job with unique key ``round-<r>``, print
``"<r> <id>"``; with ``--details``, ``"<r> <id> <busy> <start> <end>"``: how many times
the push was answered `UniqueKeyBusy` and retried, and `time.monotonic()` when the push
began and when it returned (all processes of a host share that clock: a test can see
whether two pushes overlapped).

``batch``: push N jobs for the `record` task (one by one, or B at a time with
push_many) and print each acknowledged id as soon as its push returned. The jobs'
``n`` run from F (``--first``, default 0) to F + N - 1.

``forever``: push until killed. Before each push it appends ``"start <i> <key>"``
to the oracle file, after it ``"ack <i> <id>"``; every other job has the unique
key ``key-<pid>-<i>``. The oracle lives outside the queue root, so what it says
was acknowledged is what the queue must hold.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pathlib
import time

import fsjobs

from .tasks import RECORD, append_line

#: How long a pusher waits for the test to let it go.
SYNC_TIMEOUT = 60.0


def record_job(log: str, n: int, unique_key: str | None = None) -> fsjobs.Job:
    return fsjobs.Job(func=RECORD, kwargs={"log": log, "n": n}, unique_key=unique_key)


async def push_retrying(queue: fsjobs.Queue, job: fsjobs.Job, busy: list[int] | None = None) -> str:
    """
    push(), retrying UniqueKeyBusy, which the contract says is retryable; each
    UniqueKeyBusy is counted in ``busy[0]`` if given.
    """
    give_up = time.monotonic() + SYNC_TIMEOUT
    while True:
        try:
            return await queue.push(job)
        except fsjobs.UniqueKeyBusy:
            if busy is not None:
                busy[0] += 1
            if time.monotonic() > give_up:
                raise
            await asyncio.sleep(0.01)


async def wait_for_file(path: pathlib.Path) -> None:
    give_up = time.monotonic() + SYNC_TIMEOUT
    while not path.exists():
        if time.monotonic() > give_up:
            raise TimeoutError(f"{path} did not appear within {SYNC_TIMEOUT} s")
        await asyncio.sleep(0.002)


async def unique(queue: fsjobs.Queue, args: argparse.Namespace) -> None:
    sync = pathlib.Path(args.sync)
    for r in range(args.rounds):
        (sync / f"ready.{r}.{os.getpid()}").touch()
        await wait_for_file(sync / f"go.{r}")
        busy, start = [0], time.monotonic()
        job_id = await push_retrying(queue, record_job(args.log, r, unique_key=f"round-{r}"), busy)
        details = f" {busy[0]} {start:.6f} {time.monotonic():.6f}" if args.details else ""
        print(f"{r} {job_id}{details}", flush=True)


async def batch(queue: fsjobs.Queue, args: argparse.Namespace) -> None:
    end = args.first + args.count
    for start in range(args.first, end, args.batch):
        jobs = [record_job(args.log, n) for n in range(start, min(start + args.batch, end))]
        ids = [await queue.push(jobs[0])] if len(jobs) == 1 else await queue.push_many(jobs)
        for job_id in ids:
            print(job_id, flush=True)


async def forever(queue: fsjobs.Queue, args: argparse.Namespace) -> None:
    i = 0
    while True:
        key = f"key-{os.getpid()}-{i}" if i % 2 else None
        append_line(args.oracle, f"start {i} {key or '-'}\n")
        job_id = await queue.push(record_job(args.log, i, unique_key=key))
        append_line(args.oracle, f"ack {i} {job_id}\n")
        i += 1


async def run(args: argparse.Namespace) -> None:
    queue = fsjobs.Queue(args.root, name=args.queue)
    try:
        await {"unique": unique, "batch": batch, "forever": forever}[args.mode](queue, args)
    finally:
        queue.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.integration.pusher")
    parser.add_argument("mode", choices=["unique", "batch", "forever"])
    parser.add_argument("root")
    parser.add_argument("--log", required=True, help="the log file of the pushed jobs")
    parser.add_argument("--queue", default="default")
    parser.add_argument("--sync", help="unique: the directory of ready/go files")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--details", action="store_true", help="unique: busy answers, times")
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--first", type=int, default=0, help="batch: the first job's n")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--oracle", help="forever: the file of started and acknowledged pushes")
    asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
