"""
Periodic jobs: ``@queue.periodic`` runs a task on a schedule, once per tick.

    python examples/periodic.py [ROOT]

Two workers keep the same every-second schedule, as two hosts would. Each tick is
pushed as a job whose unique key names the tick (``periodic:<name>:<tick>``); the
first push commits and the other worker gets that job's id back, so the task runs
once per tick. A cron schedule in a timezone with ``catch_up=True`` runs the tick it
missed (last night's) as soon as a worker starts. ``fsjobs schedules`` lists both.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import sys
import tempfile
import zoneinfo

import fsjobs

TICKS = 3


async def main(root: str) -> None:
    queue = fsjobs.Queue(root)
    ticks: list[dt.datetime] = []
    nightly_runs: list[dt.datetime] = []
    enough = asyncio.Event()

    @queue.periodic(every=dt.timedelta(seconds=1), name="examples.periodic.heartbeat")
    async def heartbeat(ctx: fsjobs.Context) -> None:
        scheduled = (await queue.get(ctx.job_id)).scheduled_at  # the tick this job is for
        assert scheduled is not None
        ticks.append(scheduled)
        if len(ticks) >= TICKS and nightly_runs:
            enough.set()

    @queue.periodic(
        "30 2 * * *", name="examples.periodic.nightly", timezone="Europe/Berlin", catch_up=True
    )
    async def nightly(ctx: fsjobs.Context) -> None:
        scheduled = (await queue.get(ctx.job_id)).scheduled_at
        assert scheduled is not None
        nightly_runs.append(scheduled)
        if len(ticks) >= TICKS:
            enough.set()

    workers = [fsjobs.Worker(queue), fsjobs.Worker(queue)]
    running = [asyncio.create_task(w.run()) for w in workers]
    async with asyncio.timeout(60):  # a guard: ticks come every second
        await enough.wait()
    for worker in workers:
        worker.stop()
    await asyncio.gather(*running)

    print(f"{len(ticks)} heartbeat ticks ran with 2 workers keeping the schedule:")
    for tick in sorted(ticks):
        print(f"  tick {tick:%H:%M:%S}")
    print(f"each tick ran once: {len(set(ticks)) == len(ticks)}")
    berlin = nightly_runs[0].astimezone(zoneinfo.ZoneInfo("Europe/Berlin"))
    print(f"caught up the missed nightly tick: {berlin:%Y-%m-%d %H:%M} in Berlin")
    # What the workers left for operators: periodic/<name>.json, read by `fsjobs schedules`.
    shell = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fsjobs", "--root", root, "schedules", stdout=subprocess.PIPE
    )
    out, _ = await shell.communicate()
    print(out.decode(), end="")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        asyncio.run(main(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory(prefix="fsjobs-periodic-") as tmp:
            asyncio.run(main(tmp))
