"""
Tasks of the flow-control and periodic tests (``test_flow_processes``, ``tests/sharedfs``).

* `span` logs ``start <time> <job_id> <pid>`` when it starts and ``end <time> <job_id>``
  when it ends (``time.time()``: every process on one host reads one clock), so a test
  can count how many ran at once.
* The periodic task `TICK` (registered by ``worker_main --tick-every S --tick-log PATH``)
  logs ``<job_id> <pid>`` once per run; the test reads each job's tick from its
  ``scheduled_at`` and unique key.

Lines are appended with one ``os.write`` to an ``O_APPEND`` file, as in `tasks`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import pathlib
import time
from collections.abc import Callable

import fsjobs

from .tasks import append_line

SPAN = "tests.integration.flow_tasks.span"
TICK = "tests.integration.flow_tasks.tick"


async def span(ctx: fsjobs.Context, log: str, hold: float = 0.2) -> None:
    append_line(log, f"start {time.time():.6f} {ctx.job_id} {os.getpid()}\n")
    await asyncio.sleep(hold)
    append_line(log, f"end {time.time():.6f} {ctx.job_id}\n")


def register(queue: fsjobs.Queue) -> None:
    queue.task(name=SPAN)(span)


def register_tick(queue: fsjobs.Queue, every: float, log: str) -> None:
    """The periodic task `TICK`: every `every` seconds, one job per tick."""

    async def tick(ctx: fsjobs.Context) -> None:
        append_line(log, f"{ctx.job_id} {os.getpid()}\n")

    queue.periodic(every=dt.timedelta(seconds=every), name=TICK)(tick)


def read_spans(path: pathlib.Path) -> list[tuple[float, float, str]]:
    """(start, end, job id) of every run that ended."""
    starts: dict[str, float] = {}
    out = []
    text = path.read_text() if path.exists() else ""
    for line in text.splitlines():
        kind, at, job_id, *_ = line.split()
        if kind == "start":
            starts[job_id] = float(at)
        elif job_id in starts:
            out.append((starts.pop(job_id), float(at), job_id))
    return out


def max_overlap(spans: list[tuple[float, float, str]]) -> int:
    """The most runs that were between their start and their end at one moment."""
    events = sorted([(s, 1) for s, _, _ in spans] + [(e, -1) for _, e, _ in spans])
    most = now = 0
    for _, step in events:  # an end at the same instant as a start sorts first (-1 < 1)
        now += step
        most = max(most, now)
    return most


def starts(log: pathlib.Path) -> list[float]:
    """The start times of `span` runs, in the order they were logged."""
    text = log.read_text() if log.exists() else ""
    return [float(line.split()[1]) for line in text.splitlines() if line.startswith("start ")]


def quiet_for(log: pathlib.Path, seconds: float) -> Callable[[], bool]:
    """A check to poll: every `span` run started has ended, and none started for `seconds`."""
    seen = {"count": -1.0, "since": time.monotonic()}

    def check() -> bool:
        count = len(starts(log))
        if count != seen["count"]:
            seen.update(count=count, since=time.monotonic())
            return False
        return count == len(read_spans(log)) and time.monotonic() - seen["since"] >= seconds

    return check


def slot_dirs(root: pathlib.Path, queue: str = "default") -> list[str]:
    """The slots of `queue` that are taken (directories under ``slots/``)."""
    top = root / "queues" / queue / "slots"
    return sorted(os.listdir(top)) if top.exists() else []
