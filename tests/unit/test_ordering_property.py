"""Run order, property-tested against a model: (priority, ready_at, push order)."""

from __future__ import annotations

import datetime as dt
import tempfile

from hypothesis import given
from hypothesis import strategies as st

from fsjobs import Job
from fsjobs._names import Marker
from fsjobs.store import Store
from fsjobs.testing import FakeClock

Q = "default"
FUNC = "tests.unit.test_ordering_property.nothing"


def _to_ms(when: dt.datetime) -> int:
    """Exact milliseconds since the epoch (the model's own arithmetic, no floats)."""
    return (when - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(milliseconds=1)


offsets = st.none() | st.integers(-3000, 3000) | st.integers(-7_200_000, 7_200_000)
jobs = st.tuples(st.integers(-3, 3), offsets)  # (priority, scheduled_at offset in ms or None)
steps = st.lists(
    st.tuples(st.integers(0, 1500), st.lists(jobs, min_size=1, max_size=3)),
    min_size=1,
    max_size=12,
)


def _start() -> dt.datetime:
    """Two seconds before an hour boundary, a day ago: buckets get crossed, ids stay ordered."""
    now = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    return now.replace(minute=0, second=0, microsecond=0) - dt.timedelta(seconds=2)


def _drain(store: Store) -> list[str]:
    """Claim the queue's head one job at a time until nothing is ready; return the ids."""
    order = []
    while paths := store.ready(Q, limit=1):
        claim = store.claim(Q, paths[0], "w1")
        assert claim is not None
        order.append(claim.job_id)
        store.close_claim(claim)
    return order


@given(steps)
def test_jobs_are_claimed_in_model_order(
    plan: list[tuple[int, list[tuple[int, int | None]]]],
) -> None:
    """Any pushes with priorities and schedules are claimed in (priority, ready_at, push) order."""
    clock = FakeClock(_start())
    model: list[tuple[int, int, int, str]] = []
    latest = 0
    with tempfile.TemporaryDirectory() as root:
        store = Store(root, clock=clock, staleness=0, durable=False)
        try:
            for advance, batch in plan:
                clock.advance(0.001 * advance)
                now = clock.now()
                push_ms = _to_ms(now)
                items = []
                for prio, offset in batch:
                    sched = None if offset is None else now + dt.timedelta(milliseconds=offset)
                    items.append((Job(func=FUNC, priority=prio, scheduled_at=sched), Q))
                ids = store.push_many(items)
                for (prio, offset), job_id in zip(batch, ids, strict=True):
                    ready_at = push_ms if offset is None else max(push_ms, push_ms + offset)
                    latest = max(latest, ready_at)
                    model.append((prio, ready_at, len(model), job_id))
            clock.advance(0.001 * (latest - _to_ms(clock.now()) + 1000))
            store.promote(Q)
            claimed = _drain(store)
        finally:
            store.close()
    assert claimed == [job_id for *_, job_id in sorted(model)]


@given(st.lists(st.tuples(st.integers(-3, 3), st.integers(1, 5000)), min_size=1, max_size=15))
def test_only_due_jobs_are_ready(jobs_: list[tuple[int, int]]) -> None:
    """Before its time a scheduled job is never ready; promote() releases exactly the due ones."""
    clock = FakeClock(_start())
    with tempfile.TemporaryDirectory() as root:
        store = Store(root, clock=clock, staleness=0, durable=False)
        try:
            now = clock.now()
            items = [
                (Job(func=FUNC, priority=p, scheduled_at=now + dt.timedelta(milliseconds=o)), Q)
                for p, o in jobs_
            ]
            ids = store.push_many(items)
            due_at = dict(zip(ids, (o for _, o in jobs_), strict=True))
            elapsed = 0
            for step in sorted({o for _, o in jobs_}):
                clock.advance(0.001 * (step - elapsed - 1))
                store.promote(Q)
                assert all(due_at[i] < step for i in _ready_ids(store))
                clock.advance(0.001)
                elapsed = step
                store.promote(Q)
                assert sorted(_ready_ids(store)) == sorted(i for i in ids if due_at[i] <= step)
        finally:
            store.close()


def _ready_ids(store: Store) -> list[str]:
    return [Marker.parse(p.rsplit("/", 1)[1]).job_id for p in store.ready(Q)]
