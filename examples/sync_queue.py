"""
SyncQueue: the queue from blocking code (scripts, notebooks, Flask or Django
views), with no ``async`` and no event loop of its own.

    python examples/sync_queue.py            # in a temporary directory
    python examples/sync_queue.py /tmp/jobs  # keep the files and look at them

The worker here runs in a thread of this script so that the example is one file;
in production it is an ``fsjobs worker`` process, and the blocking calls are the same.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import threading

import fsjobs


def main(root: str) -> None:
    tasks = fsjobs.Queue(root)  # tasks are declared on a Queue, as always

    @tasks.task(name="examples.sync_queue.resize")
    async def resize(ctx: fsjobs.Context, path: str, width: int) -> dict[str, object]:
        for step in range(1, 4):
            await asyncio.sleep(0.1)  # the work
            await ctx.progress(step * 100 / 3, f"pass {step} of 3")
        return {"path": path, "width": width}

    # A worker, in a thread with its own event loop; stopped at the end.
    worker = fsjobs.Worker(tasks)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(worker.run(),))
    thread.start()

    queue = fsjobs.SyncQueue(root)
    job_id = queue.push(resize.job(path="cat.png", width=200))
    print(f"pushed {job_id}")
    for state in queue.watch(job_id, interval=0.05, timeout=30):
        percent, message = state.progress or 0, state.progress_message or ""
        print(f"  {state.status.value:<9} {percent:5.1f}% {message}")
    print(f"result: {queue.result(job_id)}")

    ids = queue.push_many(resize.job(path=f"{n}.png", width=n * 100) for n in range(1, 4))
    print(f"widths: {[queue.wait(i, timeout=30).result['width'] for i in ids]}")

    missing = queue.push(fsjobs.Job(func="examples.sync_queue.no_such_task"))
    try:
        queue.wait(missing, timeout=30)
    except fsjobs.JobFailed as exc:
        print(f"wait raised JobFailed: {exc.state.error.type if exc.state.error else '?'}")
    print(f"counts: { {s.value: n for s, n in queue.counts().items() if n} }")

    loop.call_soon_threadsafe(worker.stop)
    thread.join()
    loop.close()
    queue.close()


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(sys.argv[1])
    else:
        with tempfile.TemporaryDirectory(prefix="fsjobs-sync-") as tmp:
            main(tmp)
