"""
Queue-wide limits: at most N jobs of a queue at once, and at most N claims per window,
across every worker process and host.

    python examples/queue_limits.py [ROOT]

``configure()`` writes ``queues/<queue>/settings.json`` (read it with ``cat``). Two
workers of concurrency 5 each run a queue capped at 2 running jobs: the tasks count
how many run at once. Then a rate of 4 claims per second: the claims fall 4 to a
second-long window. ``fsjobs configure QUEUE --concurrency N --rate 4/s`` does the same
from a shell.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import sys
import tempfile
import time

import fsjobs


def read_settings(root: str) -> object:
    with open(os.path.join(root, "queues", "default", "settings.json")) as f:
        return json.load(f)


async def main(root: str) -> None:
    queue = fsjobs.Queue(root)
    running = 0
    most = 0
    claimed: list[float] = []

    @queue.task(name="examples.queue_limits.convert")
    async def convert(n: int) -> None:
        nonlocal running, most
        claimed.append(time.time())
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.1)
        running -= 1

    info = await queue.configure(concurrency=2)
    print(f"configured: {info}")
    print(f"settings.json: {read_settings(root)}")
    await queue.push_many([convert.job(n=n) for n in range(10)])
    workers = [fsjobs.Worker(queue, concurrency=5), fsjobs.Worker(queue, concurrency=5)]
    ran = await asyncio.gather(*(w.run_until_empty() for w in workers))
    print(f"ran {sum(ran)} jobs with 2 workers of concurrency 5: at most {most} at once")

    info = await queue.configure(concurrency=None, rate="4/s")  # only the keys given change
    print(f"configured: {info}")
    claimed.clear()
    await queue.push_many([convert.job(n=n) for n in range(10)])
    ran = await asyncio.gather(*(w.run_until_empty() for w in workers))
    per_second = collections.Counter(int(t) for t in claimed)
    print(f"ran {sum(ran)} jobs; claims per second-long window: {sorted(per_second.values())}")
    print(f"no window over 4: {max(per_second.values()) <= 4}")
    print(f"after removing the rate: {await queue.configure(rate=None)}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        asyncio.run(main(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory(prefix="fsjobs-limits-") as tmp:
            asyncio.run(main(tmp))
