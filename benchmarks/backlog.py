"""
W4: does a large backlog slow down the jobs that are due? And the plot's sweep.

Two backlogs: jobs waiting in another queue of the same root, and jobs
scheduled a year ahead in the same queue. Each is built with push_many in
batches of 1,000 through a ``durable=False`` queue (the files are the same;
only the fsyncs are skipped, to save minutes), then ``os.sync()``; nothing is
measured while building. Beside each backlog (and an empty store) two arms:

* push+drain: a serving worker process is up (``Worker.run()``), this process
  pushes `backlog_jobs` jobs one at a time; rate = jobs / (last job's start -
  first push). The worker's peak RSS (VmHWM) is read when it stops.
* drain: `backlog_jobs` due jobs are queued, then a worker process drains them
  (``run_until_empty``, as W2): jobs / worker's run time, including its first
  look at the store, which is where a backlog would cost.

After one unrecorded warm-up round, every store (empty; 1k, 10k, 100k
scheduled ahead, the sizes of the plot; 100k in another queue) is measured in
rounds, in turn. The limit queue is swept through the same sizes in one growing
store (drain arm only: it has no worker features a backlog could slow).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import itertools
import os
import pathlib
import shutil
import time

import fsjobs
from benchmarks import noop
from benchmarks.common import Samples, Settings, drain_rate, log, retried, serving
from benchmarks.limitq import FAR_AHEAD_MS, LimitQueue
from benchmarks.stamps import wait_for

SWEEP = (0, 1000, 10_000, 100_000)
BATCH = 1000
_calls = itertools.count()


def sizes(s: Settings) -> list[int]:
    """The backlog sizes measured: the sweep up to `s.backlog`; --quick only 0 and it."""
    if s.quick:
        return [0, s.backlog]
    return [b for b in SWEEP if b < s.backlog] + [s.backlog]


def measure(s: Settings, samples: Samples) -> None:
    # The first round in a process runs ~25 % slower (cold caches, new threads).
    once = dataclasses.replace(s, repeat=1)
    asyncio.run(_arms(s.base / "w4-warm", dataclasses.replace(once, backlog_jobs=100), Samples()))
    stores = []
    for size in sizes(s):
        root = s.base / f"w4-ahead-{size}"
        asyncio.run(_grow(root, "default", size, ahead=True))
        stores.append((root, f"w4.ahead.{size}"))
    root = s.base / "w4-other"
    asyncio.run(_grow(root, "backlog", s.backlog, ahead=False))
    stores.append((root, f"w4.other.{s.backlog}"))
    # Rounds of every store in turn, the order rotating, so that the slow first
    # measurements and other work on the machine weigh on each about equally.
    for r in range(s.repeat):
        k = r % len(stores)
        for root, key in stores[k:] + stores[:k]:
            asyncio.run(_arms(root, once, samples, key))
    for root, _ in stores:
        _remove(root)
    _limit_sweep(s, samples)


def _remove(root: pathlib.Path) -> None:
    """Delete a backlog now, not at the end: 100k jobs are ~1 GB of small files."""
    began = time.monotonic()
    shutil.rmtree(root)
    log(f"w4: {root.name} removed in {time.monotonic() - began:.0f} s")


async def _grow(root: pathlib.Path, queue_name: str, want: int, ahead: bool) -> None:
    """A store at `root` with `want` jobs waiting in `queue_name`."""
    began = time.monotonic()
    queue = fsjobs.Queue(root, queue_name, durable=False)
    when = dt.datetime.now(dt.UTC) + dt.timedelta(days=365) if ahead else None
    job = fsjobs.Job(func="benchmarks.noop", scheduled_at=when)
    for first in range(0, want, BATCH):
        await queue.push_many([job] * min(BATCH, want - first))
    queue.close()
    os.sync()
    where = "scheduled ahead" if ahead else f"in queue {queue_name!r}"
    log(f"w4: backlog of {want:,} {where} built in {time.monotonic() - began:.0f} s")


async def _arms(root: pathlib.Path, s: Settings, samples: Samples, key: str = "warm") -> None:
    """Both arms, `s.repeat` times each, beside whatever `root` holds."""
    queue = fsjobs.Queue(root)
    n = s.backlog_jobs
    stamps = s.stamps / f"{key}.{next(_calls)}"  # job numbers start at 0 again
    with serving("fsjobs-serve", root=root, stamps=stamps) as workers:
        for rep in range(s.repeat):
            first = rep * n
            start = time.time()
            for i in range(first, first + n):
                await retried(lambda i=i: queue.push(noop.stamp.job(i=i)), samples)
            starts = await asyncio.to_thread(wait_for, stamps, first + n, 120)
            samples.add(f"{key}.live", n / (max(starts.values()) - start))
    samples.add(f"{key}.live_rss", workers[0]["rss_kb"] / 1024)
    for _ in range(s.repeat):
        await queue.push_many([fsjobs.Job(func="benchmarks.noop")] * n)
        rate, results = drain_rate("fsjobs-drain", n, [{"root": root}])
        samples.add(f"{key}.drain", rate)
        samples.add(f"{key}.drain_rss", results[0]["rss_kb"] / 1024)
    queue.close()


def _limit_sweep(s: Settings, samples: Samples) -> None:
    root = s.base / "w4-limit"
    ahead = int(time.time() * 1000) + FAR_AHEAD_MS
    built = 0
    for size in sizes(s):
        backlog = LimitQueue(root, durable=False)
        for first in range(built, size, BATCH):
            backlog.push_many(range(first, min(size, first + BATCH)), due_ms=ahead)
        backlog.close()
        os.sync()
        built = size
        for _ in range(s.repeat):
            queue = LimitQueue(root)
            queue.push_many(range(s.backlog_jobs))
            queue.close()
            rate, _ = drain_rate("limit-drain", s.backlog_jobs, [{"root": root, "durable": True}])
            samples.add(f"w4.limit.{size}.drain", rate)
    _remove(root)
