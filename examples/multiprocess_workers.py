"""
Workers in several processes: start two, push jobs, wait for all, stop them.

    python examples/multiprocess_workers.py [ROOT]
    python examples/multiprocess_workers.py ROOT --worker     # what each child runs

Workers need nothing but the directory: each claims a job by renaming its file
into ``running/``, and exactly one rename wins. Processes on other hosts that
mount the same directory over NFS join the same way.

The second part kills one worker with SIGKILL in the middle of a job. The other
worker sees that the dead one no longer holds its lock file, puts the job back,
and runs it again as attempt 2: delivery is at least once.

The children run this same file, so they register the same task names. A task
defined in a script run as ``__main__`` must be given ``name=``: other processes
find it by that name, never by importing ``__main__``.
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import sys
import tempfile
from typing import Any

import fsjobs
from fsjobs import Context

WORKERS = 2
JOBS = 12


def define_tasks(
    queue: fsjobs.Queue,
) -> tuple[fsjobs.Task[..., Any], fsjobs.Task[..., Any]]:
    """Register the tasks; called the same way in the parent and in each worker."""

    @queue.task(name="examples.multiprocess_workers.square")
    async def square(x: int) -> dict[str, int]:
        await asyncio.sleep(0.2)  # stands for real work
        return {"square": x * x, "pid": os.getpid()}

    @queue.task(name="examples.multiprocess_workers.fragile", max_attempts=3)
    async def fragile(ctx: Context) -> dict[str, int]:
        await ctx.progress(0, f"pid {os.getpid()}")
        if ctx.attempt == 1:
            await asyncio.sleep(60)  # long enough to be killed in the middle
        return {"pid": os.getpid(), "attempt": ctx.attempt}

    return square, fragile


async def serve(root: str) -> None:
    """Worker mode: run until SIGTERM, which lets running jobs finish, then exit."""
    queue = fsjobs.Queue(root)
    define_tasks(queue)
    print(f"worker {os.getpid()} ready", flush=True)
    await fsjobs.Worker(queue, concurrency=2, handle_signals=True).run()


async def main(root: str) -> None:
    queue = fsjobs.Queue(root)
    square, fragile = define_tasks(queue)
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable, __file__, root, "--worker", stdout=asyncio.subprocess.PIPE
        )
        for _ in range(WORKERS)
    ]
    try:
        for child in children:  # each child says when it is about to serve
            assert child.stdout is not None
            print((await child.stdout.readline()).decode().strip())
        await share_work(queue, square)
        await survive_a_crash(queue, fragile)
    finally:
        for child in children:
            if child.returncode is None:
                child.send_signal(signal.SIGTERM)  # graceful: stop claiming, finish, exit
        codes = [await child.wait() for child in children]
        print(f"workers exited with {codes}")


async def share_work(queue: fsjobs.Queue, square: fsjobs.Task[..., Any]) -> None:
    ids = await queue.push_many([square.job(x=x) for x in range(JOBS)])
    print(f"pushed {len(ids)} jobs")
    # wait() polls the directory: the jobs finish in other processes.
    results = [(await queue.wait(job_id, timeout=60)).result for job_id in ids]
    squares = [r["square"] for r in results if isinstance(r, dict)]
    print(f"all {len(squares)} jobs completed: {squares}")
    per_pid = collections.Counter(r["pid"] for r in results if isinstance(r, dict))
    for pid, n in sorted(per_pid.items()):
        print(f"  worker {pid} ran {n} jobs")


async def survive_a_crash(queue: fsjobs.Queue, fragile: fsjobs.Task[..., Any]) -> None:
    job_id = await fragile.enqueue()
    async for state in queue.watch(job_id, interval=0.05, timeout=30):
        if state.progress_message is not None:  # "pid N": attempt 1 has started
            break
    assert state.progress_message is not None
    victim = int(state.progress_message.split()[1])
    os.kill(victim, signal.SIGKILL)
    print(f"killed worker {victim} (SIGKILL) while it ran attempt {state.attempts}")

    done = await queue.wait(job_id, timeout=30)
    assert isinstance(done.result, dict)
    print(
        f"the job was rescued and completed on worker {done.result['pid']}, "
        f"attempt {done.result['attempt']} of {done.max_attempts}"
    )


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[2] == "--worker":
        asyncio.run(serve(sys.argv[1]))
    elif len(sys.argv) > 1:
        asyncio.run(main(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory(prefix="fsjobs-multiprocess-") as tmp:
            asyncio.run(main(tmp))
