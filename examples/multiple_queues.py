"""
Several queues under one root, and a worker that serves some of them.

    python examples/multiple_queues.py [ROOT]

A queue is a name: ``Queue(root, name="emails")``. Queues keep separate
directories under ``queues/``, so a backlog in one never slows the listing of
another. A worker serves the queues it is given and takes turns among them
(round-robin); priority orders jobs only within one queue. Route a task to the
workers that know it by putting it on their queue.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile

import fsjobs
from fsjobs import JobStatus


async def main(root: str) -> None:
    emails = fsjobs.Queue(root, name="emails")
    reports = fsjobs.Queue(root, name="reports")
    videos = fsjobs.Queue(root, name="videos")
    ran: list[str] = []

    @emails.task(name="examples.multiple_queues.send")
    async def send(to: str) -> None:
        ran.append(f"email:{to}")

    @reports.task(name="examples.multiple_queues.report")
    async def report(month: str) -> None:
        ran.append(f"report:{month}")

    @videos.task(name="examples.multiple_queues.encode")
    async def encode(clip: str) -> None:
        ran.append(f"video:{clip}")

    # enqueue() pushes to the task's own queue.
    for to in ("ann", "bob", "cid"):
        await send.enqueue(to=to)
    for month in ("jan", "feb", "mar"):
        await report.enqueue(month=month)
    await encode.enqueue(clip="intro.mp4")

    # This worker serves emails and reports, one job at a time, alternating.
    worker = fsjobs.Worker(emails, queues=["emails", "reports"], concurrency=1)
    print(f"worker ran {await worker.run_until_empty()} jobs: {' '.join(ran)}")

    for queue in (emails, reports, videos):
        counts = await queue.counts()
        nonzero = {status.value: n for status, n in counts.items() if n}
        print(f"{queue.name:>8}: {nonzero}")

    # Any Queue object can read any job, and list or count another queue.
    everything = await emails.counts(queue="*")
    print(
        f"all queues: {everything[JobStatus.COMPLETED]} completed, "
        f"{everything[JobStatus.PENDING]} pending"
    )
    waiting = await emails.list_jobs(status=JobStatus.PENDING, queue="videos")
    print(f"still pending in 'videos': {[s.kwargs for s in waiting]}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        asyncio.run(main(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory(prefix="fsjobs-queues-") as tmp:
            asyncio.run(main(tmp))
