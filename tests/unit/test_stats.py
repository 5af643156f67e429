"""The readings behind `fsjobs stats`: oldest pending job, workers alive."""

from __future__ import annotations

import datetime as dt
import os
import pathlib

import fsjobs
from fsjobs._clock import to_ms
from fsjobs.store import Store
from fsjobs.testing import FakeClock


def test_oldest_pending_is_the_earliest_ready_job_of_any_priority(root: pathlib.Path) -> None:
    """The oldest pending job is found across priorities, and only due jobs count."""
    clock = FakeClock()
    store = Store(root, clock=clock)
    assert store.oldest_pending_ms("default") is None
    first = to_ms(clock.now())
    store.push_many([(fsjobs.Job(func="a.b", priority=5), "default")])
    clock.advance(90)
    later = clock.now() + dt.timedelta(hours=1)
    store.push_many(
        [
            (fsjobs.Job(func="a.b", priority=-5), "default"),
            (fsjobs.Job(func="a.b", priority=-9, scheduled_at=later), "default"),
        ]
    )
    assert store.oldest_pending_ms("default") == first


def test_workers_alive_counts_held_locks(root: pathlib.Path) -> None:
    """A registered worker counts; a dead one (lock released) does not."""
    store = Store(root)
    assert store.workers_alive() == 0
    lock, hb = store.register_worker("w-1")
    assert store.workers_alive() == 1
    os.close(lock)
    os.close(hb)
    assert store.workers_alive() == 0
