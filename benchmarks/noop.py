"""The benchmark's tasks, in a module a worker process can import."""

from __future__ import annotations

import os
import tempfile

import fsjobs
from benchmarks.stamps import write_stamp

queue = fsjobs.Queue(os.environ.get("FSJOBS_ROOT") or tempfile.mkdtemp(prefix="fsjobs-noop-"))


@queue.task(name="benchmarks.noop")
async def noop() -> None:
    """Does nothing: the benchmark measures the queue, not the task."""


@queue.task(name="benchmarks.stamp")
async def stamp(i: int) -> None:
    """Records when job `i` started (benchmarks.stamps), before anything else."""
    write_stamp(i)
