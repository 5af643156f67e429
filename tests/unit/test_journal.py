"""Journal records: one self-checking JSON line each, read back as a valid prefix."""

from __future__ import annotations

import datetime as dt
import json
import zlib

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from fsjobs import CorruptRecord, InvalidJob, journal
from fsjobs.journal import Record, RecordType

RESERVED = {"type", "at", "crc"}

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)
timezones = st.builds(
    lambda minutes: dt.timezone(dt.timedelta(minutes=minutes)), st.integers(-23 * 60, 23 * 60)
)
instants = st.datetimes(
    min_value=dt.datetime(1970, 1, 2),  # noqa: DTZ001 - bounds of a tz-aware strategy
    max_value=dt.datetime(9999, 12, 30),  # noqa: DTZ001
    timezones=timezones,
).map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000))
records = st.builds(
    Record,
    type=st.sampled_from(RecordType),
    at=instants,
    data=st.dictionaries(st.text(max_size=12).filter(lambda k: k not in RESERVED), json_values),
)

AT = dt.datetime(2026, 11, 23, 11, 5, 12, 345000, tzinfo=dt.UTC)


def signed(body: bytes) -> bytes:
    """A line (no newline) carrying the correct checksum of `body`, whatever `body` says."""
    return b'{"crc":"%08x",' % zlib.crc32(body) + body[1:]


def _example_with_hex_letter() -> tuple[Record, int]:
    """A record whose checksum field holds a hex letter, and that letter's position."""
    for n in range(100):
        rec = Record(RecordType.PROGRESS, AT, {"percent": n})
        line = journal.encode(rec)
        for pos in range(8, 16):
            if line[pos : pos + 1] in b"abcdef":
                return rec, pos
    raise AssertionError("no checksum with a letter")  # pragma: no cover


HEX_REC, HEX_POS = _example_with_hex_letter()


@given(records)
def test_encode_decode_round_trip(record: Record) -> None:
    """Any record with JSON data decodes from its line to an equal record."""
    line = journal.encode(record)
    assert journal.decode(line[:-1]) == record
    assert journal.parse(line).records == (record,)


@given(records)
def test_each_record_is_exactly_one_ascii_line(record: Record) -> None:
    """A record is one newline-terminated ASCII line, whatever its strings contain."""
    line = journal.encode(record)
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    assert b"\r" not in line
    line.decode("ascii")


@given(records)
def test_line_is_plain_json_for_jq(record: Record) -> None:
    """Each line is itself a JSON object with crc, type and at (readable with jq)."""
    obj = json.loads(journal.encode(record))
    assert set(obj) >= {"crc", "type", "at"}
    assert obj["type"] == record.type.value
    assert obj["at"].endswith("Z")


def test_encode_known_layout() -> None:
    """The line is {"crc":"<8 hex>",<body>} where crc is CRC-32 of the compact body."""
    line = journal.encode(Record(RecordType.PUSHED, AT, {"id": "x"}))
    body = b'{"type":"pushed","at":"2026-11-23T11:05:12.345Z","id":"x"}'
    assert line == b'{"crc":"%08x",' % zlib.crc32(body) + body[1:] + b"\n"


@pytest.mark.parametrize("key", sorted(RESERVED))
def test_encode_refuses_reserved_keys(key: str) -> None:
    """Data may not shadow the record's own crc, type or at fields."""
    with pytest.raises(ValueError):
        journal.encode(Record(RecordType.PROGRESS, AT, {key: 1}))


def test_encode_refuses_oversized_record() -> None:
    """A record longer than the line limit is refused before it reaches a journal."""
    with pytest.raises(InvalidJob):
        journal.encode(Record(RecordType.PUSHED, AT, {"blob": "x" * journal.MAX_LINE}))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf"), {1, 2}, object()])
def test_encode_refuses_non_json(bad: object) -> None:
    """Data that is not strict JSON cannot be written to a journal."""
    with pytest.raises((ValueError, TypeError)):
        journal.encode(Record(RecordType.PROGRESS, AT, {"x": bad}))


