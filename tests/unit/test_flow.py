"""
Pause, resume and queue caps (`Queue.pause/resume/configure/info`, `fsjobs._flow`,
`fsjobs._slots`), in one process. Multi-process behaviour is in
``tests/integration/test_flow_processes.py``.

No sleeps and no timed assertions: time is a `ManualClock` the test moves.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import pathlib
import uuid
from collections.abc import Iterator

import pytest

import fsjobs
from fsjobs import (
    InvalidSettings,
    Job,
    JobStatus,
    QueueInfo,
    SyncQueue,
    Worker,
    _claim,
    _flow,
    _slots,
)
from fsjobs._queue_settings import UNSET, QueueSettings, parse_rate
from fsjobs.store import Store

HANG_GUARD = 60.0


class ManualClock:
    """Wall and monotonic time that move only when the test says."""

    def __init__(self) -> None:
        self.wall = dt.datetime(2024, 5, 1, 12, 0, 0, 250_000, tzinfo=dt.UTC)
        self.mono = 1000.0

    def now(self) -> dt.datetime:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.wall += dt.timedelta(seconds=seconds)
        self.mono += seconds


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def store(root: pathlib.Path, clock: ManualClock) -> Iterator[Store]:
    s = Store(root, clock=clock, staleness=0)
    yield s
    s.close()


@pytest.fixture
def sync(root: pathlib.Path) -> Iterator[SyncQueue]:
    q = SyncQueue(root, staleness=0)
    yield q
    q.close()


def name() -> str:
    return f"tests.unit.flow.t{uuid.uuid4().hex[:12]}"


async def drain(worker: Worker, **kw: object) -> int:
    async with asyncio.timeout(HANG_GUARD):  # a hang guard, not a timing
        return await worker.run_until_empty(**kw)  # type: ignore[arg-type]


# -- settings: parsing and validation ------------------------------------------------------


@pytest.mark.parametrize("text", ["0/s", "5/d", "-1/s", "1.5/s", "10", "/s", "10/sec", "", None, 5])
def test_bad_rates_are_value_errors(text: object) -> None:
    with pytest.raises(InvalidSettings) as caught:
        parse_rate(text)
    assert isinstance(caught.value, ValueError)


def test_rates_and_their_windows() -> None:
    assert str(parse_rate("10/s")) == "10/s"
    assert str(parse_rate(" 100 / m ")) == "100/m"
    hourly = parse_rate("3/h")
    assert (hourly.count, hourly.seconds) == (3, 3600)
    assert hourly.window(7200.5) == 2 and hourly.window_end(2) == 10800


@pytest.mark.parametrize("value", [0, -1, True, 2.0, "2", 100_001])
def test_bad_concurrency_is_a_value_error(sync: SyncQueue, value: object) -> None:
    with pytest.raises(ValueError, match="concurrency"):
        sync.configure(concurrency=value)  # type: ignore[arg-type]
    assert sync.info() == QueueInfo(False, None, None), "nothing was written"


def test_configure_changes_only_the_keys_given(sync: SyncQueue, root: pathlib.Path) -> None:
    assert sync.configure(concurrency=4) == QueueInfo(False, 4, None)
    assert sync.configure(rate="20/m") == QueueInfo(False, 4, "20/m")
    settings = root / "queues" / "default" / "settings.json"
    assert json.loads(settings.read_text()) == {"concurrency": 4, "rate": "20/m"}, "cat-able"
    assert sync.configure(concurrency=None) == QueueInfo(False, None, "20/m")
    assert sync.configure() == QueueInfo(False, None, "20/m"), "no key given: nothing changes"
    with pytest.raises(InvalidSettings):
        sync.configure(rate="0/s")
    assert sync.info().rate == "20/m"
    assert sync.configure(rate=None) == QueueInfo(False, None, None)
    assert not settings.exists(), "no cap left: no file"
    features = json.loads((root / "fsjobs.json").read_text())["features"]
    assert any(f.startswith("queue_settings") for f in features)


def test_settings_are_per_queue_and_default_to_the_queues_own(root: pathlib.Path) -> None:
    video = SyncQueue(root, "video", staleness=0)
    try:
        video.configure(concurrency=2)
        video.pause("emails")
        assert video.info() == QueueInfo(False, 2, None)
        assert video.info("emails") == QueueInfo(True, None, None)
        assert video.info("default") == QueueInfo(False, None, None)
    finally:
        video.close()


def test_a_malformed_settings_file_is_a_clear_error_naming_it(
    sync: SyncQueue, root: pathlib.Path
) -> None:
    sync.configure(concurrency=2)
    settings = root / "queues" / "default" / "settings.json"
    for body in ("{not json", '["a"]', '{"concurrency": 0}', '{"concurrency": 1, "color": 3}'):
        settings.write_text(body)
        with pytest.raises(InvalidSettings, match=r"queues/default/settings\.json"):
            sync.info()
        with pytest.raises(InvalidSettings, match=r"queues/default/settings\.json"):
            sync.configure(rate="1/s")
    settings.unlink()
    settings.symlink_to("/etc/hostname")
    with pytest.raises(InvalidSettings, match=r"queues/default/settings\.json"):
        sync.info()


# -- pause and resume --------------------------------------------------------------------------


def test_pause_and_resume_are_idempotent(sync: SyncQueue, root: pathlib.Path) -> None:
    assert sync.pause() is True
    assert sync.pause() is False
    assert (root / "queues" / "default" / "paused").is_file()
    assert sync.info().paused
    assert sync.resume() is True
    assert sync.resume() is False
    assert not sync.info().paused
    assert SyncQueue(root / "nowhere").resume() is False, "nothing to resume: nothing created"
    assert not (root / "nowhere").exists()


@pytest.mark.asyncio
async def test_a_paused_queue_accepts_pushes_and_runs_nothing(root: pathlib.Path) -> None:
    queue = fsjobs.Queue(root, staleness=0)
    ran: list[int] = []

    @queue.task(name=name())
    def work(n: int) -> None:
        ran.append(n)

    try:
        await queue.pause()
        job_id = await work.enqueue(n=1)
        later = await queue.push(work.job(n=2).with_scheduled_at(queue.clock.now()))
        assert await drain(Worker(queue)) == 0
        assert await drain(Worker(queue), wait_scheduled=True, max_wait=30) == 0, (
            "a paused queue counts as empty, even for wait_scheduled"
        )
        assert (await queue.get(job_id)).status is JobStatus.PENDING
        await queue.resume()
        assert await drain(Worker(queue)) == 2
        assert sorted(ran) == [1, 2] and (await queue.get(later)).status is JobStatus.COMPLETED
    finally:
        queue.close()


def test_workers_look_at_the_pause_at_most_every_100_ms(root: pathlib.Path) -> None:
    """A store caches its look at a queue's flow files for 100 ms of its clock."""
    clock = ManualClock()
    looker = Store(root, clock=clock, staleness=0)
    other = Store(root, staleness=0)
    try:
        other.push_many([(Job(func="x.y"), "default")])
        assert not looker.flow("default").paused
        other.pause("default")
        clock.advance(0.099)
        assert not looker.flow("default").paused, "cached"
        clock.advance(0.002)
        assert looker.flow("default").paused, "looked again"
        assert looker.ready("default"), "a pause hides nothing from readers"
    finally:
        looker.close()
        other.close()


