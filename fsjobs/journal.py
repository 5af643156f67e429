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
import json
import re
import typing
import zlib

import attrs

from .errors import CorruptRecord, InvalidJob

JSON: typing.TypeAlias = dict[str, "JSON"] | list["JSON"] | str | int | float | bool | None
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
    #: True when something bad is followed by valid lines (not a torn tail).
    corrupt: bool = False


def _reject_constant(name: str) -> typing.NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def _no_duplicates(pairs: list[tuple[str, JSON]]) -> dict[str, JSON]:
    out: dict[str, JSON] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


_DECODER = json.JSONDecoder(parse_constant=_reject_constant, object_pairs_hook=_no_duplicates)


def loads(text: str | bytes) -> JSON:
    """Strict JSON: no NaN/Infinity, no duplicate keys, no stack overflow."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    try:
        value: JSON = _DECODER.decode(text)
    except RecursionError as exc:
        raise ValueError("JSON nested too deeply") from exc
    return value


def dumps(value: object) -> str:
    """Compact, ASCII-only JSON (one line, no NaN); raises ValueError/TypeError otherwise."""
    return json.dumps(value, ensure_ascii=True, allow_nan=False, separators=(",", ":"))


MAX_DEPTH = 100


def check_plain(value: object, depth: int = 0) -> None:
    """
    Raise TypeError/ValueError unless `value` is made only of dicts with str keys,
    lists, str, int, finite float, bool and None, nested at most MAX_DEPTH deep.
    (``json.dumps`` alone would turn ``{1: "a"}`` into ``{"1": "a"}`` silently.)
    """
    if depth > MAX_DEPTH:
        raise ValueError(f"nested more than {MAX_DEPTH} levels deep")
    if value is None or isinstance(value, str | bool | int):
        return
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"{value} is not valid JSON")
        return
    if isinstance(value, list):
        for item in value:
            check_plain(item, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"object keys must be str, not {type(key).__name__} {key!r}")
            check_plain(item, depth + 1)
        return
    raise TypeError(f"{type(value).__name__} is not JSON")


def check_json(what: str, value: object, limit: int) -> int:
    """Raise InvalidJob unless `value` is plain JSON of at most `limit` bytes; return its size."""
    try:
        check_plain(value)
        size = len(dumps(value))
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidJob(f"{what} must be plain JSON (no NaN, no objects): {exc}") from exc
    if size > limit:
        raise InvalidJob(f"{what} is {size} bytes encoded; the limit is {limit}")
    return size


def format_time(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: str) -> dt.datetime:
    when = dt.datetime.fromisoformat(text)
    if when.tzinfo is None:
        raise ValueError(f"naive timestamp {text!r}")
    return when


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
        kind = RecordType(str(value.pop("type")))
        at = value.pop("at")
        if not isinstance(at, str):
            raise TypeError("'at' is not a string")
        return Record(type=kind, at=parse_time(at), data=value)
    except (ValueError, TypeError, KeyError, UnicodeDecodeError) as exc:
        raise CorruptRecord(f"bad record: {exc}") from exc


def parse(data: bytes) -> ReadResult:
    """The valid prefix of a journal file's bytes."""
    records: list[Record] = []
    pos = 0
    while pos < len(data):
        end = data.find(b"\n", pos)
        if end < 0:
            return ReadResult(tuple(records), pos, "torn last line (no newline)")
        try:
            records.append(decode(data[pos:end]))
        except CorruptRecord as exc:
            rest = data[end + 1 :]
            corrupt = any(_is_valid(x) for x in rest.split(b"\n") if x)
            return ReadResult(tuple(records), pos, f"line {len(records) + 1}: {exc}", corrupt)
        pos = end + 1
    return ReadResult(tuple(records), pos)


def _is_valid(line: bytes) -> bool:
    try:
        decode(line)
    except CorruptRecord:
        return False
    return True