@given(records, st.integers(0, 10**6), st.integers(1, 255))
@example(HEX_REC, HEX_POS, 256 - 32)  # the checksum's hex letter in upper case
def test_every_single_byte_mutation_is_detected(record: Record, pos: int, delta: int) -> None:
    """Changing any one byte of a record makes it fail its check (CorruptRecord)."""
    line = bytearray(journal.encode(record)[:-1])
    pos %= len(line)
    line[pos] = (line[pos] + delta) % 256
    with pytest.raises(CorruptRecord):
        journal.decode(bytes(line))


def test_every_single_byte_mutation_of_a_fixed_record_is_detected() -> None:
    """Exhaustively: each position, each other byte value, is detected as corruption."""
    missed = []
    for rec in (HEX_REC, Record(RecordType.PUSHED, AT, {"id": "0" * 22, "spec": {"a": [1]}})):
        line = journal.encode(rec)[:-1]
        for pos in range(len(line)):
            for value in range(256):
                if value == line[pos]:
                    continue
                mutated = line[:pos] + bytes([value]) + line[pos + 1 :]
                try:
                    journal.decode(mutated)
                except CorruptRecord:
                    continue
                missed.append(mutated)
    assert missed == []


@given(st.lists(records, max_size=5), st.binary(max_size=300))
@example([Record(RecordType.PUSHED, AT)], b"\n")
@example([Record(RecordType.PUSHED, AT)], b'{"crc":"00000000",}\n')
def test_parse_returns_valid_prefix_for_any_tail(recs: list[Record], tail: bytes) -> None:
    """Bytes appended to a valid journal never hide its records and never make parse raise."""
    valid = b"".join(journal.encode(r) for r in recs)
    result = journal.parse(valid + tail)
    assert result.records[: len(recs)] == tuple(recs)
    assert len(valid) <= result.valid_bytes <= len(valid) + len(tail)
    assert journal.parse((valid + tail)[: result.valid_bytes]).records == result.records
    if result.valid_bytes < len(valid) + len(tail):
        assert result.problem is not None
    else:
        assert result.problem is None


@given(st.binary(max_size=500))
def test_parse_never_raises_on_garbage(data: bytes) -> None:
    """Any bytes at all parse to some valid prefix without raising."""
    result = journal.parse(data)
    assert 0 <= result.valid_bytes <= len(data)


@given(st.lists(records, min_size=1, max_size=5), st.data())
def test_torn_tail_loses_only_the_last_line(recs: list[Record], data: st.DataObject) -> None:
    """A journal cut anywhere keeps every complete record and is not called corrupt."""
    lines = [journal.encode(r) for r in recs]
    whole = b"".join(lines)
    cut = data.draw(st.integers(0, len(whole)))
    result = journal.parse(whole[:cut])
    complete = 0
    offset = 0
    for line in lines:
        if offset + len(line) > cut:
            break
        offset += len(line)
        complete += 1
    assert result.records == tuple(recs[:complete])
    assert result.valid_bytes == offset
    assert not result.corrupt
    assert (result.problem is None) == (cut == offset)


def test_bad_line_followed_by_valid_lines_is_corrupt() -> None:
    """Damage in the middle of a journal is reported as corruption, not as a torn tail."""
    first = journal.encode(Record(RecordType.PUSHED, AT, {"id": "a"}))
    last = journal.encode(Record(RecordType.CLAIMED, AT, {"worker": "w"}))
    damaged = bytearray(journal.encode(Record(RecordType.PROGRESS, AT, {"percent": 5})))
    damaged[20] ^= 0x01
    result = journal.parse(first + bytes(damaged) + last)
    assert result.records == (journal.decode(first[:-1]),)
    assert result.valid_bytes == len(first)
    assert result.corrupt
    assert result.problem is not None and "line 2" in result.problem


