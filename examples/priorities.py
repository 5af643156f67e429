"""
Priorities: lower values run first; equal priorities run in push order.

    python examples/priorities.py [ROOT]

Priority is part of each pending file's name (``priority + 2**31`` as ten
digits), so the byte order of the names under ``queues/<q>/pending/`` is the run
order, and ``LC_ALL=C ls`` or ``sort`` shows it. This script prints that listing
before the worker starts, then the order in which the jobs actually ran.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile

import fsjobs


def pending_names(root: str, queue: str) -> list[str]:
    """The pending marker names of a queue, sorted as ``LC_ALL=C sort`` would."""
    names = []
    for _dirpath, _dirs, files in os.walk(os.path.join(root, "queues", queue, "pending")):
        names.extend(files)
    return sorted(names)


async def main(root: str) -> None:
    queue = fsjobs.Queue(root)
    ran: list[str] = []

    @queue.task(name="examples.priorities.step")
    async def step(label: str) -> None:
        ran.append(label)

    # Pushed in this order; all of them are due before the worker starts.
    pushes = [
        ("routine A", 0),
        ("background", 10),
        ("urgent", -100),
        ("routine B", 0),
        ("important", -5),
        ("routine C", 0),
    ]
    ids = await queue.push_many([step.job(label=label).with_priority(p) for label, p in pushes])
    labels = {job_id: label for job_id, (label, _) in zip(ids, pushes, strict=True)}

    print("pending, in byte order of the file names:")
    for name in pending_names(root, "default"):
        prio, _ready, job_id = name.split(".")[:3]
        print(f"  {name}  <- {labels[job_id]} (priority {int(prio) - 2**31})")

    # One job at a time, so the run order is easy to see.
    await fsjobs.Worker(queue, concurrency=1).run_until_empty()
    print("run order: " + " -> ".join(ran))


if __name__ == "__main__":
    if len(sys.argv) > 1:
        asyncio.run(main(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory(prefix="fsjobs-priorities-") as tmp:
            asyncio.run(main(tmp))
