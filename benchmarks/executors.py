"""
The process executor against the thread executor, in one run on one machine::

    python -m benchmarks.executors [--jobs 2000] [--cpu-seconds 10] [--dir DIR]

1. No-op jobs per second: a sync task that does nothing, pushed in one batch
   and run by a warm worker (its threads, or its children, already started) of
   concurrency 4, durable and not (``durable=False`` shows the executors' own
   cost without the fsyncs). Also the first job's latency with a cold pool.
2. Heartbeat jitter: two CPU-bound sync jobs (pure Python loops) run while the
   worker beats every 0.2 s (lease 1.2 s); each beat's delay past its due time
   is recorded (p50, p99, max), beside an idle worker's as a baseline. In
   threads, the jobs hold the GIL the heartbeat thread needs; in children, they
   only compete for the CPU.

The task functions are at the top level: the children import them from here.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import sys
import tempfile
import time
import typing

import fsjobs
from fsjobs import store as store_module

LEASE = 1.2  # the heartbeat beats every lease / 6 = 0.2 s


def noop() -> None:
    """Does nothing."""


def spin(seconds: float) -> int:
    """Burn CPU in pure Python for `seconds`."""
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        for _ in range(10_000):
            n += 1
    return n


async def throughput(root: str, executor: str, jobs: int, durable: bool) -> tuple[float, float]:
    """(jobs per second once warm, seconds until the first job of a cold worker ended)."""
    queue = fsjobs.Queue(root, name=f"{executor}-{durable}", durable=durable)
    task = queue.task(name=f"benchmarks.executors.noop.{executor}.{durable}", executor=executor)(
        noop
    )
    worker = fsjobs.Worker(queue, concurrency=4)
    serving = asyncio.create_task(worker.run())
    try:
        begun = time.perf_counter()
        await queue.wait(await task.enqueue(), timeout=120)
        cold = time.perf_counter() - begun
        for job_id in await queue.push_many([task.job() for _ in range(8)]):  # warm every slot
            await queue.wait(job_id, timeout=120)
        ids = await queue.push_many([task.job() for _ in range(jobs)])
        begun = time.perf_counter()
        for job_id in ids:
            await queue.wait(job_id, timeout=600)
        return jobs / (time.perf_counter() - begun), cold
    finally:
        worker.stop()
        await serving
        queue.close()


async def jitter(root: str, executor: str | None, seconds: float) -> list[float]:
    """
    Seconds each heartbeat came late while two CPU-bound jobs ran in `executor`
    (None: while the worker sat idle for as long, the baseline).
    """
    beats: list[float] = []
    real_beat = store_module.Store.beat

    def timed_beat(hb_fd: int, counter: int) -> None:
        beats.append(time.monotonic())
        real_beat(hb_fd, counter)

    queue = fsjobs.Queue(root, name=f"jitter-{executor}")
    store_module.Store.beat = staticmethod(timed_beat)  # type: ignore[method-assign]
    try:
        worker = fsjobs.Worker(queue, concurrency=2, lease=LEASE)
        serving = asyncio.create_task(worker.run())
        if executor is None:
            await asyncio.sleep(seconds)
        else:
            task = queue.task(name=f"benchmarks.executors.spin.{executor}", executor=executor)(spin)
            ids = await queue.push_many([task.job(seconds=seconds) for _ in range(2)])
            for job_id in ids:
                await queue.wait(job_id, timeout=seconds * 10 + 60)
        worker.stop()
        await serving
    finally:
        store_module.Store.beat = staticmethod(real_beat)  # type: ignore[method-assign]
        queue.close()
    interval = LEASE / 6
    return [max(0.0, b - a - interval) for a, b in itertools.pairwise(beats)]


def percentile(values: typing.Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def main(args: argparse.Namespace) -> None:
    print(f"python {sys.version.split()[0]}, {args.jobs} no-op jobs, concurrency 4")
    for durable in (True, False):
        for executor in ("thread", "process"):
            with tempfile.TemporaryDirectory(dir=args.dir) as root:
                rate, cold = await throughput(root, executor, args.jobs, durable)
            print(
                f"  {executor:<8} durable={durable!s:<5}  {rate:8.0f} jobs/s"
                f"   first job of a cold worker: {cold * 1000:6.1f} ms"
            )
    print(f"heartbeat every {LEASE / 6:.1f} s while two CPU-bound jobs run {args.cpu_seconds} s")
    for executor in (None, "thread", "process"):
        with tempfile.TemporaryDirectory(dir=args.dir) as root:
            late = await jitter(root, executor, args.cpu_seconds)
        p50, p99 = statistics.median(late) * 1000, percentile(late, 99) * 1000
        print(
            f"  {executor or 'idle':<8} {len(late)} beats, late by p50 {p50:.1f} ms, "
            f"p99 {p99:.1f} ms, max {max(late) * 1000:.1f} ms"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m benchmarks.executors")
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--cpu-seconds", type=float, default=10.0)
    parser.add_argument("--dir", default=None, help="where the scratch roots go")
    asyncio.run(main(parser.parse_args()))
