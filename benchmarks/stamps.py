"""
Start times of jobs, recorded by the task itself, for latencies across processes.

A task calls `write_stamp(i)` first thing: one `os.write` of one line to a file
opened once per process, a few microseconds, so the instrumentation does not
dominate a millisecond figure. Standard library only: the limit queue's worker
uses it too, without importing fsjobs.
"""

from __future__ import annotations

import os
import time

_fd: int | None = None


def stamp_to(path: str | os.PathLike[str]) -> None:
    """Append the start time of every job run in this process to `path`."""
    global _fd
    if _fd is not None:
        os.close(_fd)
    _fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)


def write_stamp(i: int) -> None:
    """One line, `i` and time.time(), in one write: atomic with O_APPEND on a local disk."""
    if _fd is None:
        stamp_to(os.environ["FSJOBS_BENCH_STAMPS"])
    assert _fd is not None
    os.write(_fd, b"%d %.6f\n" % (i, time.time()))


def read_stamps(path: str | os.PathLike[str]) -> dict[int, float]:
    """Job number -> the time it started (the first start, if it ran twice)."""
    starts: dict[int, float] = {}
    try:
        with open(path, "rb") as f:
            for line in f:
                i, t = line.split()
                starts.setdefault(int(i), float(t))
    except FileNotFoundError:
        pass
    return starts


def wait_for(path: str | os.PathLike[str], count: int, timeout: float) -> dict[int, float]:
    """The stamps once `count` distinct jobs have started; TimeoutError after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        starts = read_stamps(path)
        if len(starts) >= count:
            return starts
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(starts)} of {count} jobs started in {timeout} s")
        time.sleep(0.005)
