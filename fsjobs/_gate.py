"""
The worker's side of flow control: what it may claim from each queue now.

Before each listing of a queue the worker looks at its pause and settings (the
store caches the look for 100 ms). A paused queue, or one whose settings file
cannot be read, is not listed at all. A capped queue is claimed through
`Store.claim_limited`, which takes a slot and a rate token before each claim;
the gate remembers which slot each running job holds, frees it when the job
ends however it ends, and notes when a queue's rate is spent (until the next
window) or its slots are all taken. A queue with no settings costs the look
and nothing else.

The sync methods run in the I/O threads; the others only read memory.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Sequence

from ._clock import Clock
from ._text import printable
from ._wakeups import Wakeable
from .store import Claim, Ending, FlowState, Outcome, Slot, Store

logger = logging.getLogger("fsjobs.worker")

_NO_FLOW = FlowState()


class Gate:
    """One worker's view of its queues' flow control, and the slots its jobs hold."""

    def __init__(self, store: Store, worker: str, clock: Clock) -> None:
        self.store = store
        self.worker = worker
        self.clock = clock
        self._lock = threading.Lock()
        self._states: dict[str, FlowState] = {}
        #: job id -> the slot its claim took
        self._slots: dict[str, Slot] = {}
        #: queue -> until when (the clock's monotonic time) its rate is spent
        self._spent: dict[str, float] = {}
        #: queues whose slots were all taken at the last try
        self._full: set[str] = set()
        self._told: dict[str, str] = {}
        #: wake-ups that may mean a pause ended (a bell, a push or resume in this process),
        #: and how many of them each paused queue's last look has seen
        self._nudges = 0
        self._nudges_seen: dict[str, int] = {}

    def nudger(self, waker: Wakeable) -> Wakeable:
        """A waker that also makes the next listing of a paused queue look afresh."""
        return _Nudger(self, waker)

    # -- in the I/O threads ----------------------------------------------------------------

    def listing(self, queue: str, limit: int) -> list[str]:
        """Look at the queue's flow files (cached 100 ms), then promote and list unless paused."""
        first = queue not in self._states  # a new worker looks afresh: no one else's cache
        state = self.store.flow(queue, max_age=0.0) if first else self.store.flow(queue)
        if state.blocked and self._nudges_seen.get(queue) != self._nudges:
            # Woken since the look that found it paused: maybe by its resume.
            self._nudges_seen[queue] = self._nudges
            state = self.store.flow(queue, max_age=0.0)
        with self._lock:
            self._states[queue] = state
            if state.problem is not None and self._told.get(queue) != state.problem:
                logger.error(
                    "queue %s is not served: %s", printable(queue), printable(state.problem)
                )
                self._told[queue] = state.problem
            elif state.problem is None:
                self._told.pop(queue, None)
        if state.blocked:
            self._full.discard(queue)
            return []
        names = self.store.promote_and_list(queue, limit)
        if not names:
            self._full.discard(queue)
        return names

    def claim(
        self, queue: str, paths: Sequence[str], want: int
    ) -> tuple[list[Claim], int, Exception | None]:
        """`Store.claim_many`, within the queue's caps if it has any."""
        state = self._states.get(queue, _NO_FLOW)
        if not state.limited:
            return self.store.claim_many(queue, paths, self.worker, want)
        got = self.store.claim_limited(queue, paths, self.worker, want, state.settings)
        with self._lock:
            self._slots.update(got.slots)
            if got.throttled_until is not None:
                wait = max(0.0, got.throttled_until - self.clock.now().timestamp())
                self._spent[queue] = self.clock.monotonic() + wait
            if got.full:
                self._full.add(queue)
            else:
                self._full.discard(queue)
        return got.claims, got.tried, got.error

    def release(self, claim: Claim) -> None:
        """The claim's job ended (finished, given back or fenced): free its slot, if any."""
        with self._lock:
            slot = self._slots.pop(claim.job_id, None)
        if slot is not None:
            try:
                self.store.free_slot(slot)
            except OSError as exc:  # the slot stays until this worker is rescued or exits
                logger.error(
                    "could not free slot %s of queue %s: %s", slot.k, slot.queue, printable(exc)
                )

    def give_back(self, claims: list[Claim]) -> None:
        """Claims won for a worker that stopped waiting for them: back to pending, slots freed."""
        try:
            self.store.finish_many([(c, Outcome(Ending.GIVE_BACK)) for c in claims])
        finally:
            for claim in claims:
                self.release(claim)

    def rescue(self, queue: str, lease: float) -> None:
        """Rescue the jobs of dead workers; in a capped queue, their slots too."""
        self.store.rescue(queue, self.worker, lease)
        if self._states.get(queue, _NO_FLOW).settings.concurrency is not None:
            try:
                self.store.rescue_slots(queue, self.worker, lease)
            except OSError as exc:  # a damaged slots/ (fsck names it): the jobs go on
                logger.error("queue %s: slots not rescued: %s", queue, printable(exc))

    def free_leftovers(self) -> None:
        """At exit: free any slot still naming this worker (one whose freeing failed)."""
        for queue, state in list(self._states.items()):
            if state.settings.concurrency is None:
                continue
            try:
                for slot in self.store.slots_held_by(queue, self.worker):
                    self.store.free_slot(slot)
            except OSError as exc:
                logger.error("queue %s: slots left to rescue: %s", queue, printable(exc))

    # -- in memory ------------------------------------------------------------------------------

    def holds_slot(self, claim: Claim) -> bool:
        return claim.job_id in self._slots

    def paused(self, queue: str) -> bool:
        """Paused (or its settings unusable), at the last look: a paused queue counts as empty."""
        return self._states.get(queue, _NO_FLOW).blocked

    def closed(self, queue: str) -> bool:
        """Nothing may be claimed from `queue` now: paused, or its rate spent."""
        return self.paused(queue) or self.clock.monotonic() < self._spent.get(queue, -math.inf)

    def held_back(self, queue: str) -> bool:
        """Jobs are due but a cap holds them: rate spent, or every slot taken."""
        return queue in self._full or self.clock.monotonic() < self._spent.get(queue, -math.inf)

    def wake_in(self) -> float | None:
        """Seconds until the earliest spent rate has a new window; None if none is spent."""
        now = self.clock.monotonic()
        ends = [t - now for t in self._spent.values() if t > now]
        return min(ends) if ends else None


class _Nudger:
    def __init__(self, gate: Gate, waker: Wakeable) -> None:
        self.gate = gate
        self.waker = waker

    def wake(self) -> None:
        self.gate._nudges += 1
        self.waker.wake()
