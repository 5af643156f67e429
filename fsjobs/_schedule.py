"""
Periodic schedules without I/O: when ticks fall, and which tick a worker may push now.

A schedule is cron text (parsed by cronsim, evaluated in the schedule's
timezone) or ``every`` whole seconds (ticks at multiples of it since the Unix
epoch). Each tick is pushed as a job whose unique key names it,
``periodic:<name>:<tick as %Y-%m-%dT%H:%M:%SZ>``, so that exactly one of the
workers that keep the schedule pushes it.

A worker pushes tick t only while ``now < t + window(t)``, where the window is
the time to the next tick, at most 60 s: a tick missed while no worker ran is
not replayed. With ``catch_up`` it also pushes the latest tick whose window has
passed (`Schedule.missed`), if nobody pushed it.

Daylight saving time follows cronsim (like Debian's cron): a time of day that
a spring-forward skips fires at the first minute after the jump; one that a
fall-back repeats fires once; ``*/15``-like fields fire in both repeated hours.
Ticks are whole seconds.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

import attrs
import cronsim

from .errors import InvalidSettings

#: the prefix of every tick's unique key: such a key stays taken once a job committed under it
PREFIX = "periodic:"
TICK_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
#: the longest time after a tick in which it is still pushed
MAX_WINDOW = 60.0
_SECOND = dt.timedelta(seconds=1)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _zone(name: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise InvalidSettings(f"unknown timezone {name!r}: use an IANA name like 'UTC'") from exc


def _whole_second(at: dt.datetime) -> dt.datetime:
    if at.tzinfo is None:
        raise ValueError("a naive datetime: give a timezone-aware one")
    return at.astimezone(dt.UTC).replace(microsecond=0)


@attrs.frozen
class Schedule:
    """A cron expression in a timezone, or a period of `every` whole seconds."""

    cron: str | None = None
    every: int | None = None
    timezone: str = "UTC"

    def __attrs_post_init__(self) -> None:
        if (self.cron is None) == (self.every is None):
            raise InvalidSettings("give a cron expression or every=, not both and not neither")
        _zone(self.timezone)
        if self.every is not None:
            if type(self.every) is not int or self.every < 1:
                raise InvalidSettings(f"every= must be whole seconds >= 1, not {self.every!r}")
        else:
            if not isinstance(self.cron, str):
                raise InvalidSettings(f"a cron expression is text, not {self.cron!r}")
            try:
                cronsim.CronSim(self.cron, dt.datetime.now(_zone(self.timezone)))
            except cronsim.CronSimError as exc:
                raise InvalidSettings(f"invalid cron expression {self.cron!r}: {exc}") from None

    @classmethod
    def of(cls, cron: str | None, every: dt.timedelta | float | None, timezone: str) -> Schedule:
        """From the arguments of ``@queue.periodic``: `every` as a timedelta or seconds."""
        seconds: int | None = None
        if every is not None:
            total = every.total_seconds() if isinstance(every, dt.timedelta) else every
            if isinstance(total, bool) or total != int(total):
                raise InvalidSettings(f"every= must be whole seconds >= 1, not {every!r}")
            seconds = int(total)
        return cls(cron=cron, every=seconds, timezone=timezone)

    def describe(self) -> str:
        """The schedule as ``fsjobs schedules`` shows it."""
        return self.cron if self.cron is not None else f"every {self.every} s"

    # -- tick math ------------------------------------------------------------------------

    def latest(self, at: dt.datetime) -> dt.datetime | None:
        """The latest tick at or before `at` (UTC); None if the schedule has none."""
        at = _whole_second(at)
        if self.every is not None:
            seconds = int((at - _EPOCH).total_seconds()) // self.every * self.every
            return _EPOCH + dt.timedelta(seconds=seconds)
        assert self.cron is not None
        start = (at + _SECOND).astimezone(_zone(self.timezone))
        try:
            tick = next(cronsim.CronSim(self.cron, start, reverse=True))
        except StopIteration:
            return None
        return tick.astimezone(dt.UTC)

    def following(self, at: dt.datetime) -> dt.datetime | None:
        """The first tick after `at` (UTC); None if the schedule has none."""
        at = _whole_second(at)
        if self.every is not None:
            seconds = int((at - _EPOCH).total_seconds()) // self.every * self.every + self.every
            return _EPOCH + dt.timedelta(seconds=seconds)
        assert self.cron is not None
        try:
            tick = next(cronsim.CronSim(self.cron, at.astimezone(_zone(self.timezone))))
        except StopIteration:
            return None
        return tick.astimezone(dt.UTC)

    def window(self, tick: dt.datetime) -> float:
        """Seconds after `tick` in which it may be pushed: to the next tick, at most 60."""
        if self.every is not None:
            return min(float(self.every), MAX_WINDOW)
        nxt = self.following(tick)
        gap = MAX_WINDOW if nxt is None else (nxt - tick).total_seconds()
        return min(gap, MAX_WINDOW)

    def due(self, now: dt.datetime) -> dt.datetime | None:
        """The tick a worker may push at `now`: the latest one, while in its window."""
        tick = self.latest(now)
        if tick is None or (now - tick).total_seconds() >= self.window(tick):
            return None
        return tick

    def missed(self, now: dt.datetime) -> dt.datetime | None:
        """The latest tick whose window has passed at `now` (what ``catch_up`` may push)."""
        tick = self.latest(now)
        if tick is not None and (now - tick).total_seconds() < self.window(tick):
            tick = self.latest(tick - _SECOND)
        return tick


def tick_key(name: str, tick: dt.datetime) -> str:
    """The unique key of a tick: ``periodic:<name>:<tick as %Y-%m-%dT%H:%M:%SZ>``."""
    return f"{PREFIX}{name}:{tick.astimezone(dt.UTC).strftime(TICK_FORMAT)}"


def parse_tick_key(key: str) -> tuple[str, dt.datetime] | None:
    """(name, tick) of a tick's unique key; None for any other key."""
    if not key.startswith(PREFIX) or len(key) < len(PREFIX) + 22 or key[-21] != ":":
        return None
    try:
        tick = dt.datetime.strptime(key[-20:], TICK_FORMAT).replace(tzinfo=dt.UTC)
    except ValueError:
        return None
    name = key[len(PREFIX) : -21]
    return (name, tick) if name else None


def is_tick_key(key: str) -> bool:
    """Keys that start with ``periodic:`` are the ticks': they stay taken once committed."""
    return key.startswith(PREFIX)
