"""
The injectable clock.

Wall time (`now`) is only used for what users see and for `scheduled_at`;
anything measured between two moments of one process (leases, timeouts) uses
`monotonic`, which never jumps when someone sets the system clock.
"""

from __future__ import annotations

import datetime as dt
import time
import typing


class Clock(typing.Protocol):
    def now(self) -> dt.datetime:
        """The current time, timezone-aware UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards."""
        ...


class SystemClock:
    """The real clocks of this host."""

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    def monotonic(self) -> float:
        return time.monotonic()


SYSTEM_CLOCK: typing.Final = SystemClock()


def to_ms(when: dt.datetime) -> int:
    """Milliseconds since the epoch of an aware datetime."""
    return int(when.timestamp() * 1000)


def from_ms(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


def format_time(when: dt.datetime) -> str:
    """ISO 8601 in UTC with milliseconds and a ``Z``: how every time is written on disk."""
    return when.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: str) -> dt.datetime:
    """The inverse of `format_time`; a time without a timezone is a ValueError."""
    when = dt.datetime.fromisoformat(text)
    if when.tzinfo is None:
        raise ValueError(f"naive timestamp {text!r}")
    return when
