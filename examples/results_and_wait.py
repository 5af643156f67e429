"""
Results: ``get``, ``wait``, ``result``, ``watch`` and ``history``, and what each one raises.

    python examples/results_and_wait.py [ROOT]

A task's return value is stored as JSON in the job's journal. ``wait()`` returns
the final state of a completed job and raises ``fsjobs.JobFailed`` for a failed or
timed-out one, ``fsjobs.WaitTimeout`` (a ``TimeoutError``) when its own timeout
passes first. ``result()`` does not wait: it raises ``fsjobs.JobNotDone`` for a job
that is not final yet. ``watch()`` yields a state each time the job changes, and
``history()`` lists every record of the job's journal.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile

import fsjobs
from fsjobs import Context


async def main(root: str) -> None:
    queue = fsjobs.Queue(root)

    @queue.task(name="examples.results_and_wait.stats")
    async def stats(values: list[float]) -> dict[str, float]:
        return {"count": len(values), "mean": sum(values) / len(values)}

    @queue.task(name="examples.results_and_wait.divide")
    async def divide(a: float, b: float) -> float:
        return a / b

    @queue.task(name="examples.results_and_wait.steps")
    async def steps(ctx: Context, n: int) -> str:
        for i in range(1, n + 1):
            await asyncio.sleep(0.6)  # stands for real work
            await ctx.progress(100 * i / n, f"step {i} of {n}")
        return "all steps done"

    ok = await stats.enqueue(values=[1.0, 2.0, 6.0])
    bad = await divide.enqueue(a=1, b=0)
    unknown = await queue.push(fsjobs.Job(func="examples.no_such_task"))

    # Nothing runs yet: result() does not wait, and wait() gives up after its timeout.
    try:
        await queue.result(ok)
    except fsjobs.JobNotDone as exc:
        print(f"result() before the run: JobNotDone ({exc})")
    try:
        await queue.wait(ok, timeout=0.1)
    except TimeoutError as exc:  # fsjobs.WaitTimeout is a TimeoutError
        print(f"wait(timeout=0.1): {type(exc).__name__} ({exc})")

    # A worker can run beside the application, in the same event loop.
    worker = fsjobs.Worker(queue)
    serving = asyncio.create_task(worker.run())

    state = await queue.wait(ok, timeout=10)
    print(f"wait(): {state.status.value}, result {state.result}, took {state.duration} s")
    print(f"result(): {await queue.result(ok)}")

    for job_id in (bad, unknown):
        try:
            await queue.wait(job_id, timeout=10)
        except fsjobs.JobFailed as exc:
            error = exc.state.error
            assert error is not None
            print(f"wait() raised JobFailed: {exc.state.func} is {exc.state.status.value}")
            print(f"  error type {error.type}; the traceback has {len(error.traceback)} chars")

    # watch() yields each new state (here: progress) and ends at a final one.
    watched = await steps.enqueue(n=3)
    async for state in queue.watch(watched, interval=0.1, timeout=30):
        pct = "-" if state.progress is None else f"{state.progress:.0f}%"
        print(f"watch: {state.status.value:<9} {pct:>4} {state.progress_message or ''}".rstrip())
    print(f"watch ended with result {await queue.result(watched)!r}")

    # history() is every record of the job's journal, oldest first.
    events = await queue.history(watched)
    print("history: " + ", ".join(e.type for e in events if e.type != "progress"))
    print(f"history: {sum(e.type == 'progress' for e in events)} progress records")

    worker.stop()  # stop claiming; running jobs may finish (here: none is running)
    await serving


if __name__ == "__main__":
    if len(sys.argv) > 1:
        asyncio.run(main(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory(prefix="fsjobs-results-") as tmp:
            asyncio.run(main(tmp))
