"""
Retries: ``max_attempts``, ``fsjobs.Backoff`` and ``raise fsjobs.Retry(...)``.

    python examples/retries.py [ROOT]

An attempt that raises goes back to the queue while attempts remain: the job is
``retrying`` until its backoff has passed, then runs again. The last failure is
final (``failed``) and its error, with the traceback, is kept in the journal.
A task can also ask for another attempt itself, with its own delay, by raising
``fsjobs.Retry``; that too uses up an attempt.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time

import fsjobs
from fsjobs import Context


async def main(root: str) -> None:
    queue = fsjobs.Queue(root)
    started = time.monotonic()
    timeline: list[str] = []

    def log(msg: str) -> None:  # a task's print() would go to its attempt's log
        timeline.append(f"  {time.monotonic() - started:5.2f} s  {msg}")

    # Waits 0.2 s, then 0.4 s (initial * factor**(n-1)); jitter=0 keeps the demo exact.
    @queue.task(
        name="examples.retries.flaky",
        max_attempts=3,
        backoff=fsjobs.Backoff(initial=0.2, factor=2, jitter=0),
    )
    async def flaky(ctx: Context) -> str:
        log(f"flaky: attempt {ctx.attempt} of {ctx.max_attempts}")
        if ctx.attempt < 3:
            raise ConnectionError("the service is not answering")
        return "answered"

    @queue.task(name="examples.retries.poll", max_attempts=5)
    async def poll(ctx: Context) -> int:
        log(f"poll: attempt {ctx.attempt}")
        if ctx.attempt < 2:
            raise fsjobs.Retry(delay=0.1)  # not an error: "not ready, look again in 0.1 s"
        return ctx.attempt

    @queue.task(name="examples.retries.broken", max_attempts=2, backoff=fsjobs.Backoff(initial=0.1))
    async def broken() -> None:
        log("broken: raising")
        raise ValueError("bad input")

    ids = [await flaky.enqueue(), await poll.enqueue(), await broken.enqueue()]

    # Backoffs are future times: tell run_until_empty to wait for them.
    ran = await fsjobs.Worker(queue).run_until_empty(wait_scheduled=True, max_wait=10)
    print("\n".join(timeline))
    print(f"{ran} attempts ran")

    for job_id in ids:
        state = await queue.get(job_id)
        line = f"{state.func}: {state.status.value} after {state.attempts}/{state.max_attempts}"
        if state.error is not None:
            line += f", last error {state.error.type}: {state.error.message}"
        print(line)
        try:
            print(f"  result: {await queue.result(job_id)!r}")
        except fsjobs.JobFailed as exc:
            print(f"  result() raised JobFailed: {exc}")

    # A failed job can be run again by hand: the same job, a new attempt, its history kept.
    state = await queue.retry(ids[2], more_attempts=1)
    print(f"retried by hand: {state.status.value}, attempts {state.attempts}/{state.max_attempts}")
    await fsjobs.Worker(queue).run_until_empty()
    state = await queue.get(ids[2])
    print(f"after the manual retry: {state.status.value} after {state.attempts} attempts")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        asyncio.run(main(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory(prefix="fsjobs-retries-") as tmp:
            asyncio.run(main(tmp))
