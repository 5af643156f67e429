"""
Helpers for testing code that uses fsjobs, with no sleeps and no extra processes.

``await drain(queue)`` runs every due job of the queue in this process and
returns how many attempts ran, in the spirit of Oban's ``drain_queue`` and
procrastinate's in-memory testing: push in the test, drain, assert on results.
``FakeClock`` is a clock you move by hand (``Queue(root, clock=clock)``), so
scheduled jobs and backoffs can be tested without waiting for them.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Sequence

from .queue import Queue
from .worker import Worker


class FakeClock:
    """A wall clock and a monotonic clock that move only when told to."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        if start is not None and start.tzinfo is None:
            raise ValueError("FakeClock needs a timezone-aware start time")
        self._now = start or dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
        self._mono = 0.0
        self._lock = threading.Lock()

    def now(self) -> dt.datetime:
        with self._lock:
            return self._now

    def monotonic(self) -> float:
        with self._lock:
            return self._mono

    def advance(self, seconds: float) -> None:
        """Move both clocks forward by `seconds`."""
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        with self._lock:
            self._now += dt.timedelta(seconds=seconds)
            self._mono += seconds


async def drain(
    queue: Queue,
    *,
    queues: Sequence[str] | None = None,
    concurrency: int = 1,
    wait_scheduled: bool = False,
    max_wait: float | None = None,
) -> int:
    """
    Run the due jobs of `queue` (or `queues`) in this process; return the attempts
    run. Installs no signal handler (a Worker's default).
    """
    worker = Worker(queue, queues, concurrency)
    return await worker.run_until_empty(wait_scheduled=wait_scheduled, max_wait=max_wait)
