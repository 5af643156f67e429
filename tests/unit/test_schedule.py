"""
Tick math of periodic schedules (`fsjobs._schedule`): no I/O, no clock but the one given.

What a user relies on: ``every=T`` ticks at multiples of T since the Unix epoch; cron
ticks fall where cron says in the schedule's timezone, daylight saving included; a
tick is pushed only within min(T, 60 s) after it; ``catch_up`` picks the latest tick
whose window has passed; a tick's unique key names it to the second, in UTC.
"""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fsjobs import InvalidSettings
from fsjobs._schedule import Schedule, parse_tick_key, tick_key

UTC = dt.UTC
S = dt.timedelta(seconds=1)


def at(*args: int, tz: dt.tzinfo = UTC) -> dt.datetime:
    return dt.datetime(*args, tzinfo=tz)  # type: ignore[misc]


@given(
    every=st.integers(1, 7 * 86400),
    now=st.datetimes(
        min_value=dt.datetime(2001, 1, 1),  # noqa: DTZ001 - hypothesis adds the timezone
        max_value=dt.datetime(2099, 1, 1),  # noqa: DTZ001
        timezones=st.just(UTC),
    ),
)
def test_every_ticks_at_multiples_of_its_period_since_the_epoch(
    every: int, now: dt.datetime
) -> None:
    s = Schedule(every=every)
    latest, following = s.latest(now), s.following(now)
    assert latest is not None and following is not None
    assert latest <= now < following
    assert following - latest == dt.timedelta(seconds=every)
    assert int(latest.timestamp()) % every == 0
    assert s.window(latest) == min(every, 60)


def test_every_accepts_a_timedelta_or_whole_seconds_only() -> None:
    assert Schedule.of(None, dt.timedelta(minutes=5), "UTC").every == 300
    assert Schedule.of(None, 7, "UTC").every == 7
    for bad in (0, -1, 1.5, dt.timedelta(milliseconds=1500), True):
        with pytest.raises(InvalidSettings):
            Schedule.of(None, bad, "UTC")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("cron", "every", "timezone"),
    [
        (None, None, "UTC"),
        ("* * * * *", 10, "UTC"),
        ("61 * * * *", None, "UTC"),
        ("not cron", None, "UTC"),
        ("0 0 30 2 *", None, "UTC"),  # never happens
        ("* * * * *", None, "Mars/Olympus"),
        ("* * * * *", None, "../etc/passwd"),
    ],
)
def test_bad_schedules_are_refused_as_value_errors(
    cron: str | None, every: int | None, timezone: str
) -> None:
    with pytest.raises(InvalidSettings) as caught:
        Schedule(cron=cron, every=every, timezone=timezone)
    assert isinstance(caught.value, ValueError)


def test_cron_ticks_fall_in_the_schedule_timezone() -> None:
    utc = Schedule(cron="0 9 * * *")
    ny = Schedule(cron="0 9 * * *", timezone="America/New_York")
    now = at(2024, 6, 1, 12, 0)
    assert utc.latest(now) == at(2024, 6, 1, 9, 0)
    assert ny.latest(now) == at(2024, 5, 31, 13, 0)  # 09:00 EDT
    assert ny.following(now) == at(2024, 6, 1, 13, 0)
    winter = at(2024, 12, 1, 12, 0)
    assert ny.following(winter) == at(2024, 12, 1, 14, 0)  # 09:00 EST


def test_a_time_skipped_by_spring_forward_fires_after_the_jump() -> None:
    """Berlin, 31 March 2024: 02:00 -> 03:00. A 02:30 job runs at 03:00 local, once."""
    s = Schedule(cron="30 2 * * *", timezone="Europe/Berlin")
    ticks = [at(2024, 3, 29, 0, 0)]
    for _ in range(4):
        nxt = s.following(ticks[-1])
        assert nxt is not None
        ticks.append(nxt)
    assert ticks[1:] == [
        at(2024, 3, 29, 1, 30),  # 02:30 CET
        at(2024, 3, 30, 1, 30),
        at(2024, 3, 31, 1, 0),  # 03:00 CEST: right after the jump
        at(2024, 4, 1, 0, 30),  # 02:30 CEST
    ]
    for tick in ticks[1:]:
        assert s.latest(tick) == tick and s.latest(tick + 5 * S) == tick


