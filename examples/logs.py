"""
Logs: what a task prints and logs goes to its attempt's log, under every executor.

    python examples/logs.py [ROOT]

``print()``, ``sys.stderr`` and ``logging`` at INFO and above, inside a task,
land in ``jobs/<shard>/<id>/attempts/<epoch>/log`` instead of the worker's
output, whatever the application's logging configuration, and two jobs running
side by side never share a log. Read one with ``await queue.logs(job_id)`` (the
newest attempt) or ``queue.logs(job_id, attempt=1)``, or from a shell with
``fsjobs logs ID`` (``--follow`` prints it as it grows). Each keeps its last MiB.
"""

from __future__ import annotations

import asyncio
import logging
import pathlib
import sys
import tempfile

import fsjobs
from fsjobs import Backoff, Context


def convert(ctx: Context, name: str) -> str:
    """A sync task for the process executor: its child imports it from here."""
    print(f"attempt {ctx.attempt}: converting {name} in a child process")
    logging.getLogger("examples.logs").info("%s has %d pages", name, 3)
    if ctx.attempt == 1:
        raise RuntimeError("the converter crashed")
    return name.replace(".doc", ".pdf")


def log_files(root: str, job_id: str) -> list[str]:
    """A job's log files, one per attempt that ran (``ls jobs/*/ID/attempts/*/log``)."""
    return [
        str(p.relative_to(root))
        for p in sorted(pathlib.Path(root).glob(f"jobs/*/{job_id}/attempts/*/log"))
    ]


async def main(root: str) -> None:
    logging.basicConfig(level=logging.WARNING)  # this application shows warnings only
    queue = fsjobs.Queue(root)

    @queue.task(name="examples.logs.shout")
    async def shout(word: str) -> None:
        for i in range(3):
            print(f"{word} {i}")
            await asyncio.sleep(0.01)  # the other job prints meanwhile

    converter = queue.task(
        name="examples.logs.convert",
        executor="process",
        max_attempts=2,
        backoff=Backoff(initial=0, jitter=0),
    )(convert)

    ping, pong = await shout.enqueue(word="ping"), await shout.enqueue(word="pong")
    report = await converter.enqueue(name="report.doc")
    await fsjobs.Worker(queue, concurrency=3).run_until_empty(wait_scheduled=True, max_wait=10)

    for label, job_id in (("ping", ping), ("pong", pong)):
        print(f"--- the log of {label}:")
        print(await queue.logs(job_id), end="")
    for attempt in (1, 2):
        print(f"--- the log of report.doc, attempt {attempt}:")
        print(await queue.logs(report, attempt=attempt), end="")
    print(f"report.doc: {await queue.result(report)}")

    print(f"its logs on disk: {await asyncio.to_thread(log_files, root, report)}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        asyncio.run(main(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory(prefix="fsjobs-logs-") as tmp:
            asyncio.run(main(tmp))
