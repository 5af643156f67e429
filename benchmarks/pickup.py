"""
W3: how soon an idle worker starts a job that was just pushed.

Latency = the task's first statement's ``time.time()`` - ``time.time()`` when
``push`` returned (the peers' definition: what an application waits after its
push is acknowledged). Negative values are possible in one process: the
worker may start the job before the push coroutine has resumed.

The worker first runs one job, then sits idle (1 s, or the CPU window), then
`pickups` jobs are pushed 20 ms apart. Its CPU use while idle is its
utime + stime from /proc over `s.idle` seconds, all threads included.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import time
from collections.abc import Awaitable, Callable, Iterator

import fsjobs
from benchmarks import noop
from benchmarks.common import Samples, Settings, cpu_seconds, retried, serving
from benchmarks.limitq import LimitQueue
from benchmarks.stamps import read_stamps, stamp_to, wait_for

GAP = 0.02  # seconds between pushes
Push = Callable[[int], Awaitable[object]]


def measure(s: Settings, samples: Samples) -> None:
    asyncio.run(_same_process(s, samples))
    asyncio.run(_other_process(s, samples, "w3.other", "fsjobs", s.base / "w3-other"))
    asyncio.run(_other_process(s, samples, "w3.limit", "limit", s.base / "w3-limit"))
    if s.base_b is not None:
        root, root_b = s.base / "w3-mount", s.base_b / "w3-mount"
        asyncio.run(_other_process(s, samples, "w3.mount", "fsjobs", root, root_b))


async def _same_process(s: Settings, samples: Samples) -> None:
    """(a) The worker runs on the pushing process's event loop."""
    stamps = s.stamps / "w3-same"
    stamp_to(stamps)
    queue = fsjobs.Queue(s.base / "w3-same")
    worker = fsjobs.Worker(queue, handle_signals=False)
    running = asyncio.create_task(worker.run())
    try:
        push: Push = lambda i: queue.push(noop.stamp.job(i=i))  # noqa: E731
        await _warm_up(push, stamps, 1.0)
        returned = await _push_spaced(push, s.pickups, samples)
        await _gather(stamps, returned, samples, "w3.same")
    finally:
        worker.stop()
        await running
        queue.close()


async def _other_process(
    s: Settings,
    samples: Samples,
    key: str,
    kind: str,
    root: pathlib.Path,
    root_b: pathlib.Path | None = None,
) -> None:
    """(b) A worker process on this host; (c) with `root_b`, on a second mount."""
    stamps = s.stamps / key
    with _pusher(kind, root) as push:
        params = {"root": root_b or root, "stamps": stamps, "durable": True}
        with serving(f"{kind}-serve", **params) as workers:
            await _warm_up(push, stamps, 1.0)
            pid = workers[0]["pid"]
            before = cpu_seconds(pid)
            await asyncio.sleep(s.idle)
            samples.add(f"{key}.idle_cpu", 100 * (cpu_seconds(pid) - before) / s.idle)
            returned = await _push_spaced(push, s.pickups, samples)
            await _gather(stamps, returned, samples, key)


@contextlib.contextmanager
def _pusher(kind: str, root: pathlib.Path) -> Iterator[Push]:
    """An awaitable push of job `i`, to fsjobs or to the limit queue."""
    if kind == "fsjobs":
        queue = fsjobs.Queue(root)
        yield lambda i: queue.push(noop.stamp.job(i=i))
        queue.close()
        return
    limit = LimitQueue(root)

    async def push(i: int) -> None:
        limit.push(i)

    yield push
    limit.close()


async def _warm_up(push: Push, stamps: os.PathLike[str], idle: float) -> None:
    """One job run to the end (imports, first listing), then `idle` seconds of nothing."""
    await push(-1)
    await asyncio.to_thread(wait_for, stamps, 1, 60)
    await asyncio.sleep(idle)


async def _push_spaced(push: Push, n: int, samples: Samples) -> list[float]:
    """Push jobs 0..n-1 at fixed 20 ms ticks; when each push returned (time.time())."""
    returned = []
    start = time.monotonic()
    for i in range(n):
        await asyncio.sleep(max(0.0, start + i * GAP - time.monotonic()))
        await retried(lambda i=i: push(i), samples)
        returned.append(time.time())
    return returned


async def _gather(stamps: pathlib.Path, returned: list[float], samples: Samples, key: str) -> None:
    await asyncio.to_thread(wait_for, stamps, len(returned) + 1, 60)
    starts = read_stamps(stamps)
    samples.add_percentiles(key, [starts[i] - t for i, t in enumerate(returned)])
