"""
Cancelling jobs: one that has not started, a running async task, a running sync task.

    python examples/cancel.py [ROOT]
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import threading
import time

import fsjobs


async def main(root: str) -> None:
    queue = fsjobs.Queue(root)
    async_started = asyncio.Event()
    sync_started = threading.Event()

    @queue.task(name="examples.cancel.wait_forever")
    async def wait_forever() -> None:
        async_started.set()
        try:
            await asyncio.sleep(3600)
        finally:
            print("  async task: cleaning up after CancelledError")

    @queue.task(name="examples.cancel.crunch")
    def crunch(ctx: fsjobs.Context) -> str:
        sync_started.set()
        steps = 0
        while not ctx.cancelled and steps < 100_000:  # check between steps
            time.sleep(0.001)
            steps += 1
        return f"stopped after {steps} steps"

    not_started = await wait_forever.enqueue()
    print(f"cancel before it starts: {await queue.cancel(not_started)}")

    running_async = await wait_forever.enqueue()
    running_sync = await crunch.enqueue()
    worker = fsjobs.Worker(queue, concurrency=2, handle_signals=False)
    serving = asyncio.create_task(worker.run())
    await async_started.wait()
    await asyncio.to_thread(sync_started.wait)
    print(f"cancel a running async task: {await queue.cancel(running_async)}")
    print(f"cancel a running sync task: {await queue.cancel(running_sync)}")
    worker.stop()
    await serving

    for job_id in (not_started, running_async, running_sync):
        try:
            await queue.wait(job_id, timeout=5)
        except fsjobs.JobCancelled as exc:
            print(f"{job_id}: {exc.state.status.value}, attempts={exc.state.attempts}")

    # What the async task printed while it was cancelled went to its attempt's log.
    print("the cancelled async task's log:")
    print(await queue.logs(running_async), end="")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="fsjobs-")))
