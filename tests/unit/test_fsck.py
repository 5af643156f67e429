"""fsck: each kind of damage is reported, the repairable ones repaired; a clean root is clean."""

from __future__ import annotations

import os
import pathlib
import shutil
import time

import pytest

import fsjobs
from fsjobs import JobStatus, _ids, _names
from fsjobs.fsck import fsck
from fsjobs.store import Ending, Outcome, Store

OLD = time.time() - 2 * 3600


def old_job_id() -> str:
    """An id pushed two hours ago (new_job_id never goes back in time within a process)."""
    ms, digits = int(OLD * 1000), []
    for _ in range(10):
        digits.append(_ids.ALPHABET[ms & 31])
        ms >>= 5
    job_id = "".join(reversed(digits)) + "0000" + "k7m2q9x4"
    assert _ids.is_job_id(job_id)
    return job_id


def push(store: Store, n: int = 1, **options: object) -> list[str]:
    return store.push_many([(fsjobs.Job(func="tests.fsck.task", **options), "default")] * n)


def kinds(report: fsjobs.fsck.Report) -> dict[str, bool]:
    return {p.kind: p.repaired for p in report.problems}


@pytest.fixture
def store(root: pathlib.Path) -> Store:
    return Store(root, staleness=0)


def test_a_busy_but_healthy_root_is_clean(store: Store) -> None:
    """Pending, running, waiting-for-retry, completed and keyed jobs are no problem at all."""
    push(store, 3)
    push(store, unique_key="k")
    lock, hb = store.register_worker("w-1")
    first = store.claim("default", store.ready("default")[0], "w-1")
    second = store.claim("default", store.ready("default")[0], "w-1")
    assert first is not None and second is not None
    store.finish(first, Outcome(Ending.COMPLETED, result=1))
    report = fsck(store, repair=True)
    assert report.problems == ()
    assert report.ok
    assert (report.jobs, report.markers) == (4, 4)
    store.close_claim(second)
    store.unregister_worker("w-1", lock, hb)


def test_a_dead_workers_job_is_rescued(store: Store) -> None:
    """A running marker of a worker whose lock is free is reported and rescued by repair."""
    (job_id,) = push(store, max_attempts=2)
    lock, hb = store.register_worker("w-dead")
    claim = store.claim("default", store.ready("default")[0], "w-dead")
    assert claim is not None
    store.close_claim(claim)
    os.close(lock)
    os.close(hb)
    report = fsck(store, repair=True)
    assert kinds(report)["stale-claim"] is True
    assert store.get(job_id).status is JobStatus.PENDING
    assert fsck(store).problems == ()


def test_a_torn_journal_tail_is_cut_off(root: pathlib.Path, store: Store) -> None:
    """Half a line at the end of a segment is reported; repair truncates it to the valid prefix."""
    (job_id,) = push(store)
    (segment,) = root.glob(f"jobs/*/{job_id}/000000.jsonl")
    good = segment.read_bytes()
    segment.write_bytes(good + b'{"crc":"0000')
    assert kinds(fsck(store)) == {"journal-tail": False}
    assert kinds(fsck(store, repair=True)) == {"journal-tail": True}
    assert segment.read_bytes() == good
    assert fsck(store).problems == ()


def test_damage_in_the_middle_of_a_journal_is_reported_not_touched(
    root: pathlib.Path, store: Store
) -> None:
    """A bad line followed by good ones is corruption: reported, never 'repaired'."""
    (job_id,) = push(store)
    lock, hb = store.register_worker("w-1")
    claim = store.claim("default", store.ready("default")[0], "w-1")
    assert claim is not None
    store.finish(claim, Outcome(Ending.COMPLETED))
    (segment,) = root.glob(f"jobs/*/{job_id}/000001.jsonl")
    lines = segment.read_bytes().split(b"\n")
    damaged = b"\n".join([lines[0][:-3] + b"xyz", *lines[1:]])
    segment.write_bytes(damaged)
    report = fsck(store, repair=True)
    assert kinds(report) == {"journal-corrupt": False}
    assert not report.ok
    assert segment.read_bytes() == damaged
    store.unregister_worker("w-1", lock, hb)


def test_a_job_in_two_states_is_reported(root: pathlib.Path, store: Store) -> None:
    """A marker copied into a second state directory violates 'one state per job'."""
    (job_id,) = push(store)
    (marker,) = root.glob(f"queues/default/pending/*/*/*/*{job_id}*")
    day = root / "queues/default/completed" / _names.day_of(job_id)
    day.mkdir(parents=True)
    shutil.copy(marker, day / job_id)
    report = fsck(store, repair=True)
    # a copy, not a hard link of segment 0 as a marker is: that too is reported
    assert kinds(report) == {"duplicate": False, "marker-content": False}


def test_leftovers_of_dead_processes_are_collected_after_the_horizon(
    root: pathlib.Path, store: Store
) -> None:
    """An old unpublished job folder, an old staging file and a dead worker's lock go away."""
    old_id = old_job_id()
    folder = root / "jobs" / old_id[-2:] / old_id
    folder.mkdir(parents=True)
    (folder / "000000.jsonl").write_bytes(b"")
    (root / "tmp").mkdir(exist_ok=True)
    (root / "workers").mkdir(exist_ok=True)
    staging = root / "tmp" / f"0000000000.000000000000000.{old_id}.e000000.a000of001.abc"
    staging.touch()
    os.utime(staging, (OLD, OLD))
    (root / "workers" / "w-gone.lock").touch()
    fresh = root / "tmp" / "just-now"
    fresh.touch()

    report = fsck(store, repair=True)
    assert kinds(report) == {"unpublished": True, "tmp-garbage": True, "dead-worker": True}
    assert not (root / "jobs" / old_id[-2:] / old_id).exists()
    assert not staging.exists()
    assert not (root / "workers" / "w-gone.lock").exists()
    assert fresh.exists(), "younger than the horizon: may belong to a live push"
    assert fsck(store).problems == ()


def test_a_final_job_without_its_record_gets_one(root: pathlib.Path, store: Store) -> None:
    """A final marker whose record a crash lost is reported; repair writes the record."""
    (job_id,) = push(store)
    (marker,) = root.glob(f"queues/default/pending/*/*/*/*{job_id}*")
    day = root / "queues/default/failed" / _names.day_of(job_id)
    day.mkdir(parents=True, exist_ok=True)
    marker.rename(day / job_id)  # as if a crash came between the rename and the record
    assert kinds(fsck(store, settle=0)) == {"no-terminal-record": False}
    assert kinds(fsck(store, repair=True, settle=0)) == {"no-terminal-record": True}
    assert store.get(job_id).status is JobStatus.FAILED
    assert fsck(store, settle=0).problems == ()


def test_symlinks_and_foreign_files_are_reported_not_followed(
    root: pathlib.Path, store: Store, tmp_path: pathlib.Path
) -> None:
    """A planted symlink and a file with a foreign name are reported; nothing outside changes."""
    push(store)
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "queues/default/running").mkdir(parents=True, exist_ok=True)
    (root / "queues/default/running/evil").symlink_to(outside)
    (root / "queues/default/running/README").write_text("hi")
    report = fsck(store, repair=True)
    assert kinds(report) == {"symlink": False, "foreign-file": False}
    assert list(outside.iterdir()) == []
