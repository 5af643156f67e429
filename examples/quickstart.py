"""
Quickstart: define a task, push a job, run a worker, read the result.

    python examples/quickstart.py            # in a temporary directory
    python examples/quickstart.py /tmp/jobs  # keep the files and look at them

The queue is a directory. Pushing writes a few small files and returns once they
are on disk; the worker claims the job by renaming a file, runs the function and
records what it returned in the job's journal.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile

import fsjobs


async def main(root: str) -> None:
    queue = fsjobs.Queue(root)

    # A script run as __main__ must name its tasks: a worker in another process
    # finds a task by this name, and it cannot import "__main__".
    @queue.task(name="examples.quickstart.add")
    async def add(a: int, b: int) -> int:
        return a + b

    job_id = await add.enqueue(a=2, b=3)
    print(f"pushed {job_id}: {(await queue.get(job_id)).status.value}")

    # The same thing, spelled out: build an immutable Job, then push it.
    job = add.job(a=40, b=2).with_priority(-1)
    other_id = await queue.push(job)

    worker = fsjobs.Worker(queue)
    ran = await worker.run_until_empty()
    print(f"the worker ran {ran} jobs")

    for jid in (job_id, other_id):
        state = await queue.get(jid)
        print(f"{jid}: {state.status.value}, result {await queue.result(jid)}")
    print(f"the root holds: {' '.join(sorted(os.listdir(root)))}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        asyncio.run(main(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory(prefix="fsjobs-quickstart-") as tmp:
            asyncio.run(main(tmp))
