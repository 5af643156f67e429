"""
W1 (push rates) and W2 (drain rates), measured together: the queues that W1
fills are the ones W2 drains, so no job is pushed only to be drained.

Push rates are jobs / wall time of a loop in this process. Drain rates are
measured by worker processes started after the jobs are queued: jobs / (first
worker's start - last worker's end), start-up and imports not counted. Each
push is timed too: W5 compares push latency under load with these.
"""

from __future__ import annotations

import asyncio
import pathlib
import shutil
import time

import fsjobs
from benchmarks import hueyq
from benchmarks.common import Samples, Settings, drain_rate, log
from benchmarks.limitq import LimitQueue

NOOP = fsjobs.Job(func="benchmarks.noop")


def measure(s: Settings, samples: Samples) -> None:
    """`s.repeat` runs of everything; FileHuey once, as its drain is quadratic (~1 min)."""
    for r in range(s.repeat):
        began = time.monotonic()
        run = s.base / f"rates{r}"
        _limit(run, s.jobs, samples)
        asyncio.run(_fsjobs(run, s.jobs, samples))
        if r == 0 and hueyq.installed():
            _huey(run / "huey", s.jobs, samples)
        shutil.rmtree(run)
        log(f"w1,w2: run {r + 1} of {s.repeat} took {time.monotonic() - began:.0f} s")


# -- the limit queue, with and without fsync -----------------------------------------


def _limit(run: pathlib.Path, n: int, samples: Samples) -> None:
    for durable, name in ((True, "limit"), (False, "limit_nofsync")):
        queue = LimitQueue(run / name, durable=durable)
        start = time.perf_counter()
        durations = []
        for i in range(n):
            t = time.perf_counter()
            queue.push(i)
            durations.append(time.perf_counter() - t)
        samples.add(f"w1.{name}.push", n / (time.perf_counter() - start))
        samples.add_percentiles(f"w1.{name}.push_latency", durations)
        queue.close()
        rate, _ = drain_rate("limit-drain", n, [{"root": run / name, "durable": durable}])
        samples.add(f"w2.{name}.drain1", rate)
    # the same drain by two processes, from a queue filled without timing
    queue = LimitQueue(run / "limit2")
    for first in range(0, n, 1000):
        queue.push_many(range(first, min(n, first + 1000)))
    queue.close()
    params = [{"root": run / "limit2", "durable": True, "share": k / 2} for k in range(2)]
    samples.add("w2.limit.drain2", drain_rate("limit-drain", n, params)[0])


# -- fsjobs ---------------------------------------------------------------------------


async def _fsjobs(run: pathlib.Path, n: int, samples: Samples) -> None:
    queue = fsjobs.Queue(run / "one")
    start = time.perf_counter()
    durations = []
    for _ in range(n):
        t = time.perf_counter()
        await queue.push(NOOP)
        durations.append(time.perf_counter() - t)
    samples.add("w1.fsjobs.push", n / (time.perf_counter() - start))
    samples.add_percentiles("w1.fsjobs.push_latency", durations)
    queue.close()
    samples.add("w2.fsjobs.drain1", drain_rate("fsjobs-drain", n, [{"root": run / "one"}])[0])

    for batch in (100, 1000):
        queue = fsjobs.Queue(run / f"batch{batch}")
        start = time.perf_counter()
        for _ in range(n // batch):
            await queue.push_many([NOOP] * batch)
        samples.add(
            f"w1.fsjobs.push_many{batch}", n // batch * batch / (time.perf_counter() - start)
        )
        queue.close()
    params = [{"root": run / "batch100"}] * 2
    samples.add("w2.fsjobs.drain2", drain_rate("fsjobs-drain", n // 100 * 100, params)[0])


# -- huey's FileHuey --------------------------------------------------------------------


def _huey(path: pathlib.Path, n: int, samples: Samples) -> None:
    start = time.perf_counter()
    hueyq.push(str(path), n)
    samples.add("w1.huey.push", n / (time.perf_counter() - start))
    params = [{"path": str(path), "jobs": n}]
    samples.add("w2.huey.drain1", drain_rate("huey-drain", n, params)[0])
