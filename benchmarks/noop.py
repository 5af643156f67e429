"""The benchmark's no-op task, in a module a worker process can import."""

import os
import tempfile

import fsjobs

queue = fsjobs.Queue(os.environ.get("FSJOBS_ROOT") or tempfile.mkdtemp(prefix="fsjobs-noop-"))


@queue.task(name="benchmarks.noop")
async def noop() -> None:
    """Does nothing: the benchmark measures the queue, not the task."""
