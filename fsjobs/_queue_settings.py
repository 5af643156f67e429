"""
A queue's flow settings, without I/O: its caps, how they are written in
``queues/<queue>/settings.json``, and how they are checked.

``{"concurrency": 2, "rate": "100/m"}``: a key that is absent is no cap. A
rate is ``N/s``, ``N/m`` or ``N/h``: at most N claims in each window of that
length, windows aligned to the Unix epoch (see `Rate.window`).
"""

from __future__ import annotations

import enum
import re
import typing

import attrs

from . import _json
from .errors import InvalidSettings

#: the longest a settings file may be (it holds two small values)
MAX_SIZE = 4096
#: the largest cap either setting takes: a slot or a token is a name in a directory
MAX_CAP = 100_000
#: seconds per window, by the unit a rate is written with
WINDOWS = {"s": 1, "m": 60, "h": 3600}
_RATE_RE = re.compile(r"^\s*(\d{1,9})\s*/\s*([smh])\s*$")


class Unset(enum.Enum):
    """The type of `UNSET`: "this setting was not given" (None means "no cap")."""

    UNSET = "unset"

    def __repr__(self) -> str:
        return "UNSET"


UNSET = Unset.UNSET


@attrs.frozen
class Rate:
    """At most `count` claims per window of `seconds` (1, 60 or 3600)."""

    count: int
    seconds: int

    def __str__(self) -> str:
        unit = next(u for u, s in WINDOWS.items() if s == self.seconds)
        return f"{self.count}/{unit}"

    def window(self, epoch_s: float) -> int:
        """The number of the window `epoch_s` (seconds since the Unix epoch) falls in."""
        return int(epoch_s // self.seconds)

    def window_end(self, window: int) -> float:
        """When window number `window` ends, in seconds since the Unix epoch."""
        return float((window + 1) * self.seconds)


def parse_rate(text: object) -> Rate:
    """``"10/s"`` -> Rate(10, 1); InvalidSettings (a ValueError) for anything else."""
    match = _RATE_RE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise InvalidSettings(
            f"invalid rate {text!r}: write N/s, N/m or N/h, e.g. '10/s' or '100/m'"
        )
    count = int(match.group(1))
    if not 1 <= count <= MAX_CAP:
        raise InvalidSettings(f"invalid rate {text!r}: N must be 1..{MAX_CAP}")
    return Rate(count, WINDOWS[match.group(2)])


def check_concurrency(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_CAP:
        raise InvalidSettings(
            f"invalid concurrency {value!r}: a whole number 1..{MAX_CAP}, or None for no cap"
        )
    return value


@attrs.frozen
class QueueSettings:
    """A queue's caps; None: no cap."""

    concurrency: int | None = None
    rate: Rate | None = None

    @property
    def empty(self) -> bool:
        return self.concurrency is None and self.rate is None

    def changed(
        self,
        concurrency: int | Unset | None = UNSET,
        rate: str | Rate | Unset | None = UNSET,
    ) -> QueueSettings:
        """These settings with the given keys changed (None removes a cap); checks them."""
        new = self
        if concurrency is not UNSET:
            new = attrs.evolve(
                new, concurrency=None if concurrency is None else check_concurrency(concurrency)
            )
        if rate is not UNSET:
            value = rate if rate is None or isinstance(rate, Rate) else parse_rate(rate)
            new = attrs.evolve(new, rate=value)
        return new

    def to_json(self) -> bytes:
        body: dict[str, _json.JSON] = {}
        if self.concurrency is not None:
            body["concurrency"] = self.concurrency
        if self.rate is not None:
            body["rate"] = str(self.rate)
        return _json.dumps(body).encode() + b"\n"


def from_json(data: bytes, where: str) -> QueueSettings:
    """
    Settings from the bytes of a settings file; InvalidSettings naming `where`
    when they are not JSON, not an object, hold a key this fsjobs does not know
    (a newer one's?) or a value out of range.
    """
    try:
        body = _json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidSettings(f"{where} is not valid JSON ({exc}): fix or remove it") from None
    if not isinstance(body, dict):
        raise InvalidSettings(f"{where} must hold a JSON object: fix or remove it")
    unknown = sorted(set(body) - {"concurrency", "rate"})
    if unknown:
        raise InvalidSettings(
            f"{where} holds keys this fsjobs does not know: {unknown} (written by a newer "
            "fsjobs?): fix or remove it"
        )
    try:
        return QueueSettings().changed(
            concurrency=typing.cast(int | None, body.get("concurrency")),
            rate=typing.cast(str | None, body.get("rate")),
        )
    except InvalidSettings as exc:
        raise InvalidSettings(f"{where}: {exc}: fix or remove it") from None
