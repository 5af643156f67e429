"""
Plain functions the executor tests run in worker processes, by name.

Nothing is registered: workers run these through ``allow_import`` (a prefix
that covers ``tests.integration.exec_tasks``), and the process executor's
children import this module to find them. Each function that a test must see
running appends one line to a file named in its kwargs, with one ``os.write``
to an ``O_APPEND`` file (atomic among processes).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time

import fsjobs

from .tasks import append_line


def _wait_for(path: str, deadline: float = 120.0) -> None:
    give_up = time.monotonic() + deadline
    while not os.path.exists(path):
        if time.monotonic() > give_up:
            raise TimeoutError(f"{path} did not appear within {deadline} s")
        time.sleep(0.01)


def pid_then_block(ctx: fsjobs.Context, log: str, release: str) -> int:
    """Log ``<job_id> <attempt> <pid>``, then wait until the file `release` exists."""
    append_line(log, f"{ctx.job_id} {ctx.attempt} {os.getpid()}\n")
    _wait_for(release)
    return os.getpid()


def pid() -> int:
    """The process that ran it."""
    return os.getpid()


def hog(mib: int) -> int:
    """Allocate `mib` MiB at once."""
    return len(bytearray(mib * 2**20))


def sleep(seconds: float) -> str:
    time.sleep(seconds)
    return "slept"


def kill_self_on_first_attempt(ctx: fsjobs.Context) -> str:
    """Attempt 1 SIGKILLs the process it runs in; later attempts return."""
    if ctx.attempt == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return f"attempt {ctx.attempt} survived"


def stamp(log: str, label: str, hold: float) -> None:
    """Log ``start``/``end`` lines with CLOCK_MONOTONIC times (one clock for every process)."""
    append_line(log, f"start {label} {time.monotonic()}\n")
    time.sleep(hold)
    append_line(log, f"end {label} {time.monotonic()}\n")


def progress_then_block(ctx: fsjobs.Context, release: str) -> str:
    """Report progress with a plain call, then wait until `release` exists."""
    ctx.progress(50, "half way")
    _wait_for(release)
    return "done"


async def chatter(ctx: fsjobs.Context, me: str, meeting: str, lines: int) -> None:
    """
    Print and log `lines` numbered lines while another `chatter` job does the same:
    each first waits until both have arrived in the directory `meeting`.
    """
    append_line(os.path.join(meeting, me), "here\n")
    while len(os.listdir(meeting)) < 2:
        await asyncio.sleep(0.01)
    for i in range(lines):
        print(f"{me} prints line {i}")
        logging.getLogger("chatter").info("%s logs line %d", me, i)
        await asyncio.sleep(0.005)


def noop() -> None:
    """Nothing: the jobs of the throughput figures."""
