"""Names on disk: user-given names, marker names, running names and time buckets."""

from __future__ import annotations

import calendar
import datetime as dt
import re

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from fsjobs import InvalidJob, _ids, _names
from fsjobs._names import Marker

SAFE_NAME = re.compile(r"\A[A-Za-z0-9_][A-Za-z0-9._-]{0,127}\Z")
NAME_CHARS = "abcXYZ019_.-"

#: 1970-01-01 .. 9999-12-31: every ready time a datetime can express.
MAX_MS = 253402300799999

job_ids = st.text(alphabet=_ids.ALPHABET, min_size=22, max_size=22)
markers = st.builds(
    Marker,
    priority=st.integers(_names.PRIORITY_MIN, _names.PRIORITY_MAX),
    ready_ms=st.integers(0, 10**15 - 1),
    job_id=job_ids,
    epoch=st.integers(0, 999_999),
    attempt=st.integers(0, 999),
    max_attempts=st.integers(0, 999),
)
worker_ids = st.from_regex(r"\A[a-z0-9-]{1,64}\Z")


@pytest.mark.parametrize(
    "name",
    ["default", "emails", "a", "Q", "_private", "0", "a.b", "a-b_c.d", "x" * 128, "queue.v2"],
)
def test_check_name_accepts_safe_components(name: str) -> None:
    """A plain name of [A-Za-z0-9._-] not starting with a dot or dash is returned unchanged."""
    assert _names.check_name("queue", name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        ".",
        "..",
        "../x",
        "a/b",
        "/abs",
        ".hidden",
        "-x",
        "--help",
        "a\0b",
        "\0",
        "x" * 129,
        "a b",
        "é",
        "a\\b",
        "a\nb",
        "default\n",
        "\ndefault",
        "a*",
    ],
)
def test_check_name_refuses_hostile_names(name: str) -> None:
    """A name that is not one safe path component is refused with InvalidJob."""
    with pytest.raises(InvalidJob):
        _names.check_name("queue", name)


@pytest.mark.parametrize("name", [None, 1, 1.5, b"default", ["default"], object()])
def test_check_name_refuses_non_strings(name: object) -> None:
    """A name that is not a str is refused with InvalidJob (not TypeError or AttributeError)."""
    with pytest.raises(InvalidJob):
        _names.check_name("upload", name)


def test_check_name_error_names_the_kind_and_rule() -> None:
    """The refusal says which kind of name was wrong and what is allowed."""
    with pytest.raises(InvalidJob, match=r"upload.*\[A-Za-z0-9\._-\]"):
        _names.check_name("upload", "../etc/passwd")


@given(st.text(alphabet=st.sampled_from(NAME_CHARS) | st.characters(), max_size=140))
@example("default\n")
@example("x" * 129)
def test_check_name_accepts_exactly_the_safe_names(name: str) -> None:
    """check_name accepts a text if and only if it is 1-128 safe chars, no leading dot/dash."""
    if SAFE_NAME.match(name):
        assert _names.check_name("queue", name) == name
    else:
        with pytest.raises(InvalidJob):
            _names.check_name("queue", name)


@given(markers)
def test_marker_name_round_trips(marker: Marker) -> None:
    """Any valid marker parses back from its name to the same fields."""
    assert Marker.parse(marker.name) == marker


@given(markers)
def test_marker_name_has_fixed_width_and_no_leading_dash(marker: Marker) -> None:
    """Marker names have one fixed length and never start with '-', whatever the fields."""
    name = marker.name
    assert len(name) == len("0000000000.000000000000000.") + 22 + len(".e000000.a000of000")
    assert name[0].isdigit()
    assert "/" not in name
    assert _names.check_name("marker", name) == name


@given(markers, markers)
def test_marker_byte_order_is_run_order(a: Marker, b: Marker) -> None:
    """Byte order of names is the order of (priority, ready_ms, id)."""
    ka, kb = (a.priority, a.ready_ms, a.job_id), (b.priority, b.ready_ms, b.job_id)
    assume(ka != kb)
    assert (a.name.encode() < b.name.encode()) == (ka < kb)


@given(st.lists(markers, min_size=2, max_size=20, unique_by=lambda m: m.job_id))
def test_sorting_names_sorts_markers_in_run_order(ms: list[Marker]) -> None:
    """Sorting a directory listing of marker names yields the jobs in run order."""
    by_name = [Marker.parse(n) for n in sorted(m.name for m in ms)]
    assert by_name == sorted(ms, key=lambda m: (m.priority, m.ready_ms, m.job_id))