@pytest.mark.asyncio
async def test_a_worker_serves_no_queue_whose_settings_it_cannot_read(
    root: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    queue = fsjobs.Queue(root, staleness=0)

    @queue.task(name=name())
    def work() -> None:
        pass

    try:
        job_id = await work.enqueue()
        (root / "queues" / "default" / "settings.json").write_text("{broken")
        with caplog.at_level(logging.ERROR, logger="fsjobs.worker"):
            assert await drain(Worker(queue)) == 0
        assert "queues/default/settings.json" in caplog.text
        assert (await queue.get(job_id)).status is JobStatus.PENDING
        (root / "queues" / "default" / "settings.json").unlink()
        assert await drain(Worker(queue)) == 1
    finally:
        queue.close()


# -- concurrency slots -----------------------------------------------------------------------------


def slots(root: pathlib.Path, queue: str = "default") -> dict[str, list[str]]:
    top = root / "queues" / queue / "slots"
    return {k.name: sorted(os.listdir(k)) for k in sorted(top.iterdir())} if top.exists() else {}


def test_slots_are_taken_up_to_the_cap_and_freed(store: Store, root: pathlib.Path) -> None:
    store.configure("default", 2, UNSET)
    store.register_worker("w-one")
    a = _slots.take_slot(store.tree, "default", 2, "w-one")
    b = _slots.take_slot(store.tree, "default", 2, "w-one")
    assert a is not None and b is not None and {a.k, b.k} == {"0", "1"}
    assert _slots.take_slot(store.tree, "default", 2, "w-one") is None, "cap reached"
    assert slots(root) == {"0": [a.owner], "1": [b.owner]}
    assert a.owner.startswith("w-one.")
    assert store.free_slot(a) is True
    assert store.free_slot(a) is False, "freed once"
    assert slots(root) == {"1": [b.owner]}


def test_rescue_frees_the_slot_of_a_dead_or_silent_worker(
    store: Store, root: pathlib.Path, clock: ManualClock
) -> None:
    lock, hb = store.register_worker("w-alive")
    dead = _slots.take_slot(store.tree, "default", 3, "w-dead")  # never held a lock
    alive = _slots.take_slot(store.tree, "default", 3, "w-alive")
    assert dead is not None and alive is not None
    assert store.rescue_slots("default", "me", lease=30) == [dead.k]
    assert slots(root) == {alive.k: [alive.owner]}
    assert store.rescue_slots("default", "me", lease=30) == [], "alive, heartbeat seen"
    clock.advance(29.9)
    assert store.rescue_slots("default", "me", lease=30) == []
    clock.advance(0.2)
    assert store.rescue_slots("default", "me", lease=30) == [alive.k], "silent for a lease"
    assert slots(root) == {}
    os.close(lock)
    os.close(hb)


def test_an_ownerless_slot_is_freed_after_a_lease_on_the_rescuers_clock(
    store: Store, root: pathlib.Path, clock: ManualClock
) -> None:
    store.configure("default", 2, UNSET)
    (root / "queues" / "default" / "slots" / "0").mkdir(parents=True)  # crash after mkdir
    assert store.rescue_slots("default", "me", lease=30) == [], "first seen now"
    clock.advance(29)
    assert store.rescue_slots("default", "me", lease=30) == []
    clock.advance(1)
    assert store.rescue_slots("default", "me", lease=30) == ["0"]
    assert slots(root) == {}
    assert not any(n.startswith("slot.") for n in os.listdir(root / "tmp")), "moved, then deleted"


def test_a_claim_that_fails_after_taking_a_slot_frees_it(
    store: Store, root: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = QueueSettings(concurrency=2)
    store.push_many([(Job(func="x.y"), "default")])
    names = store.ready("default")

    def broken(*args: object) -> None:
        raise OSError(5, "EIO")

    monkeypatch.setattr(_claim, "claim", broken)
    got = store.claim_limited("default", names, "w-one", 1, settings)
    assert isinstance(got.error, OSError) and not got.claims
    assert slots(root) == {}, "the slot went back"

    def crash(*args: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(_claim, "claim", crash)
    with pytest.raises(RuntimeError):
        store.claim_limited("default", names, "w-one", 1, settings)
    assert slots(root) == {}, "the slot went back"
    monkeypatch.undo()
    got = store.claim_limited("default", ["queues/default/pending/no/such"], "w-one", 1, settings)
    assert not got.claims and slots(root) == {}, "nothing won: no slot kept"
    got = store.claim_limited("default", store.ready("default"), "w-one", 1, settings)
    assert [c.job_id for c in got.claims] == list(got.slots)
    assert list(slots(root)) == [got.slots[got.claims[0].job_id].k]


@pytest.mark.asyncio
async def test_a_worker_keeps_to_the_cap_and_frees_every_slot(root: pathlib.Path) -> None:
    queue = fsjobs.Queue(root, staleness=0)
    running = peak = 0

    @queue.task(name=name())
    async def work() -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0)  # let the worker claim more if it may
        await asyncio.sleep(0)
        running -= 1

    try:
        await queue.configure(concurrency=2)
        await queue.push_many([work.job() for _ in range(12)])
        assert await drain(Worker(queue, concurrency=6)) == 12
        assert peak == 2
        assert slots(root) == {}
    finally:
        queue.close()


@pytest.mark.asyncio
async def test_a_cap_set_while_jobs_run_holds_them_no_slot(root: pathlib.Path) -> None:
    """Documented: jobs already running when a cap first appears hold no slot."""
    queue = fsjobs.Queue(root, staleness=0)
    started = asyncio.Event()
    go = asyncio.Event()

    @queue.task(name=name())
    async def work() -> None:
        started.set()
        await go.wait()

    try:
        await queue.push_many([work.job(), work.job()])
        worker = Worker(queue, concurrency=1)
        run = asyncio.create_task(drain(worker))
        await started.wait()
        await queue.configure(concurrency=1)
        assert slots(root) == {}
        go.set()
        assert await run == 2
        assert slots(root) == {}
    finally:
        queue.close()


# -- rate tokens -------------------------------------------------------------------------------


def test_rate_tokens_per_window_and_old_windows_go(
    store: Store, root: pathlib.Path, clock: ManualClock
) -> None:
    rate = parse_rate("3/s")
    looks = store._looks
    took = [_flow.take_token(store.tree, looks, "default", rate) for _ in range(4)]
    window = int(clock.now().timestamp())
    assert took[:3] == [None, None, None]
    assert took[3] == window + 1, "no token left: the window's end"
    assert sorted(os.listdir(root / "queues/default/rate" / str(window))) == ["0", "1", "2"]
    for step in range(1, 5):
        clock.advance(1)
        assert _flow.take_token(store.tree, looks, "default", rate) is None
        left = sorted(int(n) for n in os.listdir(root / "queues/default/rate"))
        assert left == [w for w in range(window, window + step + 1) if w >= window + step - 2]


@pytest.mark.asyncio
async def test_a_spent_rate_holds_claims_until_the_next_window(root: pathlib.Path) -> None:
    clock = ManualClock()
    queue = fsjobs.Queue(root, staleness=0, clock=clock)
    ran: list[int] = []

    @queue.task(name=name())
    def work(n: int) -> None:
        ran.append(n)

    async def until_held_back(count: int) -> None:
        while len(ran) < count or not worker._gate.held_back("default"):
            await asyncio.sleep(0.01)  # polls what the worker did; the clock stands still

    try:
        await queue.configure(rate="2/m")
        await queue.push_many([work.job(n=n) for n in range(4)])
        worker = Worker(queue, concurrency=4, clock=clock)
        run = asyncio.create_task(drain(worker))
        await until_held_back(2)
        assert len(ran) == 2, "two claims in this window, however many slots are free"
        clock.advance(60)
        await work.enqueue(n=4)  # an in-process push wakes the waiting worker
        await until_held_back(4)
        assert len(ran) == 4
        clock.advance(60)
        await work.enqueue(n=5)
        assert await run == 6
    finally:
        queue.close()


@pytest.mark.asyncio
async def test_a_resume_wakes_a_worker_that_looked_a_moment_ago(root: pathlib.Path) -> None:
    """
    The look is cached for 100 ms of the store's clock, which stands still here: only
    the wake-up of the resume (an in-process push signal, or the inotify bell of
    another process on this host) makes the worker look again at a paused queue.
    """
    clock = ManualClock()
    queue = fsjobs.Queue(root, staleness=0, clock=clock)
    other = fsjobs.Queue(root, staleness=0)  # another store, with a cache of its own
    done = asyncio.Event()

    @queue.task(name=name())
    def work() -> None:
        done.set()

    try:
        await queue.pause()
        job_id = await work.enqueue()
        worker = Worker(queue, clock=clock)
        running = asyncio.create_task(worker.run())
        while "default" not in worker._gate._states:  # the worker's first look
            await asyncio.sleep(0.01)
        assert worker._gate.paused("default")
        assert await other.resume()
        async with asyncio.timeout(HANG_GUARD):
            await done.wait()
        worker.stop()
        await running
        assert (await queue.get(job_id)).status is JobStatus.COMPLETED
    finally:
        queue.close()
        other.close()
