"""
W5: push latency as an application sees it while two worker processes drain.

This process pushes `stream` jobs one at a time, as fast as it can, and times
each ``await queue.push``; two serving worker processes claim and run them
meanwhile, so pushes compete with claims for the same directories and the
disk. The figures compare with W1, where the same pushes ran with no worker,
and with the limit queue doing the same with two of its own workers.
"""

from __future__ import annotations

import asyncio
import time

import fsjobs
from benchmarks import noop
from benchmarks.common import Samples, Settings, retried, serving
from benchmarks.limitq import LimitQueue
from benchmarks.stamps import wait_for


def measure(s: Settings, samples: Samples) -> None:
    asyncio.run(_fsjobs(s, samples))
    _limit(s, samples)


async def _fsjobs(s: Settings, samples: Samples) -> None:
    root, stamps = s.base / "w5", s.stamps / "w5"
    queue = fsjobs.Queue(root)
    with serving("fsjobs-serve", count=2, root=root, stamps=stamps) as workers:
        durations = []
        for i in range(s.stream):
            t = time.perf_counter()
            await retried(lambda i=i: queue.push(noop.stamp.job(i=i)), samples)
            durations.append(time.perf_counter() - t)
        await asyncio.to_thread(wait_for, stamps, s.stream, 120)
    queue.close()
    samples.add_percentiles("w5.fsjobs.push_latency", durations)
    samples.add("w5.fsjobs.share", min(w["ran"] for w in workers) / s.stream)


def _limit(s: Settings, samples: Samples) -> None:
    root, stamps = s.base / "w5-limit", s.stamps / "w5-limit"
    queue = LimitQueue(root)
    with serving("limit-serve", count=2, root=root, stamps=stamps, durable=True):
        durations = []
        for i in range(s.stream):
            t = time.perf_counter()
            queue.push(i)
            durations.append(time.perf_counter() - t)
        wait_for(stamps, s.stream, 120)
    queue.close()
    samples.add_percentiles("w5.limit.push_latency", durations)