def test_marker_name_spells_the_documented_layout() -> None:
    """The name is <prio+2**31:010d>.<ready_ms:015d>.<id>.e<epoch:06d>.a<n:03d>of<max:03d>."""
    job_id = "0" * 10 + "1" * 4 + "abcdefgh"
    marker = Marker(-5, 1_700_000_000_123, job_id, 7, 2, 3)
    assert marker.name == f"2147483643.001700000000123.{job_id}.e000007.a002of003"
    assert marker.prio_dir == "2147483643"
    assert Marker(_names.PRIORITY_MIN, 0, job_id, 0, 0, 1).prio_dir == "0000000000"
    assert Marker(_names.PRIORITY_MAX, 0, job_id, 0, 0, 1).prio_dir == "4294967295"


@pytest.mark.parametrize(
    "name",
    [
        "",
        "not a marker",
        "2147483648.001700000000123.0000000000000000000000.e000000.a000of001.extra",
        "2147483648.001700000000123.000000000000000000000.e000000.a000of001",
        "2147483648.01700000000123.0000000000000000000000.e000000.a000of001",
        "-147483648.001700000000123.0000000000000000000000.e000000.a000of001",
        "2147483648.001700000000123.0000000000000000000000.e000000.a000of001\n",
        "2147483648.001700000000123.0000000000000000000000.e000000.a00of001",
    ],
)
def test_marker_parse_refuses_other_names(name: str) -> None:
    """A name that is not exactly a marker raises ValueError (foreign files are skipped)."""
    with pytest.raises(ValueError):
        Marker.parse(name)


@given(markers, worker_ids)
def test_running_name_round_trips(marker: Marker, worker: str) -> None:
    """A running marker name splits back into its marker and its worker id."""
    assert Marker.parse_running(marker.running_name(worker)) == (marker, worker)


def test_running_name_round_trips_real_worker_id() -> None:
    """A worker id made by fsjobs fits in a running name and comes back out."""
    marker = Marker(0, 1_700_000_000_000, "0" * 22, 1, 1, 1)
    worker = _ids.new_worker_id()
    assert Marker.parse_running(marker.running_name(worker)) == (marker, worker)


@pytest.mark.parametrize("worker", ["", "Upper", "under_score", "dot.ted", "w\n"])
def test_running_name_refuses_bad_worker(worker: str) -> None:
    """A running name whose worker part is not [a-z0-9-]+ is refused."""
    marker = Marker(0, 1_700_000_000_000, "0" * 22, 1, 1, 1)
    with pytest.raises(ValueError):
        Marker.parse_running(f"{marker.name}.{worker}")


def test_running_name_refuses_bare_marker() -> None:
    """A pending marker name (no worker) is not a running name."""
    marker = Marker(0, 1_700_000_000_000, "0" * 22, 1, 1, 1)
    with pytest.raises(ValueError):
        Marker.parse_running(marker.name)


@given(st.integers(0, MAX_MS))
def test_bucket_contains_its_time(ms: int) -> None:
    """bucket_start_ms of bucket_of(ms) is the start of ms's own second."""
    hour, second = _names.bucket_of(ms)
    assert _names.bucket_start_ms(hour, second) == ms - ms % 1000


@given(st.integers(0, MAX_MS), st.integers(0, MAX_MS))
def test_bucket_byte_order_is_time_order(a: int, b: int) -> None:
    """Buckets are fixed-width, so their byte order never contradicts time order."""
    ba, bb = _names.bucket_of(a), _names.bucket_of(b)
    assert len(ba[0]) == 11 and len(ba[1]) == 4
    if a <= b:
        assert ba <= bb


def test_bucket_of_known_value() -> None:
    """bucket_of gives the UTC hour and minute-second of a time."""
    when = dt.datetime(2026, 11, 23, 11, 5, 12, 345000, tzinfo=dt.UTC)
    ms = calendar.timegm(when.timetuple()) * 1000 + 345
    assert _names.bucket_of(ms) == ("20261123T11", "0512")


@pytest.mark.parametrize(
    ("hour", "second"), [("2026112311", "0512"), ("20261123T11", "6512"), ("x", "y"), ("", "")]
)
def test_bucket_start_refuses_non_buckets(hour: str, second: str) -> None:
    """A directory name that is not a bucket raises ValueError (skipped by promotion)."""
    with pytest.raises(ValueError):
        _names.bucket_start_ms(hour, second)


@given(st.integers(0, MAX_MS))
def test_day_of_is_the_utc_push_day(ms: int) -> None:
    """The final-directory shard of a job is the UTC day encoded in its id."""
    job_id = _ids._b32(ms, 10) + "0000" + "00000000"
    want = dt.datetime.fromtimestamp(ms // 1000, dt.UTC).strftime("%Y-%m-%d")
    assert _names.day_of(job_id) == want


def test_shard_of_is_the_last_two_chars() -> None:
    """The jobs/ shard of an id is its last two characters."""
    assert _names.shard_of("0123456789abcdefghjkmn") == "mn"
