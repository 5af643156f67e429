"""
Pause and resume a queue: workers stop claiming from it, pushes still succeed.

    python examples/pause_resume.py [ROOT]

A pause is one file, ``queues/<queue>/paused``; workers on every host look for it
before they list the queue (at most every 100 ms), finish what they are running and
claim nothing more. ``run_until_empty()`` counts a paused queue as empty. The command
line does the same with ``fsjobs pause QUEUE`` and ``fsjobs resume QUEUE``.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile

import fsjobs


def paused_file(root: str) -> bool:
    return os.path.isfile(os.path.join(root, "queues", "default", "paused"))


async def main(root: str) -> None:
    queue = fsjobs.Queue(root)
    done: list[int] = []
    four_done, all_done = asyncio.Event(), asyncio.Event()

    @queue.task(name="examples.pause_resume.step")
    async def step(n: int) -> None:
        await asyncio.sleep(0.05)
        done.append(n)
        if len(done) >= 4:
            four_done.set()
        if len(done) >= 21:
            all_done.set()

    # While a worker runs: pause after the first few jobs; the running ones finish.
    await queue.push_many([step.job(n=n) for n in range(20)])
    worker = fsjobs.Worker(queue, concurrency=2)
    running = asyncio.create_task(worker.run())
    await four_done.wait()
    print(f"pause: {await queue.pause()} (again: {await queue.pause()})")
    print(f"the pause is a file: {paused_file(root)}")
    await asyncio.sleep(1.0)  # time for the worker to look (every 100 ms) and finish its jobs
    stopped_at = len(done)
    await asyncio.sleep(0.5)
    print(f"paused after {stopped_at} jobs; half a second later still {len(done)} done")
    info = await queue.info()
    print(f"info: paused={info.paused}")
    counts = await queue.counts()
    print(f"pending while paused: {counts[fsjobs.JobStatus.PENDING]}")
    await step.enqueue(n=20)
    print("a push to the paused queue: accepted")
    print(f"resume: {await queue.resume()}")
    await all_done.wait()
    worker.stop()
    await running
    print(f"after resume all {len(done)} jobs ran")

    # run_until_empty() counts a paused queue as empty: it returns at once.
    await queue.pause()
    await step.enqueue(n=21)
    print(f"run_until_empty on a paused queue ran {await fsjobs.Worker(queue).run_until_empty()}")
    await queue.resume()
    print(f"after resume it ran {await fsjobs.Worker(queue).run_until_empty()}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        asyncio.run(main(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory(prefix="fsjobs-pause-") as tmp:
            asyncio.run(main(tmp))
