"""
Periodic tasks in one process: the decorator, the ticks' unique keys (taken for good
once committed, freed only by a fenced staging marker), which ticks a worker pushes
when (with and without catch-up), prune of old tick keys, and ``fsjobs schedules``.

Time is a `ManualClock`; the schedule keeper's steps are driven one at a time
(`Keeper._keep`), so nothing here waits for a real tick. Several workers on several
processes and hosts: ``tests/integration/test_flow_processes.py`` and
``tests/sharedfs/test_flow_two_hosts.py``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import pathlib
import uuid
from collections.abc import Iterator

import pytest

import fsjobs
from fsjobs import (
    InvalidJob,
    InvalidSettings,
    Job,
    JobStatus,
    Worker,
    _names,
    _periodic,
    _unique,
    cli,
)
from fsjobs._periodic_runner import Keeper
from fsjobs._schedule import tick_key
from fsjobs.store import Ending, Outcome, Store

from .test_flow import ManualClock

HANG_GUARD = 60.0
S = dt.timedelta(seconds=1)


def unique_name() -> str:
    return f"tests.unit.periodic.p{uuid.uuid4().hex[:12]}"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def queue(root: pathlib.Path, clock: ManualClock) -> Iterator[fsjobs.Queue]:
    q = fsjobs.Queue(root, staleness=0, clock=clock)
    yield q
    q.close()


def finish_all(store: Store) -> list[str]:
    """Claim and complete every due job of "default" (no worker, no event loop)."""
    done = []
    for name in store.ready("default"):
        claim = store.claim("default", name, "w-test")
        assert claim is not None
        store.finish(claim, Outcome(Ending.COMPLETED, result=None))
        done.append(claim.job_id)
    return done


def tick_jobs(store: Store) -> dict[str, list[str]]:
    """Every job under the root by its tick key."""
    out: dict[str, list[str]] = {}
    for state in store.list_jobs(None, None, 1000):
        out.setdefault(state.unique_key or "", []).append(state.id)
    return out


# -- the decorator -----------------------------------------------------------------------------


def test_the_decorator_checks_the_schedule_and_options(queue: fsjobs.Queue) -> None:
    with pytest.raises(InvalidSettings):
        queue.periodic("61 * * * *", name=unique_name())
    with pytest.raises(InvalidSettings):
        queue.periodic(every=0, name=unique_name())
    with pytest.raises(InvalidSettings, match="unique key"):
        queue.periodic(every=5, name=unique_name(), unique_key="k")
    with pytest.raises(TypeError):
        queue.periodic(every=5, name=unique_name(), colour="red")

    def local() -> None:
        pass

    with pytest.raises(InvalidJob, match="name="):
        queue.periodic(every=5, name="a:b")(local)


def test_a_periodic_task_is_a_task_with_its_options(queue: fsjobs.Queue) -> None:
    name = unique_name()

    @queue.periodic(every=dt.timedelta(minutes=5), name=name, queue="reports", max_attempts=3)
    def report() -> int:
        return 7

    assert report() == 7, "calling it runs the function"
    (periodic,) = [p for p in _periodic.registered(queue.root) if p.name == name]
    assert (periodic.queue, periodic.schedule.every, periodic.task.task_name) == (
        "reports",
        300,
        name,
    )
    assert report.job().max_attempts == 3
    other = fsjobs.Queue(queue.root.replace("jobs", "other"))
    assert name not in {p.name for p in _periodic.registered(other.root)}, "per root"


# -- tick keys -------------------------------------------------------------------------------


def test_a_tick_key_stays_taken_after_its_job_is_final_and_pruned(
    queue: fsjobs.Queue, clock: ManualClock
) -> None:
    store = queue.store
    key = tick_key("app.cleanup", clock.now())
    (first,) = store.push_many([(Job(func="x.y", unique_key=key), "default")])
    assert finish_all(store) == [first]
    assert store.push_many([(Job(func="x.y", unique_key=key), "default")]) == [first]
    clock.advance(7200)
    assert store.prune("default", clock.now(), [JobStatus.COMPLETED]) == 1
    with pytest.raises(fsjobs.JobNotFound):
        store.get(first)
    assert store.push_many([(Job(func="x.y", unique_key=key), "default")]) == [first], (
        "pruned, but the tick was pushed once: never again"
    )
    assert store.ready("default") == []
    # An ordinary key is free again once its job is final (the rule ticks are an exception to).
    (ordinary,) = store.push_many([(Job(func="x.y", unique_key="report-1"), "default")])
    finish_all(store)
    assert store.push_many([(Job(func="x.y", unique_key="report-1"), "default")]) != [ordinary]


def test_only_a_fenced_staging_marker_frees_a_tick_key(
    queue: fsjobs.Queue, clock: ManualClock, monkeypatch: pytest.MonkeyPatch, root: pathlib.Path
) -> None:
    store = queue.store
    key = tick_key("app.cleanup", clock.now())

    def lost(*args: object) -> None:
        raise fsjobs.StoreError("the disk went away")

    monkeypatch.setattr(_unique, "commit", lost)
    with pytest.raises(fsjobs.StoreError):
        store.push_many([(Job(func="x.y", unique_key=key), "default")])
    monkeypatch.undo()
    assert any(n.startswith("dead.") for n in os.listdir(root / "tmp")), "the pusher fenced itself"
    (job_id,) = store.push_many([(Job(func="x.y", unique_key=key), "default")])
    assert store.get(job_id).status is JobStatus.PENDING, "the key was free: pushed"


def test_a_dead_pushers_tick_key_is_fenced_then_pushed(
    queue: fsjobs.Queue, clock: ManualClock, root: pathlib.Path
) -> None:
    """A pusher killed between taking the key and committing: a rival fences it and pushes."""
    store = queue.store
    key = tick_key("app.cleanup", clock.now())
    tree = store.tree
    tree.for_writing()
    dead_id = "01hzzzzzzz0000zzzzzzzz"
    key_fd = tree.dirs.open_fd(_unique.key_dir(key), create=True)
    try:
        (root / "tmp" / f"name.{dead_id}.abc").write_bytes(b"")  # its staging, not locked
        body = {"id": dead_id, "staging": f"name.{dead_id}.abc", "queue": "default", "key": key}
        (root / _names.UNIQUE / _unique.key_dir(key)[1] / "0000000001").write_text(json.dumps(body))
    finally:
        os.close(key_fd)
    (job_id,) = store.push_many([(Job(func="x.y", unique_key=key), "default")])
    assert job_id != dead_id and store.get(job_id).status is JobStatus.PENDING
    assert (root / "tmp" / f"dead.name.{dead_id}.abc").exists()


def test_prune_removes_old_tick_keys_but_the_newest_two_and_unfinished_ones(
    queue: fsjobs.Queue, clock: ManualClock
) -> None:
    store = queue.store
    start = clock.now().replace(microsecond=0)
    keys = [tick_key("hourly", start + n * 3600 * S) for n in range(6)]
    ids = [store.push_many([(Job(func="x.y", unique_key=k), "default")])[0] for k in keys]
    finish_all(store)
    held = store.push_many([(Job(func="x.y", unique_key=tick_key("held", start)), "default")])
    store.hold(held[0])
    store.push_many([(Job(func="x.y", unique_key=tick_key("held", start + S)), "default")])
    store.push_many([(Job(func="x.y", unique_key=tick_key("held", start + 2 * S)), "default")])
    store.write_schedule("hourly", {"schedule": "every 3600 s"})  # the root uses periodic now
    clock.advance(6 * 3600 + 1)
    queue_prune = asyncio.run(queue.prune(0, queue="default"))
    assert queue_prune == 6, "the jobs"
    left = {k: store.key_taken(k) for k in keys}
    assert left == {k: k in keys[-2:] for k in keys}, "the newest two stay, however old"
    assert store.key_taken(tick_key("held", start)), "an unfinished job keeps its key"
    assert ids


# -- which ticks a worker pushes -----------------------------------------------------------------


def keeper_for(queue: fsjobs.Queue, clock: ManualClock, **kw: object) -> tuple[Keeper, str]:
    name = unique_name()
    queue.periodic(name=name, **kw)(lambda: None)  # type: ignore[arg-type]
    (periodic,) = [p for p in _periodic.registered(queue.root) if p.name == name]
    return Keeper(queue, [periodic], "w-test", clock), name


def keep(keeper: Keeper, clock: ManualClock) -> None:
    asyncio.run(keeper._keep(keeper.schedules[0], clock.now()))


def pushed_ticks(queue: fsjobs.Queue, name: str) -> list[str]:
    keys = tick_jobs(queue.store)
    return sorted("T" + k[-9:-1] for k in keys if f":{name}:" in k)  # "T12:00:00"


def test_a_worker_pushes_each_tick_within_its_window_once(
    queue: fsjobs.Queue, clock: ManualClock
) -> None:
    keeper, name = keeper_for(queue, clock, every=10)
    clock.wall = clock.wall.replace(second=3, microsecond=0)  # 12:00:03, tick 12:00:00
    keep(keeper, clock)
    keep(keeper, clock)
    clock.advance(6)  # 12:00:09: same tick
    keep(keeper, clock)
    clock.advance(2)  # 12:00:11
    keep(keeper, clock)
    clock.advance(30)  # 12:00:41: 12:00:20 and 12:00:30 were missed (this worker slept)
    keep(keeper, clock)
    assert pushed_ticks(queue, name) == ["T12:00:00", "T12:00:10", "T12:00:40"]
    jobs = queue.store.list_jobs(None, None, 10)
    assert {j.scheduled_at for j in jobs} == {
        dt.datetime(2024, 5, 1, 12, 0, s, tzinfo=dt.UTC) for s in (0, 10, 40)
    }, "scheduled_at is the tick"


def test_a_tick_past_its_window_is_not_pushed_without_catch_up(
    queue: fsjobs.Queue, clock: ManualClock
) -> None:
    keeper, name = keeper_for(queue, clock, cron="0 * * * *")
    clock.wall = clock.wall.replace(minute=1, second=0, microsecond=0)  # 13:01: window ended
    keep(keeper, clock)
    assert pushed_ticks(queue, name) == []
    clock.wall = clock.wall.replace(hour=13, minute=0, second=59)
    keep(keeper, clock)
    assert pushed_ticks(queue, name) == ["T13:00:00"]


def test_catch_up_pushes_the_latest_missed_tick_with_no_key(
    queue: fsjobs.Queue, clock: ManualClock
) -> None:
    keeper, name = keeper_for(queue, clock, cron="0 * * * *", catch_up=True)
    clock.wall = clock.wall.replace(hour=15, minute=20, second=0, microsecond=0)
    keep(keeper, clock)
    assert pushed_ticks(queue, name) == ["T15:00:00"], "the latest missed one only"
    clock.wall = clock.wall.replace(hour=16, minute=0, second=5)
    keep(keeper, clock)
    assert pushed_ticks(queue, name) == ["T15:00:00", "T16:00:00"], "not 15:00 twice"
    other, _ = keeper, None
    fresh = Keeper(queue, other.schedules, "w-other", clock)
    clock.wall = clock.wall.replace(hour=17, minute=0, second=30)
    asyncio.run(fresh._keep(fresh.schedules[0], clock.now()))
    assert pushed_ticks(queue, name) == ["T15:00:00", "T16:00:00", "T17:00:00"], (
        "16:00 has a key: another worker's catch-up leaves it"
    )


def test_two_workers_push_one_job_per_tick(root: pathlib.Path, clock: ManualClock) -> None:
    a = fsjobs.Queue(root, staleness=0, clock=clock)
    b = fsjobs.Queue(root, staleness=0, clock=clock)
    try:
        keeper, name = keeper_for(a, clock, every=1)
        other = Keeper(b, keeper.schedules, "w-b", clock)
        for _ in range(5):
            keep(keeper, clock)
            asyncio.run(other._keep(other.schedules[0], clock.now()))
            clock.advance(1)
        keys = [k for k in tick_jobs(a.store) if f":{name}:" in k]
        assert len(keys) == 5 and all(len(tick_jobs(a.store)[k]) == 1 for k in keys)
    finally:
        a.close()
        b.close()


def test_run_until_empty_keeps_no_schedule(root: pathlib.Path) -> None:
    queue = fsjobs.Queue(root, staleness=0)
    try:
        queue.periodic(every=1, name=unique_name())(lambda: None)  # type: ignore[arg-type]

        async def drain() -> int:
            async with asyncio.timeout(HANG_GUARD):
                return await Worker(queue).run_until_empty()

        assert asyncio.run(drain()) == 0
        assert not (root / "periodic").exists()
    finally:
        queue.close()


# -- fsjobs schedules --------------------------------------------------------------------------


def test_fsjobs_schedules_lists_last_and_next_tick(
    queue: fsjobs.Queue,
    clock: ManualClock,
    root: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    keeper, name = keeper_for(queue, clock, cron="*/5 * * * *", timezone="Europe/Paris")
    # The command line reads with the real clock: the tick must be a recent one.
    real = dt.datetime.now(dt.UTC)
    clock.wall = real.replace(minute=real.minute - real.minute % 5, second=2, microsecond=0)
    tick = clock.wall.replace(second=0).isoformat()
    keep(keeper, clock)
    written = json.loads((root / "periodic" / f"{name}.json").read_text())
    assert (written["schedule"], written["timezone"], written["queue"]) == (
        "*/5 * * * *",
        "Europe/Paris",
        "default",
    )
    assert written["next_tick"] == (clock.wall.replace(second=0) + 300 * S).isoformat()
    features = json.loads((root / "fsjobs.json").read_text())["features"]
    assert any(f.startswith("periodic") for f in features)
    (root / "periodic" / "broken.json").write_text("{")
    assert cli.main(["--root", str(root), "schedules", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows[name]["last_tick"] == tick
    assert rows[name]["next_tick"] > rows[name]["last_tick"]
    assert "periodic/broken.json" in rows["broken"]["problem"]
    assert cli.main(["--root", str(root), "schedules"]) == 0
    text = capsys.readouterr().out
    assert f"{name}: */5 * * * * (Europe/Paris) -> queue default" in text
    assert f"last tick: {tick}" in text
