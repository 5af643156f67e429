"""
How a worker paces itself: how many jobs it runs, its heartbeat, its group
commits, the pauses of its claims.

The heartbeat runs in its own thread, so a busy event loop is not mistaken for
a frozen worker. Outcomes are published in batches. Claims pause after an
outcome could not be published, for longer each time it happens again in a row.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence

from . import _names
from ._text import printable
from .queue import Queue
from .store import Claim, Outcome, Store

logger = logging.getLogger("fsjobs.worker")

#: after an outcome could not be published, claims stop for this long, doubling up to
#: the maximum while publishing keeps failing (DESIGN.md §4.4 rule 4)
PUBLISH_BACKOFF_FIRST = 1.0
PUBLISH_BACKOFF_MAX = 60.0


#: a worker's concurrency when neither it nor a mapping of queues says
DEFAULT_CONCURRENCY = 10


def concurrency_of(
    queues: Sequence[str] | Mapping[str, int] | None, concurrency: int | None
) -> tuple[dict[str, int], int]:
    """
    A worker's caps: (the most running jobs per queue, the most in all). A
    mapping of queues caps each one, and the total at its sum unless
    `concurrency` says otherwise; a list of names caps only the total.
    """
    limits: dict[str, int] = {}
    if isinstance(queues, str):
        raise TypeError("queues= takes a list of names (or a mapping), not a string")
    if isinstance(queues, Mapping):
        for name, limit in queues.items():
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:  # type: ignore[redundant-expr]
                raise ValueError(f"the concurrency of queue {name!r} must be a whole number >= 1")
            limits[_names.check_name("queue", name)] = limit
        if not limits:
            raise ValueError("queues= must name at least one queue")
        if concurrency is None:
            concurrency = sum(limits.values())
    if concurrency is None:
        concurrency = DEFAULT_CONCURRENCY
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:  # type: ignore[redundant-expr]
        raise ValueError("concurrency must be at least 1")
    return limits, concurrency


class ClaimBackoff:
    """
    How long a worker stops claiming after outcomes could not be published:
    `PUBLISH_BACKOFF_FIRST` seconds, doubling each time claiming resumes and
    publishing fails again, up to `PUBLISH_BACKOFF_MAX`; back to the start once
    an outcome was published.
    """

    def __init__(self) -> None:
        self.current = 0.0
        self.until = -math.inf

    def failed(self, now: float) -> float | None:
        """
        A publish failed at `now` (monotonic): the pause to begin, or None during
        a pause (the job was claimed before it began: no new evidence).
        """
        if now < self.until:
            return None
        self.current = min(max(2 * self.current, PUBLISH_BACKOFF_FIRST), PUBLISH_BACKOFF_MAX)
        self.until = now + self.current
        return self.current

    def succeeded(self) -> None:
        self.current, self.until = 0.0, -math.inf


class Heartbeat(threading.Thread):
    """
    Bumps the worker's heartbeat counter every `interval` seconds from its own
    thread, so a busy event loop is not mistaken for a frozen worker. Remembers
    when the last beat that reached the disk *started*: the worker fences
    itself when that is too long ago (DESIGN.md §4.5).
    """

    def __init__(
        self,
        store: Store,
        fd: int,
        interval: float,
        on_beat: Callable[[float], None] | None = None,
    ) -> None:
        super().__init__(name="fsjobs-heartbeat", daemon=True)
        self.store = store
        self.fd = fd
        self.interval = interval
        #: called after every beat, good or not, with the age of the last good one
        self.on_beat = on_beat
        self.last_ok = time.monotonic()
        self._done = threading.Event()

    def run(self) -> None:
        counter = 0
        while not self._done.wait(self.interval):
            counter += 1
            started = time.monotonic()
            try:
                self.store.beat(self.fd, counter)
            except OSError:
                logger.exception("heartbeat failed")
            else:
                self.last_ok = started
            if self.on_beat is not None:
                try:
                    self.on_beat(self.silent_for())
                except Exception:
                    logger.exception("passing the heartbeat on failed")

    def silent_for(self) -> float:
        return time.monotonic() - self.last_ok

    def stop(self) -> None:
        self._done.set()
        self.join()


class Publisher:
    """
    Publishes a worker's outcomes as group commits: outcomes that arrive while a
    batch is being written go together in the next one, sharing its flushes and
    its hop to the I/O threads. After an outcome could not be published it
    pauses the worker's claims (through `pause`), for longer each time in a row.
    """

    def __init__(self, queue: Queue, worker_id: str, pause: Callable[[float], None]) -> None:
        self.queue = queue
        self.worker_id = worker_id
        self._pause = pause
        self._backoff = ClaimBackoff()
        self._queued: list[tuple[Claim, Outcome, asyncio.Future[bool]]] = []
        self._writer: asyncio.Task[None] | None = None
        #: the error of the newest failed publish, while publishing keeps failing
        self.failing: Exception | None = None

    @property
    def hopeless(self) -> bool:
        """True once the back-off has reached its longest: publishing has failed for minutes."""
        return self.failing is not None and self._backoff.current >= PUBLISH_BACKOFF_MAX

    async def publish(self, claim: Claim, outcome: Outcome) -> bool:
        """
        `store.finish`, batched: outcomes that arrive while a batch is being
        written go together in the next one, sharing its directory fsyncs and its
        hop to the I/O threads (a group commit). Raises what finish would.
        """
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queued.append((claim, outcome, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._finish_batches())
        return await done

    async def _finish_batches(self) -> None:
        while self._queued:
            batch, self._queued = self._queued, []
            items = [(claim, outcome) for claim, outcome, _ in batch]
            try:
                results = await self.queue.io(self.queue.store.finish_many, items)
            except BaseException as exc:  # the loop is going away; nothing else raises here
                for *_, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                raise
            self._after(results)
            for (*_, done), result in zip(batch, results, strict=True):
                if done.done():
                    continue  # its task was cancelled meanwhile; the outcome was still written
                if isinstance(result, Exception):
                    done.set_exception(result)
                else:
                    done.set_result(result)

    def _after(self, results: Sequence[bool | Exception]) -> None:
        """
        An outcome that could not be published (a full disk, an I/O error) means
        the next attempt would likely fail the same way after running the task
        again: pause claims, longer each time in a row, until one publishes.
        """
        errors = [r for r in results if isinstance(r, Exception)]
        if not errors:
            if any(r is True for r in results):
                self._backoff.succeeded()
                self.failing = None
            return
        self.failing = errors[0]
        now = time.monotonic()
        pause = self._backoff.failed(now)
        if pause is None:
            return  # those jobs were claimed before the current back-off began
        self._pause(pause)
        logger.warning(
            "worker %s could not publish the outcome of %d job(s) (%s): backing off its claims "
            "for %.0f s",
            self.worker_id,
            len(errors),
            printable(errors[0]),
            pause,
        )
