"""
Journal records: one JSON object per line, self-checking.

A line is ``{"crc":"<8 hex>",<body>}\\n`` where the checksum is CRC-32 of the
compact JSON object ``{<body>}`` exactly as written. Checking it needs no
re-encoding, so a garbage or torn tail is detected before it is parsed, and the
line is still plain JSON for ``jq``.

Readers return the longest valid prefix and report a bad tail instead of
raising: a crash can tear the last line, and only a transition that was never
acknowledged can be lost that way. A bad line followed by good ones is not a
crash; it is reported as corruption.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
import zlib

import attrs

from ._clock import format_time, parse_time
from ._json import JSON, dumps, loads
from .errors import CorruptRecord, InvalidJob, UnknownRecordType

MAX_LINE = 2 * 1024 * 1024  # the first record carries the spec, kwargs <= 1 MiB
_PREFIX = b'{"crc":"'
_PREFIX_LEN = len(_PREFIX) + 8 + 2  # {"crc":"xxxxxxxx",
_HEX8 = re.compile(rb"[0-9a-f]{8}")


class RecordType(enum.StrEnum):
    PUSHED = "pushed"
    CLAIMED = "claimed"
    RESCUED = "rescued"
    RELEASED = "released"
    COMPLETED = "completed"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    RETRYING = "retrying"
    CANCELLED = "cancelled"
    RETRIED = "retried"
    HELD = "held"
    CORRUPT = "corrupt"
    PROGRESS = "progress"
    #: a blocked job whose parents all completed, moved to pending (or waiting)
    UNBLOCKED = "unblocked"


#: Records that end an epoch's ownership: written just before the owner's rename.
TERMINAL = frozenset(
    {
        RecordType.COMPLETED,
        RecordType.FAILED,
        RecordType.TIMED_OUT,
        RecordType.RETRYING,
        RecordType.CANCELLED,
        RecordType.RELEASED,
        RecordType.CORRUPT,
    }
)


@attrs.frozen
class Record:
    type: RecordType
    at: dt.datetime
    data: dict[str, JSON] = attrs.field(factory=dict)

    def get_str(self, key: str) -> str | None:
        value = self.data.get(key)
        return value if isinstance(value, str) else None

    def get_int(self, key: str) -> int | None:
        value = self.data.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else None


@attrs.frozen
class ReadResult:
    records: tuple[Record, ...]
    valid_bytes: int
    #: None when the whole file is valid; else what is wrong with the rest.
    problem: str | None = None
    #: True when a complete line is bad: corruption, not a crash (only a torn tail is).
    corrupt: bool = False
    #: True when the bad line is a valid record of a type this fsjobs does not know
    #: (written by a newer fsjobs): the root's features say whether to refuse.
    unknown: bool = False

    @property
    def torn(self) -> bool:
        """True when the only damage is a last line cut short by a crash: safe to cut off."""
        return self.problem is not None and not self.corrupt and not self.unknown


def encode(record: Record) -> bytes:
    """One line, newline-terminated, ready for a single ``os.write``."""
    body: dict[str, object] = {"type": record.type.value, "at": format_time(record.at)}
    for key, value in record.data.items():
        if key in ("type", "at", "crc"):
            raise ValueError(f"reserved record key {key!r}")
        body[key] = value
    text = dumps(body).encode("ascii")
    crc = zlib.crc32(text)
    line = b'{"crc":"%08x",' % crc + text[1:] + b"\n"
    if len(line) > MAX_LINE:
        raise InvalidJob(f"journal record of {len(line)} bytes exceeds {MAX_LINE}")
    return line


def decode(line: bytes) -> Record:
    """Check and parse one line (without its newline); raise CorruptRecord."""
    if len(line) > MAX_LINE:
        raise CorruptRecord(f"record of {len(line)} bytes exceeds {MAX_LINE}")
    if not line.startswith(_PREFIX) or len(line) < _PREFIX_LEN + 1:
        raise CorruptRecord("record does not start with its checksum")
    field = line[len(_PREFIX) : len(_PREFIX) + 8]
    if not _HEX8.fullmatch(field) or line[len(_PREFIX) + 8 : _PREFIX_LEN] != b'",':
        raise CorruptRecord("bad checksum field")
    want = int(field, 16)
    body = b"{" + line[_PREFIX_LEN:]
    if zlib.crc32(body) != want:
        raise CorruptRecord("checksum mismatch")
    try:
        value = loads(body)
        if not isinstance(value, dict):
            raise TypeError("not an object")
        name = str(value.pop("type"))
        if name not in _TYPES:
            raise UnknownRecordType(f"unknown record type {name!r}")
        kind = RecordType(name)
        at = value.pop("at")
        if not isinstance(at, str):
            raise TypeError("'at' is not a string")
        return Record(type=kind, at=parse_time(at), data=value)
    except UnknownRecordType:
        raise
    except (ValueError, TypeError, KeyError, UnicodeDecodeError) as exc:
        raise CorruptRecord(f"bad record: {exc}") from exc


def parse(data: bytes) -> ReadResult:
    """
    The valid prefix of a journal file's bytes. A crash can only leave a last
    line without its newline (a torn tail: every record is written with a single
    ``write`` of one line); a complete line that fails its checksum or schema is
    corruption, wherever it is.
    """
    records: list[Record] = []
    pos = 0
    while pos < len(data):
        end = data.find(b"\n", pos)
        if end < 0:
            return ReadResult(tuple(records), pos, "torn last line (no newline)")
        try:
            records.append(decode(data[pos:end]))
        except UnknownRecordType as exc:
            return ReadResult(tuple(records), pos, f"line {len(records) + 1}: {exc}", unknown=True)
        except CorruptRecord as exc:
            return ReadResult(tuple(records), pos, f"line {len(records) + 1}: {exc}", corrupt=True)
        pos = end + 1
    return ReadResult(tuple(records), pos)


_TYPES = frozenset(t.value for t in RecordType)