def test_torn_line_without_newline_is_not_corrupt() -> None:
    """A partly written last line (crash mid-append) is a torn tail, not corruption."""
    first = journal.encode(Record(RecordType.PUSHED, AT, {"id": "a"}))
    torn = journal.encode(Record(RecordType.CLAIMED, AT, {"worker": "w"}))[:-5]
    result = journal.parse(first + torn)
    assert len(result.records) == 1
    assert result.valid_bytes == len(first)
    assert not result.corrupt
    assert result.problem is not None


@pytest.mark.parametrize(
    "body",
    [
        b'{"type":"pushed","at":"2026-11-23T11:05:12.345Z","x":NaN}',
        b'{"type":"pushed","at":"2026-11-23T11:05:12.345Z","x":Infinity}',
        b'{"type":"pushed","at":"2026-11-23T11:05:12.345Z","x":1,"x":2}',
        b'{"type":"pushed","at":"2026-11-23T11:05:12.345Z","type":"claimed"}',
        b'{"type":"nonsense","at":"2026-11-23T11:05:12.345Z"}',
        b'{"type":"pushed","at":"2026-11-23T11:05:12.345"}',
        b'{"type":"pushed","at":"yesterday"}',
        b'{"type":"pushed","at":17}',
        b'{"type":"pushed"}',
        b'{"at":"2026-11-23T11:05:12.345Z"}',
        b'{"type":"pushed","at":"2026-11-23T11:05:12.345Z"',
        b'{"type":"pushed","at":"2026-11-23T11:05:12.345Z"}garbage',
        b'{"type":"pushed","at":"2026-11-23T11:05:12.345Z","s":"\xff"}',
    ],
)
def test_decode_refuses_signed_but_malformed_record(body: bytes) -> None:
    """A line with a correct checksum but a body that is not a strict record is corrupt."""
    with pytest.raises(CorruptRecord):
        journal.decode(signed(body))


def test_decode_refuses_oversized_line() -> None:
    """A line over the size limit is refused without parsing it."""
    with pytest.raises(CorruptRecord):
        journal.decode(b"x" * (journal.MAX_LINE + 1))


@pytest.mark.parametrize(
    "text", ["NaN", "[NaN]", '{"a": Infinity}', "-Infinity", '{"a": [1, -Infinity]}']
)
def test_loads_rejects_non_finite_numbers(text: str) -> None:
    """Strict JSON: NaN and Infinity are refused with ValueError."""
    with pytest.raises(ValueError):
        journal.loads(text)


@pytest.mark.parametrize("text", ['{"a": 1, "a": 2}', '{"x": {"b": 1, "b": 1}}', '[{"k":0,"k":0}]'])
def test_loads_rejects_duplicate_keys(text: str) -> None:
    """Strict JSON: an object with a repeated key is refused with ValueError."""
    with pytest.raises(ValueError):
        journal.loads(text)


@pytest.mark.parametrize(
    "text",
    ["[" * 100_000 + "]" * 100_000, '{"a":' * 100_000 + "1" + "}" * 100_000],
)
def test_loads_deep_nesting_is_value_error(text: str) -> None:
    """100000-deep nesting raises ValueError, not RecursionError."""
    with pytest.raises(ValueError) as info:
        journal.loads(text)
    assert not isinstance(info.value, RecursionError)


def test_loads_accepts_plain_json_text_and_bytes() -> None:
    """Ordinary JSON, as text or UTF-8 bytes, loads to Python values."""
    assert journal.loads('{"a": [1, 2.5, "é", null, true]}') == {"a": [1, 2.5, "é", None, True]}
    assert journal.loads('{"a": "\u00e9"}'.encode()) == {"a": "é"}


@given(json_values)
def test_dumps_loads_round_trip(value: object) -> None:
    """Any JSON value survives dumps then loads, as one ASCII line."""
    text = journal.dumps(value)
    assert "\n" not in text
    text.encode("ascii")
    assert journal.loads(text) == value
