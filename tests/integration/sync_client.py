"""
A plain blocking script that drives a queue with `fsjobs.SyncQueue` while a
worker process runs its jobs: no ``async``, no event loop of its own::

    python -m tests.integration.sync_client ROOT LOG RELEASE

It pushes jobs, waits for them from several threads at once, watches a job
start, cancels it while it runs, meets a failure and retries it, and prints
one JSON object with what it saw (the test checks it against the store).
"""

from __future__ import annotations

import json
import sys
import threading

import fsjobs
from fsjobs import Job, JobStatus, SyncQueue

from .tasks import BLOCK, RECORD

THREADS = 4
JOBS = 12


def main(root: str, log: str, release: str) -> None:
    queue = SyncQueue(root)
    ids = queue.push_many(Job(func=RECORD, kwargs={"log": log, "n": n}) for n in range(JOBS))

    # Several threads block in wait() at once, each on its own share of the jobs.
    results: dict[str, object] = {}
    lock = threading.Lock()

    def waiter(mine: list[str]) -> None:
        for job_id in mine:
            state = queue.wait(job_id, timeout=120)
            with lock:
                results[job_id] = state.result

    threads = [threading.Thread(target=waiter, args=(ids[i::THREADS],)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    # watch() is an iterator: stop reading once the job runs, then cancel it mid-run.
    blocked = queue.push(Job(func=BLOCK, kwargs={"log": log, "release": release}))
    seen = []
    for state in queue.watch(blocked, interval=0.01, timeout=120):
        seen.append(state.status.value)
        if state.status is JobStatus.RUNNING:
            break
    cancelled = queue.cancel(blocked, timeout=120)

    # A failure is the same error as with Queue; retry gives it one more attempt.
    broken = queue.push(Job(func="no.such.task"))
    try:
        queue.wait(broken, timeout=120)
        failed_with = None
    except fsjobs.JobFailed as exc:
        failed_with = exc.state.error.type if exc.state.error else "?"
    retried = queue.retry(broken)

    print(
        json.dumps(
            {
                "ids": ids,
                "results": [results[i] for i in ids],
                "result_of_first": queue.result(ids[0]),
                "blocked": blocked,
                "watched": seen,
                "cancelled": cancelled,
                "failed_with": failed_with,
                "broken": broken,
                "retried_max_attempts": retried.max_attempts,
                "completed": queue.counts()[JobStatus.COMPLETED],
                "listed": len(queue.list_jobs(limit=100)),
            }
        )
    )
    queue.close()


if __name__ == "__main__":
    main(*sys.argv[1:4])
