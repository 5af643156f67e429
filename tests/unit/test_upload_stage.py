"""
Uploads staged in tmp/ before their push (what the HTTP API streams into):
the push renames the stage into the job, never copies it; a stage whose
process died is collected by fsck, a live one never is.
"""

from __future__ import annotations

import os
import pathlib
import time
from collections.abc import Iterator

import pytest

import fsjobs
from fsjobs.fsck import fsck
from fsjobs.store import Store, UploadStage

OLD = time.time() - 2 * 3600


@pytest.fixture
def store(root: pathlib.Path) -> Iterator[Store]:
    s = Store(root)
    yield s
    s.close()


def write(store: Store, stage: UploadStage, name: str, data: bytes) -> None:
    fd = store.create_upload(stage, name)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def job_for(stage: UploadStage, root: pathlib.Path) -> fsjobs.Job:
    folder = root / "tmp" / stage.folder
    return fsjobs.Job(
        func="tests.stage.task", uploads={name: folder / name for name in stage.names}
    )


def test_a_push_renames_the_stage_into_the_job(root: pathlib.Path, store: Store) -> None:
    """The job's uploads are the very files written to the stage (same inodes): no copy."""
    stage = store.stage_uploads()
    write(store, stage, "video", b"v" * 300_000)
    write(store, stage, "notes", b"taken at dawn")
    inodes = {n: os.stat(root / "tmp" / stage.folder / n).st_ino for n in stage.names}

    published: list[str] = []
    (job_id,) = store.push_many([(job_for(stage, root), "default")], published, [stage])
    store.discard_uploads(stage)

    assert published == [job_id]
    uploads = root / "jobs" / job_id[-2:] / job_id / "uploads"
    assert {p.name: p.stat().st_ino for p in uploads.iterdir()} == inodes
    assert (uploads / "notes").read_bytes() == b"taken at dawn"
    assert (uploads / "video").stat().st_size == 300_000
    assert sorted(os.listdir(root / "tmp")) == [], "the stage and its lock file are gone"
    assert fsck(store).problems == ()
    claim = store.claim_many("default", store.promote_and_list("default", 10), "w-1", 1)[0][0]
    assert store.read_upload(claim, "notes") == b"taken at dawn"
    store.close_claim(claim)


def test_a_job_must_name_exactly_the_staged_files(root: pathlib.Path, store: Store) -> None:
    """A mismatch is refused before anything is written; the stage stays for its owner."""
    stage = store.stage_uploads()
    write(store, stage, "a", b"1")
    job = fsjobs.Job(func="tests.stage.task", uploads={"b": b"2"})
    with pytest.raises(fsjobs.InvalidJob):
        store.push_many([(job, "default")], [], [stage])
    assert not (root / "jobs").exists() or not any((root / "jobs").iterdir())
    assert (root / "tmp" / stage.folder / "a").read_bytes() == b"1"
    store.discard_uploads(stage)
    store.discard_uploads(stage)  # twice is fine
    assert os.listdir(root / "tmp") == []


@pytest.mark.parametrize("name", ["../escape", ".hidden", "a/b", "", "-dash", "x" * 129])
def test_hostile_upload_names_are_refused(root: pathlib.Path, store: Store, name: str) -> None:
    stage = store.stage_uploads()
    with pytest.raises(fsjobs.InvalidJob):
        store.create_upload(stage, name)
    store.discard_uploads(stage)
    assert sorted(p.name for p in root.rglob("*") if p.is_file()) == ["fsjobs.json"]


def test_an_upload_name_is_taken_once(store: Store) -> None:
    stage = store.stage_uploads()
    write(store, stage, "a", b"1")
    with pytest.raises(fsjobs.InvalidJob, match="twice"):
        store.create_upload(stage, "a")
    store.discard_uploads(stage)


def test_a_failed_push_leaves_nothing(
    root: pathlib.Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error after the stage moved into the job: the job folder (and the uploads) go."""

    def refuse(*args: object, **kwargs: object) -> int:
        raise OSError(5, "injected: the commit failed")

    monkeypatch.setattr(store.tree, "link_marker", refuse)
    stage = store.stage_uploads()
    write(store, stage, "a", b"1")
    with pytest.raises(OSError, match="injected"):
        store.push_many([(job_for(stage, root), "default")], [], [stage])
    store.discard_uploads(stage)
    assert not any((root / "jobs").rglob("*.jsonl"))
    assert os.listdir(root / "tmp") == []


def test_a_live_stage_is_never_collected(root: pathlib.Path, store: Store) -> None:
    """However old, a stage whose lock is held belongs to a live upload: fsck leaves it."""
    stage = store.stage_uploads()
    write(store, stage, "a", b"1")
    for name in (stage.lock_name, stage.folder):
        os.utime(root / "tmp" / name, (OLD, OLD))
    report = fsck(store, repair=True)
    assert report.problems == ()
    assert (root / "tmp" / stage.folder / "a").exists()
    store.discard_uploads(stage)


def test_an_abandoned_stage_is_collected_after_the_horizon(
    root: pathlib.Path, store: Store
) -> None:
    """Its process died (the lock is gone): fsck --repair removes the folder and the lock file."""
    stage = store.stage_uploads()
    write(store, stage, "a", b"1")
    os.close(stage.lock_fd)  # what a SIGKILL does to the lock
    young = fsck(store, repair=True)
    assert young.problems == (), "younger than the horizon: may be a push in progress"
    for name in (stage.lock_name, stage.folder):
        os.utime(root / "tmp" / name, (OLD, OLD))
    report = fsck(store, repair=True)
    assert {(p.kind, p.path, p.repaired) for p in report.problems} == {
        ("tmp-garbage", f"tmp/{stage.lock_name}", True),
        ("tmp-garbage", f"tmp/{stage.folder}", True),
    }
    assert os.listdir(root / "tmp") == []
    assert fsck(store).problems == ()
