"""
Unique keys: at most one unfinished job per key, across every queue of a root.

    python examples/unique_keys.py [ROOT]

While a job with a key is pending, scheduled, running or retrying, pushing another
job with the same key creates nothing and returns the first job's id. Once that
job is final (completed, failed, ...) the key is free again. This holds between
processes and hosts too: the key's owner is decided by a ``link()`` that exactly
one pusher wins, under ``unique/<sha256 of the key>/``.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile

import fsjobs


async def main(root: str) -> None:
    queue = fsjobs.Queue(root)
    reports = fsjobs.Queue(root, name="reports")

    @queue.task(name="examples.unique_keys.rebuild_report")
    async def rebuild_report(user_id: int) -> str:
        return f"report for user {user_id}"

    def job_for(user_id: int) -> fsjobs.Job:
        return rebuild_report.job(user_id=user_id).with_unique_key(f"report:{user_id}")

    first = await queue.push(job_for(7))
    again = await queue.push(job_for(7))
    elsewhere = await reports.push(job_for(7))  # another queue: same key, same answer
    print(f"first push:          {first}")
    print(f"second push:         {again}  (same job: {again == first})")
    print(f"push to 'reports':   {elsewhere}  (same job: {elsewhere == first})")

    # In one push_many the first job with a key wins and the others get its id.
    batch = await queue.push_many([job_for(8), job_for(8), job_for(9)])
    print(f"push_many:           {batch}")

    counts = await queue.counts()
    print(f"pending in 'default': {counts[fsjobs.JobStatus.PENDING]}")

    await fsjobs.Worker(queue).run_until_empty()
    print(f"after the run:       {(await queue.get(first)).status.value}")

    fresh = await queue.push(job_for(7))
    print(f"push after it ended: {fresh}  (a new job: {fresh != first})")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        asyncio.run(main(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory(prefix="fsjobs-unique-") as tmp:
            asyncio.run(main(tmp))
