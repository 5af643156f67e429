"""
Limits and the process executor: MEMORY and TIME enforced in child processes.

    python examples/limits.py [ROOT]

A sync task with ``executor="process"`` runs in one of the worker's child
processes. ``Limit(MEMORY)`` caps the child's address space: an allocation past
it raises ``MemoryError`` in the task, and the worker replaces that child.
``Limit(TIME)`` (or ``timeout``) kills the child. A child killed by a signal
fails the attempt with ``fsjobs.ChildDied``, whose message names the signal.

The children import the task functions from where they are defined, so they
are at the top level of this file; like any ``multiprocessing`` child they run
its top level again, which is why the work sits under ``if __name__ == "__main__"``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import tempfile
import time

import fsjobs
from fsjobs import Context, Limit

MiB = 2**20


def allocate(ctx: Context, mib: int) -> str:
    ctx.progress(0, f"allocating {mib} MiB")  # a plain call from sync code
    block = bytearray(mib * MiB)
    return f"allocated {len(block) // MiB} MiB in child {os.getpid()}"


def stuck(seconds: float) -> str:
    time.sleep(seconds)
    return "woke up"


def crash() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


async def main(root: str) -> None:
    queue = fsjobs.Queue(root)
    memory = Limit(Limit.Type.MEMORY, 256 * MiB)
    process = {"executor": "process"}
    alloc = queue.task(name="examples.limits.allocate", limits=[memory], **process)(allocate)
    slow = queue.task(name="examples.limits.stuck", limits=[Limit(Limit.Type.TIME, 1)], **process)(
        stuck
    )
    crashing = queue.task(name="examples.limits.crash", **process)(crash)

    # A thread cannot enforce a MEMORY limit: asking for one is refused at once.
    try:
        queue.task(name="examples.limits.in_a_thread", executor="thread", limits=[memory])(allocate)
    except fsjobs.InvalidJob as exc:
        print(f"refused: {exc}")

    jobs = {
        "512 MiB under 256": await alloc.enqueue(mib=512),
        "64 MiB under 256": await alloc.enqueue(mib=64),
        "an hour under 1 s": await slow.enqueue(seconds=3600),
        "a SIGKILL": await crashing.enqueue(),
    }
    started = time.monotonic()
    ran = await fsjobs.Worker(queue, concurrency=2).run_until_empty()
    print(f"ran {ran} jobs in {time.monotonic() - started:.1f} s")
    for label, job_id in jobs.items():
        state = await queue.get(job_id)
        if state.error is None:
            print(f"{label}: {state.status.value}: {state.result}")
        else:
            print(f"{label}: {state.status.value}: {state.error.type}: {state.error.message}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        asyncio.run(main(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory(prefix="fsjobs-limits-") as tmp:
            asyncio.run(main(tmp))
