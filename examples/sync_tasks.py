"""
Sync tasks: plain ``def`` functions run in the worker's threads.

    python examples/sync_tasks.py [ROOT]

A task defined with ``def`` runs in a thread pool as large as the worker's
concurrency, so blocking code (a library without async support, a subprocess,
file work) does not stall the event loop or the other jobs.

A thread cannot be killed. When a sync task passes its timeout, the worker sets
``ctx.cancelled`` and keeps the job (and its slot) until the function returns;
then the attempt is recorded as timed out, and what the function returned is
discarded. Long sync tasks should look at ``ctx.cancelled`` now and then.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import threading
import time

import fsjobs
from fsjobs import Context


async def main(root: str) -> None:
    queue = fsjobs.Queue(root)

    @queue.task(name="examples.sync_tasks.checksum")
    def checksum(n: int) -> dict[str, object]:
        time.sleep(0.3)  # blocking work: fine in a sync task
        return {"n": n, "sum": sum(range(n)), "thread": threading.current_thread().name}

    @queue.task(name="examples.sync_tasks.crunch", timeout=0.5)
    def crunch(ctx: Context) -> str:
        rounds = 0
        while not ctx.cancelled:  # cooperative: stop when the worker says so
            time.sleep(0.05)
            rounds += 1
        print(f"crunch saw ctx.cancelled after {rounds} rounds and returned")
        return "partial"

    ids = await queue.push_many([checksum.job(n=n) for n in (10, 100, 1000, 10000)])
    slow = await crunch.enqueue()

    started = time.monotonic()
    ran = await fsjobs.Worker(queue, concurrency=5).run_until_empty()
    elapsed = time.monotonic() - started
    print(f"ran {ran} jobs in {elapsed:.2f} s (four of them sleep 0.3 s each, side by side)")

    for job_id in ids:
        result = await queue.result(job_id)
        assert isinstance(result, dict)
        print(f"  sum(range({result['n']})) = {result['sum']} in thread {result['thread']}")

    state = await queue.get(slow)
    assert state.error is not None
    print(f"crunch: {state.status.value} ({state.error.type}), result {state.result!r}")
    # What a task prints goes to its attempt's log (fsjobs logs ID, or queue.logs).
    print(await queue.logs(slow), end="")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        asyncio.run(main(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory(prefix="fsjobs-sync-") as tmp:
            asyncio.run(main(tmp))
