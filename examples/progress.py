"""
Progress: ``await ctx.progress(percent, message)`` from a running task.

    python examples/progress.py [ROOT]

Progress is a record in the job's journal, so any process that can read the
root sees it through ``queue.get()`` (``state.progress``, ``state.progress_message``)
or ``queue.watch()``. The worker writes at most one progress record every half
second and always keeps the last one, so a task may report as often as it likes.
"""

from __future__ import annotations

import asyncio
import glob
import json
import os
import sys
import tempfile

import fsjobs
from fsjobs import Context


def journal_records(root: str, job_id: str) -> list[dict[str, object]]:
    """Every record of a job's journal, oldest first (what ``cat ... | jq`` shows)."""
    records: list[dict[str, object]] = []
    for path in sorted(glob.glob(os.path.join(root, "jobs", "*", job_id, "*.jsonl"))):
        with open(path, encoding="ascii") as f:
            records.extend(json.loads(line) for line in f)
    return records


async def main(root: str) -> None:
    queue = fsjobs.Queue(root)

    @queue.task(name="examples.progress.import_rows")
    async def import_rows(ctx: Context, rows: int) -> int:
        for i in range(1, rows + 1):
            await asyncio.sleep(0.01)  # stands for importing one row
            await ctx.progress(100 * i / rows, f"{i}/{rows} rows")
        return rows

    job_id = await import_rows.enqueue(rows=150)
    worker = fsjobs.Worker(queue)
    serving = asyncio.create_task(worker.run())

    # Anyone can look, from any process: poll get(), or let watch() do it.
    async for state in queue.watch(job_id, interval=0.2, timeout=30):
        if state.progress is not None:
            print(f"{state.status.value:<9} {state.progress:5.1f}%  {state.progress_message}")
    worker.stop()
    await serving

    # 150 calls to ctx.progress, but only a few records in the journal.
    records = await asyncio.to_thread(journal_records, root, job_id)
    written = [r for r in records if r["type"] == "progress"]
    print(
        f"150 progress calls, {len(written)} progress records; the last says "
        f"{written[-1]['percent']}% '{written[-1]['message']}'"
    )


if __name__ == "__main__":
    if len(sys.argv) > 1:
        asyncio.run(main(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory(prefix="fsjobs-progress-") as tmp:
            asyncio.run(main(tmp))
