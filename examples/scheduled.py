"""
Scheduled jobs: ``scheduled_at`` holds a job back until that time.

    python examples/scheduled.py [ROOT]

A scheduled job waits under ``queues/<q>/waiting/<hour>/<minute+second>/`` with
its due time in its name; any worker moves it to ``pending/`` once that time has
come. ``run_until_empty()`` does not wait for future jobs unless asked to with
``wait_scheduled=True`` (bounded by ``max_wait``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
import tempfile

import fsjobs


async def main(root: str) -> None:
    queue = fsjobs.Queue(root)

    @queue.task(name="examples.scheduled.remind")
    async def remind(text: str) -> str:
        return f"reminder: {text}"

    now = dt.datetime.now(dt.UTC)
    soon = await queue.push(
        remind.job(text="stand up").with_scheduled_at(now + dt.timedelta(seconds=1))
    )
    later = await queue.push(
        remind.job(text="next year").with_scheduled_at(now + dt.timedelta(days=365))
    )
    at_once = await remind.enqueue(text="right now")

    for job_id in (soon, later, at_once):
        print(f"{(await queue.get(job_id)).status.value:<9} {job_id}")

    # Times must be timezone-aware: a naive datetime is refused before anything is written.
    try:
        remind.job(text="when?").with_scheduled_at(dt.datetime(2030, 1, 1))  # noqa: DTZ001
    except fsjobs.InvalidJob as exc:
        print(f"refused: {exc}")

    worker = fsjobs.Worker(queue)
    print(f"without waiting: ran {await worker.run_until_empty()} job(s)")
    ran = await worker.run_until_empty(wait_scheduled=True, max_wait=10)
    print(f"waiting up to 10 s for scheduled jobs: ran {ran} job(s)")

    state = await queue.get(soon)
    assert state.started_at is not None and state.scheduled_at is not None
    late = (state.started_at - state.scheduled_at).total_seconds()
    print(f"'{state.result}' started {late:.3f} s after its scheduled time")
    print(f"the job a year ahead is still {(await queue.get(later)).status.value}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        asyncio.run(main(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory(prefix="fsjobs-scheduled-") as tmp:
            asyncio.run(main(tmp))
