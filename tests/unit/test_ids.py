"""Job and worker ids: fixed-length, filename-safe, time-ordered."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fsjobs import _ids, _names

MAX_MS = 32**10 - 1


@contextlib.contextmanager
def fresh_id_state(last_ms: int = 0, counter: int = 0) -> Iterator[None]:
    """Run with the module's process-wide id state set, and restore it afterwards."""
    saved = (_ids._last_ms, _ids._counter)
    _ids._last_ms, _ids._counter = last_ms, counter
    try:
        yield
    finally:
        _ids._last_ms, _ids._counter = saved


def test_id_is_22_chars_of_the_alphabet() -> None:
    """A job id is 22 lowercase Crockford base32 characters: filename-safe, no dots."""
    job_id = _ids.new_job_id(int(time.time() * 1000))
    assert len(job_id) == _ids.ID_LENGTH == 22
    assert set(job_id) <= set(_ids.ALPHABET)
    assert _ids.is_job_id(job_id)
    assert _names.check_job_id(job_id) == job_id


def test_alphabet_is_in_ascii_order() -> None:
    """The alphabet is sorted, so byte order of ids is numeric order."""
    assert list(_ids.ALPHABET) == sorted(_ids.ALPHABET)
    assert len(set(_ids.ALPHABET)) == 32


@given(st.integers(1, MAX_MS))
def test_id_time_round_trips(ms: int) -> None:
    """The push time encoded in a fresh id is the push time given."""
    with fresh_id_state():
        job_id = _ids.new_job_id(ms)
    assert _ids.is_job_id(job_id)
    assert _ids.id_time_ms(job_id) == ms


@given(st.lists(st.integers(1, MAX_MS), min_size=2, max_size=50).map(sorted))
def test_ids_made_in_sequence_sort_in_creation_order(times: list[int]) -> None:
    """Ids made one after another by a process sort in the order they were made."""
    with fresh_id_state():
        ids = [_ids.new_job_id(ms) for ms in times]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_many_ids_within_one_millisecond_sort_in_creation_order() -> None:
    """Thousands of ids in the same millisecond stay unique and in creation order."""
    ms = 1_700_000_000_000
    with fresh_id_state():
        ids = [_ids.new_job_id(ms) for _ in range(5000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert {_ids.id_time_ms(i) for i in ids} == {ms}


def test_ids_stay_ordered_when_the_clock_steps_back() -> None:
    """A wall clock stepping backwards does not make a later id sort before an earlier one."""
    with fresh_id_state():
        first = _ids.new_job_id(1_700_000_010_000)
        second = _ids.new_job_id(1_700_000_000_000)
    assert first < second


def test_ids_stay_ordered_past_the_per_ms_counter() -> None:
    """More ids in one ms than the counter holds borrow the next ms, still in order."""
    ms = 1_700_000_000_000
    with fresh_id_state(last_ms=ms, counter=32**4 - 2):
        ids = [_ids.new_job_id(ms) for _ in range(4)]
    assert ids == sorted(ids)
    assert len(set(ids)) == 4
    assert all(_ids.is_job_id(i) for i in ids)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "0" * 21,
        "0" * 23,
        "0" * 21 + "i",  # not in Crockford base32
        "0" * 21 + "A",
        "0" * 21 + ".",
        "0" * 11 + "/" + "0" * 10,
        "0" * 22 + "\n",
    ],
)
def test_non_ids_are_refused(text: str) -> None:
    """Text that is not exactly an id is not taken for one."""
    assert not _ids.is_job_id(text)


def test_worker_id_is_safe() -> None:
    """A worker id made by fsjobs uses only [a-z0-9-] and is accepted as a worker id."""
    worker = _ids.new_worker_id()
    assert re.fullmatch(r"[a-z0-9-]{1,64}", worker)
    assert _names.check_worker_id(worker) == worker


def test_worker_ids_differ() -> None:
    """Two worker ids made by one process differ."""
    assert _ids.new_worker_id() != _ids.new_worker_id()


@pytest.mark.parametrize(
    "host", ["", "My_Host.Example.COM", "___", "-", "x" * 300, "höst", "a b/c\nd"]
)
def test_worker_id_is_safe_for_any_hostname(host: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the host is called, the worker id stays within [a-z0-9-] and 64 chars."""
    monkeypatch.setattr(_ids.socket, "gethostname", lambda: host)
    worker = _ids.new_worker_id()
    assert re.fullmatch(r"[a-z0-9-]{1,64}", worker)
    assert _names.check_worker_id(worker) == worker


def test_ids_follow_the_clock_again_after_a_big_step_back() -> None:
    """A small step back keeps ids in order; after more than an hour they carry the real time."""
    now = 1_900_000_000_000
    first = _ids.new_job_id(now)
    assert _ids.new_job_id(now - 1000) > first, "a second back: still in push order"
    assert _ids.id_time_ms(_ids.new_job_id(now - 1000)) == now
    later = _ids.new_job_id(now - 2 * 3_600_000)
    assert _ids.id_time_ms(later) == now - 2 * 3_600_000
