"""
Tasks the integration tests run in worker processes.

Every task records each execution as one line ``"<job_id> <attempt> <pid> <queue>\\n"``,
appended with a single ``os.write`` to an ``O_APPEND`` file named in its kwargs, so
lines from concurrent processes never tear or interleave. The tests read that log
to see what ran, how often, where and in what order.

Registration needs a `Queue`, and the queue root differs per test, so this module
registers nothing on import: a process that runs these tasks calls
``register(queue)`` (see ``worker_main``). The test process only needs the task
names, which are the constants below.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import time

import fsjobs

RECORD = "tests.integration.tasks.record"
BLOCK = "tests.integration.tasks.block"
SPAN = "tests.integration.tasks.span"


def append_line(path: str | os.PathLike[str], line: str) -> None:
    """Append `line` with one write to an O_APPEND file: atomic among processes."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        data = line.encode()
        assert os.write(fd, data) == len(data)
    finally:
        os.close(fd)


def _log(ctx: fsjobs.Context, log: str) -> None:
    append_line(log, f"{ctx.job_id} {ctx.attempt} {os.getpid()} {ctx.queue}\n")


async def record(ctx: fsjobs.Context, log: str, n: int = 0) -> int:
    """Log this execution and return `n` (`n` lets a test tell its jobs apart)."""
    _log(ctx, log)
    return n


async def block(ctx: fsjobs.Context, log: str, release: str, deadline: float = 60.0) -> str:
    """
    Log this execution, then wait until the file `release` exists: a test kills
    the worker while this runs. Gives up (the attempt fails) after `deadline` s.
    """
    _log(ctx, log)
    give_up = time.monotonic() + deadline
    while not os.path.exists(release):
        if time.monotonic() > give_up:
            raise TimeoutError(f"{release} did not appear within {deadline} s")
        await asyncio.sleep(0.01)
    return ctx.job_id


async def span(
    ctx: fsjobs.Context, log: str, ms: int = 0, fail: bool = False
) -> dict[str, list[str]]:
    """
    One execution logged as two lines, ``"start|end <job_id> <attempt> <pid> <monotonic>"``
    (CLOCK_MONOTONIC is shared by the processes of a host), `ms` milliseconds apart;
    raises if `fail`. Returns the keys of its ``ctx.parents``.
    """
    append_line(log, f"start {ctx.job_id} {ctx.attempt} {os.getpid()} {time.monotonic():.6f}\n")
    try:
        await asyncio.sleep(ms / 1000)
        if fail:
            raise RuntimeError("a planned failure")
    finally:
        append_line(log, f"end {ctx.job_id} {ctx.attempt} {os.getpid()} {time.monotonic():.6f}\n")
    return {"parents": sorted(ctx.parents)}


def register(queue: fsjobs.Queue) -> None:
    """Register the tasks (under the names above) in this process."""
    queue.task(name=RECORD)(record)
    queue.task(name=BLOCK)(block)
    queue.task(name=SPAN)(span)


def read_log(path: pathlib.Path) -> list[tuple[str, int, int, str]]:
    """
    The log's complete lines as (job_id, attempt, pid, queue); [] if nothing ran
    yet. A line still being written (no newline yet) is left for the next read.
    """
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines(keepends=True):
        if not line.endswith("\n"):
            break
        job_id, attempt, pid, queue = line.split()
        out.append((job_id, int(attempt), int(pid), queue))
    return out
