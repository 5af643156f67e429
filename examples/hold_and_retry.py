"""
Operator tools: hold a job, release it, and run a failed job again.

    python examples/hold_and_retry.py [ROOT]
"""

from __future__ import annotations

import asyncio
import sys
import tempfile

import fsjobs


async def main(root: str) -> None:
    queue = fsjobs.Queue(root)
    ran: list[str] = []

    @queue.task(name="examples.hold_and_retry.send")
    def send(to: str) -> str:
        ran.append(to)
        if to == "nobody@example.com" and ran.count(to) == 1:
            raise ConnectionError("mail server down")
        return f"sent to {to}"

    held = await send.enqueue(to="ann@example.com")
    flaky = await send.enqueue(to="nobody@example.com")
    print(f"hold: {await queue.hold(held)}, now {(await queue.get(held)).status.value}")

    await fsjobs.Worker(queue).run_until_empty()
    print(f"while held, the worker ran: {ran}")
    print(f"the other job: {(await queue.get(flaky)).status.value}")

    print(f"release: {await queue.release(held)}")
    state = await queue.retry(flaky)
    print(f"retry: {state.status.value}, attempts {state.attempts} of {state.max_attempts}")
    await fsjobs.Worker(queue).run_until_empty()
    for job_id in (held, flaky):
        state = await queue.get(job_id)
        print(f"{state.kwargs['to']}: {state.status.value} after {state.attempts} attempt(s)")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="fsjobs-")))
