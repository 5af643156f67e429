"""
A worker keeps its root's periodic schedules: an asyncio task of `Worker.run`.

It sleeps until the next tick of any schedule (a deadline, not a poll), then
pushes each due tick as a job whose unique key names the tick: every worker
that keeps the schedule tries, exactly one push commits (`_unique`), the others
get its id back. With ``catch_up`` it also pushes the latest tick whose window
passed without a key (a tick missed while no worker ran). It writes
``periodic/<name>.json`` when it starts and then about once a minute, for
``fsjobs schedules``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math

from . import _client, _periodic, _schedule
from ._clock import Clock
from ._json import JSON
from ._periodic import Periodic
from ._text import printable
from .queue import Queue

logger = logging.getLogger("fsjobs.worker")

#: how often the schedule file is written again (its next tick moves on)
REWRITE_INTERVAL = 60.0
#: how soon a push that failed is tried again (while its tick's window lasts)
RETRY_DELAY = 1.0


class Keeper:
    """The schedules one worker keeps."""

    def __init__(self, queue: Queue, schedules: list[Periodic], worker: str, clock: Clock) -> None:
        self.queue = queue
        self.store = queue.store
        self.schedules = schedules
        self.worker = worker
        self.clock = clock
        #: name -> the last tick pushed (or found pushed) by this worker
        self.done: dict[str, dt.datetime] = {}
        #: name -> the last missed tick looked at for catch-up
        self.checked: dict[str, dt.datetime] = {}
        #: name -> when its file was last written (monotonic)
        self.written: dict[str, float] = {}

    async def run(self) -> None:
        """Keep the schedules until cancelled."""
        while True:
            now = self.clock.now()
            wake: float = math.inf
            for periodic in self.schedules:
                try:
                    await self._keep(periodic, now)
                except Exception as exc:  # the disk or the root: try again soon
                    logger.error(
                        "periodic %s: %s; trying again in %.0f s",
                        periodic.name,
                        printable(exc),
                        RETRY_DELAY,
                    )
                    wake = min(wake, RETRY_DELAY)
                following = periodic.schedule.following(now)
                if following is not None:
                    wake = min(wake, (following - self.clock.now()).total_seconds())
            await asyncio.sleep(min(max(wake, 0.0), REWRITE_INTERVAL) + 0.001)

    async def _keep(self, periodic: Periodic, now: dt.datetime) -> None:
        name, schedule = periodic.name, periodic.schedule
        if self.clock.monotonic() - self.written.get(name, -math.inf) >= REWRITE_INTERVAL:
            await self.queue.io(self.store.write_schedule, name, self._file(periodic, now))
            self.written[name] = self.clock.monotonic()
        if periodic.catch_up:
            missed = schedule.missed(now)
            if missed is not None and self.checked.get(name) != missed:
                key = _schedule.tick_key(name, missed)
                if not await self.queue.io(self.store.key_taken, key):
                    await self._push(periodic, missed)
                self.checked[name] = missed
        tick = schedule.due(now)
        if tick is not None and self.done.get(name) != tick:
            await self._push(periodic, tick)
            self.done[name] = tick

    async def _push(self, periodic: Periodic, tick: dt.datetime) -> None:
        job = (
            periodic.task.job()
            .with_scheduled_at(tick)
            .with_unique_key(_schedule.tick_key(periodic.name, tick))
        )
        (job_id,) = await self.queue.io(_client.push_many, self.store, periodic.queue, [job])
        logger.debug("periodic %s: tick %s is job %s", periodic.name, tick.isoformat(), job_id)

    def _file(self, periodic: Periodic, now: dt.datetime) -> dict[str, JSON]:
        following = periodic.schedule.following(now)
        body: dict[str, JSON] = dict(periodic.describe())
        body["next_tick"] = None if following is None else following.isoformat()
        body["worker"] = self.worker
        body["written_at"] = now.astimezone(dt.UTC).isoformat()
        return body


def start(queue: Queue, worker: str, clock: Clock, keep: bool) -> asyncio.Task[None] | None:
    """Start keeping the schedules registered for the queue's root (if `keep` and any)."""
    schedules = _periodic.registered(queue.root) if keep else []
    if not schedules:
        return None
    return asyncio.create_task(
        Keeper(queue, schedules, worker, clock).run(), name="fsjobs:periodic"
    )


async def stop(task: asyncio.Task[None] | None) -> None:
    """Stop keeping them (a push under way completes in its I/O thread)."""
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
