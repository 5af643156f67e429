"""fsck on flow control and schedules: what is normal, what it reports, what a repair does."""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Iterator

import pytest

from fsjobs import _flow, _slots
from fsjobs._queue_settings import UNSET, parse_rate
from fsjobs.fsck import Report, fsck
from fsjobs.store import Store

from .test_flow import ManualClock


@pytest.fixture
def store(root: pathlib.Path) -> Iterator[Store]:
    s = Store(root, staleness=0)
    yield s
    s.close()


def kinds(report: Report) -> dict[str, tuple[str, bool]]:
    return {p.path: (p.kind, p.repaired) for p in report.problems}


def test_a_configured_paused_queue_with_live_slots_is_clean(store: Store) -> None:
    lock, hb = store.register_worker("w-live")
    try:
        store.configure("default", 3, "10/s")
        store.pause("default")
        assert _slots.take_slot(store.tree, "default", 3, "w-live") is not None
        assert _flow.take_token(store.tree, _flow.Looks(), "default", parse_rate("10/s")) is None
        store.write_schedule("app.cleanup", {"schedule": "every 60 s"})
        report = fsck(store)
        assert report.ok, report.problems
    finally:
        os.close(lock)
        os.close(hb)


def test_a_dead_workers_slot_is_reported_and_freed_by_a_repair(
    store: Store, root: pathlib.Path
) -> None:
    store.configure("default", 2, UNSET)
    slot = _slots.take_slot(store.tree, "default", 2, "w-dead")
    assert slot is not None
    where = f"queues/default/slots/{slot.k}"
    assert kinds(fsck(store)) == {where: ("stale-slot", False)}
    assert kinds(fsck(store, repair=True)) == {where: ("stale-slot", True)}
    assert os.listdir(root / "queues/default/slots") == []
    assert fsck(store).ok


def test_an_ownerless_slot_is_removed_once_settled(store: Store, root: pathlib.Path) -> None:
    store.configure("default", 2, UNSET)
    (root / "queues/default/slots/1").mkdir(parents=True)
    assert fsck(store).ok, "younger than the settle time: a claimer may be writing its owner"
    report = fsck(store, repair=True, settle=0)
    assert kinds(report) == {"queues/default/slots/1": ("ownerless-slot", True)}
    assert os.listdir(root / "queues/default/slots") == []


def test_old_rate_windows_are_removed_by_a_repair(store: Store, root: pathlib.Path) -> None:
    clock = ManualClock()
    timed = Store(root, clock=clock, staleness=0)
    try:
        timed.configure("default", UNSET, "5/s")
        looks = _flow.Looks()
        for _ in range(4):
            assert _flow.take_token(timed.tree, looks, "default", parse_rate("5/s")) is None
            clock.advance(1)
        (root / "queues/default/rate/12").mkdir()  # a window from another era (or rate)
        assert fsck(timed).ok, "leftovers, not damage"
        clock.advance(10)
        report = fsck(timed, repair=True)
        assert report.ok and all(p.kind == "old-rate-window" for p in report.problems)
        assert len(report.problems) == 4, "the 3 windows the claimer left, and the stray one"
        assert os.listdir(root / "queues/default/rate") == []
    finally:
        timed.close()


def test_malformed_settings_and_schedules_are_reported_not_crashed_on(
    store: Store, root: pathlib.Path
) -> None:
    store.configure("default", 2, UNSET)
    (root / "queues/default/settings.json").write_text('{"concurrency": "lots"}')
    store.write_schedule("app.cleanup", {"schedule": "every 60 s"})
    (root / "periodic/app.cleanup.json").write_text("[1, 2")
    (root / "periodic/notes.txt").write_text("hello")
    (root / "queues/default/slots/x").mkdir(parents=True)
    (root / "queues/default/paused").mkdir()
    found = kinds(fsck(store))
    assert found["queues/default/settings.json"][0] == "settings"
    assert found["periodic/app.cleanup.json"] == ("schedule", False)
    assert found["periodic/notes.txt"][0] == "foreign-file"
    assert found["queues/default/slots/x"][0] == "foreign-file"
    assert found["queues/default/paused"][0] == "foreign-file"
    repaired = kinds(fsck(store, repair=True))
    assert repaired["periodic/app.cleanup.json"] == ("schedule", True)
    assert not (root / "periodic/app.cleanup.json").exists(), "workers write it again"
    assert repaired["queues/default/settings.json"] == ("settings", False), "a person fixes it"
    assert json.loads((root / "queues/default/settings.json").read_text()) == {
        "concurrency": "lots"
    }, "left as it was"
