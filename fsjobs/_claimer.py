"""
`Claimer`: how one worker takes jobs. It keeps a cached head listing per
queue, takes turns among the queues, claims in batches (one I/O hop each),
through the `Gate` of its queues' pause and caps, and stops claiming for a
while when the disk is full or outcomes cannot be published. The worker
decides when to call it and runs what it returns.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Mapping

from ._clock import Clock
from ._gate import Gate
from ._text import printable
from ._wakeups import io_pool
from .errors import StoreFull
from .queue import Queue
from .store import Claim

logger = logging.getLogger(__name__)

#: A busy worker re-lists a queue's head at least this often, so a better job
#: pushed later is taken soon (DESIGN.md §2.1 rule 1).
RELIST_INTERVAL = 0.1
#: how long a worker stops claiming after the disk was found full
FULL_PAUSE = 1.0


class Claimer:
    """
    Claims for worker `worker_id` from `queues` (a list it rotates in place, so
    the next turn starts with another queue), at most `queue_limits[q]` running
    jobs of a capped queue.
    """

    def __init__(
        self,
        queue: Queue,
        worker_id: str,
        queues: list[str],
        queue_limits: Mapping[str, int],
        gate: Gate,
        *,
        clock: Clock,
        poll_interval: float,
        listing_size: int,
    ) -> None:
        self.queue = queue
        self.worker_id = worker_id
        self.queues = queues
        self.queue_limits = queue_limits
        self.gate = gate
        self.clock = clock
        self.poll_interval = poll_interval
        self.listing_size = listing_size
        self._listings: dict[str, deque[str]] = {q: deque() for q in queues}
        self._listed_at: dict[str, float] = dict.fromkeys(queues, -math.inf)
        self._paused_until = -math.inf  # no claims before this (time.monotonic)

    # -- pauses ---------------------------------------------------------------------

    def pause(self, seconds: float) -> None:
        """Claim nothing for `seconds` (a full disk, outcomes that could not be published)."""
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)

    def paused(self) -> bool:
        """True while claims wait for disk space or after outcomes failed to publish."""
        return time.monotonic() < self._paused_until

    def pause_left(self) -> float:
        """Seconds until claims resume (0 or less: they are not paused)."""
        return self._paused_until - time.monotonic()

    # -- claiming -------------------------------------------------------------------

    async def fill(
        self,
        free: Callable[[], int],
        running_in: Mapping[str, int],
        start: Callable[[Claim], None],
        stopping: Callable[[], bool],
    ) -> int:
        """
        Claim while `free()` slots remain, taking turns among the queues, and
        `start` each claim at once. Returns how many were claimed.
        """
        claimed = 0
        progress = not self.paused()
        while progress and free() > 0 and not stopping():
            progress = False
            for q in self.queues:
                room = free()
                if room <= 0 or self.paused():
                    break
                share = max(1, room // len(self.queues))
                if q in self.queue_limits:
                    share = min(share, self.queue_limits[q] - running_in[q])
                    if share <= 0:
                        continue  # this queue has all the slots it may have here
                for claim in await self._claim_some(q, share):
                    start(claim)
                    claimed += 1
                    progress = True
            self.queues.append(self.queues.pop(0))
        return claimed

    async def _claim_some(self, queue: str, want: int) -> list[Claim]:
        """Up to `want` claims from the cached head listing, listing again when it runs dry."""
        listing = self._listings[queue]
        for relisted in (False, True):
            now = self.clock.monotonic()
            since = now - self._listed_at[queue]
            if relisted or not listing or since > RELIST_INTERVAL:
                if relisted and since < self.poll_interval and not listing:
                    return []
                listing.clear()
                listing.extend(await self.queue.io(self.gate.listing, queue, self.listing_size))
                self._listed_at[queue] = now
            if self.paused() or self.gate.closed(queue):  # e.g. a publish just failed
                return []
            if listing:
                claims = await self._claim_batch(queue, want, listing)
                if claims or self.paused() or self.gate.held_back(queue):
                    return claims  # or the disk is full, or caps hold: stop trying for now
        return []

    async def _claim_batch(self, queue: str, want: int, listing: deque[str]) -> list[Claim]:
        """
        One hop to the I/O threads that tries the listed names in order until it
        has won `want` claims. The names it tried leave the listing. If we are
        cancelled meanwhile, the claims it won are given back.
        """
        paths = list(listing)
        hop = asyncio.ensure_future(self.queue.io(self.gate.claim, queue, paths, want))
        try:
            claims, tried, error = await asyncio.shield(hop)
        except asyncio.CancelledError:
            hop.add_done_callback(self._give_back)
            raise
        for _ in range(tried):
            listing.popleft()
        if isinstance(error, StoreFull):  # that job is back in pending; wait for space
            if not self.paused():
                logger.warning(
                    "worker %s: %s; pausing claims for %.0f s",
                    self.worker_id,
                    printable(error),
                    FULL_PAUSE,
                )
            self.pause(FULL_PAUSE)
        elif error is not None:  # the store has put that job back; the next listing retries it
            logger.error(
                "worker %s: claiming from %s failed: %s", self.worker_id, queue, printable(error)
            )
        return claims

    def _give_back(self, hop: asyncio.Future[tuple[list[Claim], int, Exception | None]]) -> None:
        if hop.cancelled() or hop.exception() is not None:
            return
        claims = hop.result()[0]
        if claims:
            io_pool().submit(self.gate.give_back, claims)