def test_fall_back_runs_a_fixed_time_once_and_every_15_minutes_in_both_hours() -> None:
    """Berlin, 27 October 2024: 03:00 CEST -> 02:00 CET; 02:xx happens twice."""
    daily = Schedule(cron="30 2 * * *", timezone="Europe/Berlin")
    assert daily.following(at(2024, 10, 26, 12, 0)) == at(2024, 10, 27, 0, 30)
    assert daily.following(at(2024, 10, 27, 0, 30)) == at(2024, 10, 28, 1, 30)
    quarter = Schedule(cron="*/15 * * * *", timezone="Europe/Berlin")
    ticks = [at(2024, 10, 26, 23, 50)]
    for _ in range(9):
        nxt = quarter.following(ticks[-1])
        assert nxt is not None
        ticks.append(nxt)
    # every 15 minutes of UTC: both 02:00-02:45 hours are there
    assert ticks[1:] == [at(2024, 10, 27, 0, 0) + n * 15 * 60 * S for n in range(9)]
    for before, after in itertools.pairwise(ticks[1:]):
        assert quarter.latest(after - S) == before, "latest() walks back through the fold"


def test_the_window_is_the_gap_to_the_next_tick_at_most_60_s() -> None:
    assert Schedule(every=1).window(at(2024, 1, 1)) == 1
    assert Schedule(every=45).window(at(2024, 1, 1)) == 45
    assert Schedule(every=3600).window(at(2024, 1, 1)) == 60
    assert Schedule(cron="*/10 * * * * *").window(at(2024, 1, 1, 0, 0, 10)) == 10  # seconds first
    assert Schedule(cron="0 * * * *").window(at(2024, 1, 1, 5)) == 60


def test_a_tick_is_due_only_within_its_window() -> None:
    hourly = Schedule(every=3600)
    tick = at(2024, 1, 1, 5)
    assert hourly.due(tick) == tick
    assert hourly.due(tick + 59 * S) == tick
    assert hourly.due(tick + 60 * S) is None, "past min(T, 60 s): not pushed any more"
    fast = Schedule(every=10)
    assert fast.due(tick + 9 * S) == tick
    assert fast.due(tick + 10 * S) == tick + 10 * S, "the next one is due instead"


def test_catch_up_is_the_latest_tick_whose_window_passed() -> None:
    hourly = Schedule(every=3600)
    tick = at(2024, 1, 1, 5)
    assert hourly.missed(tick + 30 * S) == tick - 3600 * S, "the current one is still due"
    assert hourly.missed(tick + 61 * S) == tick, "missed, not due"
    daily = Schedule(cron="0 3 * * *", timezone="Europe/Paris")
    assert daily.missed(at(2024, 1, 10, 12)) == at(2024, 1, 10, 2)  # 03:00 CET


def test_a_tick_key_names_the_tick_to_the_second_in_utc() -> None:
    tick = at(2024, 3, 31, 3, 0, tz=dt.timezone(dt.timedelta(hours=2)))
    key = tick_key("app.cleanup", tick)
    assert key == "periodic:app.cleanup:2024-03-31T01:00:00Z"
    assert parse_tick_key(key) == ("app.cleanup", at(2024, 3, 31, 1, 0))
    for other in ("report-1", "periodic:", "periodic:x:2024-03-31 01:00:00Z", "periodic::"):
        assert parse_tick_key(other) is None


def test_ticks_are_whole_seconds() -> None:
    s = Schedule(every=1)
    now = at(2024, 1, 1) + dt.timedelta(microseconds=999_999)
    assert s.latest(now) == at(2024, 1, 1)
    assert s.following(now) == at(2024, 1, 1, 0, 0, 1)
    with pytest.raises(ValueError):
        s.latest(dt.datetime(2024, 1, 1))  # noqa: DTZ001 - a naive time is refused
