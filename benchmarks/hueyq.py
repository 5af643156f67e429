"""
huey's FileHuey, the existing file-based job queue, as a baseline.

huey is imported only here and only when a measurement needs it, so the
benchmark runs without it (its rows then say "not installed"). It comes from
the ``bench`` dependency group, never from fsjobs' own dependencies.

The method mirrors ours so that the figures compare:

* push: ``task()`` one call per job from one thread, as ``await queue.push``.
  FileStorage does no fsync at all, so its fair comparable is the limit queue
  without fsync.
* drain: the jobs are queued first, then one process runs huey's own consumer
  (``huey.create_consumer(workers=10, worker_type="thread")``: 10 threads,
  like a worker at concurrency 10, and like ``huey_consumer -w 10 -k thread``).
  The rate is jobs / (all done - consumer start), as for our worker processes.
  The task returns None, so huey stores no result: huey at its cheapest.
"""

from __future__ import annotations

import importlib.util
import threading
import time
import typing
from collections.abc import Callable

TASK_NAME = "bench_noop"


def installed() -> bool:
    return importlib.util.find_spec("huey") is not None


def _make(path: str, on_run: Callable[[], None]) -> tuple[typing.Any, typing.Any]:
    """A FileHuey on `path` and its no-op task (the same name in every process)."""
    from huey import FileHuey

    huey = FileHuey("bench", path=path)

    def noop() -> None:
        on_run()

    return huey, huey.task(name=TASK_NAME)(noop)


def push(path: str, n: int) -> list[float]:
    """Queue `n` jobs one at a time; returns each call's duration in seconds."""
    _, task = _make(path, lambda: None)
    durations = []
    for _ in range(n):
        t = time.perf_counter()
        task()
        durations.append(time.perf_counter() - t)
    return durations


def drain(path: str, n: int, workers: int = 10) -> dict[str, float]:
    """Run huey's consumer in this process until `n` jobs ran (a child of the bench)."""
    done = threading.Event()
    count = 0
    lock = threading.Lock()

    def on_run() -> None:
        nonlocal count
        with lock:
            count += 1
            if count == n:
                done.set()

    huey, _ = _make(path, on_run)
    consumer = huey.create_consumer(workers=workers, worker_type="thread", periodic=False)
    start = time.time()
    consumer.start()
    done.wait()
    end = time.time()
    consumer.stop(graceful=True)
    return {"ran": count, "start": start, "end": end}
