"""
``python -m fsjobs demo``: a tour on a temporary directory.

Pushes jobs with different priorities and one scheduled a moment ahead, runs a
worker in this process until all of them ran, and prints each job's status and
result, then where the files are.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import tempfile

from .context import Context
from .queue import Queue
from .worker import Worker


async def _demo(root: str) -> None:
    queue = Queue(root)

    @queue.task(name="fsjobs.demo.greet")
    async def greet(ctx: Context, name: str) -> str:
        await ctx.progress(100, "greeted")
        return f"hello, {name} (attempt {ctx.attempt})"

    @queue.task(name="fsjobs.demo.square")
    def square(x: int) -> int:  # a sync task: runs in a thread
        return x * x

    pushed = [
        ("greet, priority 5", await queue.push(greet.job(name="world").with_priority(5))),
        ("square, priority 0", await queue.push(square.job(x=7))),
        (
            "greet, priority -10 (runs first)",
            await queue.push(greet.job(name="urgent").with_priority(-10)),
        ),
        (
            "square, in 0.5 s",
            await queue.push(
                square.job(x=12).with_scheduled_at(
                    dt.datetime.now(dt.UTC) + dt.timedelta(seconds=0.5)
                )
            ),
        ),
    ]
    print(f"queue root: {root}\n")
    print("before the worker runs:")
    for label, job_id in pushed:
        print(f"  {job_id}  {(await queue.get(job_id)).status.value:<10} {label}")

    order: list[str] = []
    worker = Worker(queue, concurrency=1)
    ran = await worker.run_until_empty(wait_scheduled=True, max_wait=10)
    print(f"\nthe worker ran {ran} jobs; afterwards:")
    states = [(label, await queue.get(job_id)) for label, job_id in pushed]
    for label, state in sorted(states, key=lambda s: s[1].started_at or s[1].created_at):
        order.append(label)
        print(f"  {state.id}  {state.status.value:<10} result={state.result!r:<32} {label}")
    print(f"\nrun order: {' -> '.join(order)}")
    print(f"\nlook around: ls -R {root}/queues | head; cat {root}/jobs/*/*/*.jsonl | head -3")


def main() -> int:
    root = tempfile.mkdtemp(prefix="fsjobs-demo-")
    asyncio.run(_demo(root))
    return 0
