"""
The repros of issue #11 that concern what lies on disk, one test each: a planted
unique-key generation, a planted final marker, a worker restarted under its own
id, a damaged first record, and one unreadable job among good ones. (The worker
and CLI repros live in test_worker_defects, test_task_raises, test_cli_errors
and test_second_signal; planted symlinks, directories, FIFOs and garbage at every
path of the layout in test_hostile_tree.)
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import pathlib

import pytest

import fsjobs
from fsjobs import JobStatus, cli, journal
from fsjobs.fsck import fsck
from fsjobs.store import Ending, Outcome, Store

FUNC = "tests.unit.test_adversarial_repros.task"
FINAL = [JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.TIMED_OUT, JobStatus.CANCELLED]


def task(**kwargs: object) -> str:
    return "ran"


@pytest.fixture
def store(root: pathlib.Path) -> Store:
    return Store(root, staleness=0)


@pytest.fixture
def outside(tmp_path: pathlib.Path) -> pathlib.Path:
    """A folder beside the root, with a file the root must never touch."""
    out = tmp_path / "outside"
    (out / "victim").mkdir(parents=True)
    (out / "victim" / "f").write_text("keep me")
    return out


def push(store: Store, **options: object) -> str:
    (job_id,) = store.push_many([(fsjobs.Job(func=FUNC, **options), "default")])
    return job_id


def snapshot(top: pathlib.Path) -> dict[str, str | None]:
    return {str(p.relative_to(top)): p.read_text() if p.is_file() else None for p in top.rglob("*")}


# -- high 1: a crafted generation file ---------------------------------------------------


@pytest.mark.parametrize(
    ("staging", "well_formed"),
    [("lnk/f", False), ("../../outside/victim/f", False), ("..", False), ("lnk", True)],
)
def test_a_planted_generation_file_moves_nothing_outside_the_root(
    store: Store, root: pathlib.Path, outside: pathlib.Path, staging: str, well_formed: bool
) -> None:
    """
    The repro: a generation naming an existing job and a staging path through a
    symlink under tmp/ (or a ../ path). The push must treat the generation as
    malformed or the staging as absent, and never rename anything it names.
    """
    existing = push(store)
    digest = hashlib.sha256(b"K").hexdigest()
    key_dir = root / "unique" / digest
    key_dir.mkdir(parents=True)
    (key_dir / "0000000001").write_text(json.dumps({"id": existing, "staging": staging}))
    (root / "tmp" / "lnk").symlink_to(outside / "victim")
    (outside / "moved").mkdir()  # where fencing "lnk/f" as "dead.lnk/f" would land
    (root / "tmp" / "dead.lnk").symlink_to(outside / "moved")
    before = snapshot(outside)

    job_id = push(store, unique_key="K")

    assert snapshot(outside) == before
    if well_formed:  # one name, but a symlink: never opened, and the live owner keeps the key
        assert job_id == existing
    else:  # not one name: the generation is malformed and the key free; nothing it names opened
        assert job_id != existing
        assert store.get(job_id).unique_key == "K"
    assert store.get(existing).status is JobStatus.PENDING


# -- high 2: prune and a planted final marker --------------------------------------------


def test_prune_leaves_a_live_job_behind_a_planted_final_marker(
    store: Store, root: pathlib.Path
) -> None:
    """
    The repro: ``touch queues/default/completed/<today>/<id of a pending job>``,
    then prune everything. Prune must find that the job's journal disagrees
    and delete nothing; the job stays pending and runnable.
    """
    job_id = push(store, kwargs={"n": 1})
    day = root / "queues" / "default" / "completed" / dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    day.mkdir(parents=True, exist_ok=True)
    (day / job_id).touch()

    pruned = store.prune("default", dt.datetime.now(dt.UTC) + dt.timedelta(days=1), FINAL)

    assert pruned == 0
    state = store.get(job_id)
    assert (state.status, state.kwargs) == (JobStatus.PENDING, {"n": 1})
    assert any(job_id in name for name in store.ready("default"))


# -- medium: a worker restarted under its own fixed id -----------------------------------


@pytest.mark.asyncio
async def test_a_worker_restarted_under_its_own_id_rescues_its_predecessors_jobs(
    root: pathlib.Path,
) -> None:
    """
    The repro: a worker with a fixed id dies (its lock goes with it) holding a
    job; a new worker under the same id must put that job back and run it,
    not skip it as its own.
    """
    queue = fsjobs.Queue(root, staleness=0)
    queue.task(name=FUNC)(task)
    store = queue.store
    job_id = await queue.push(fsjobs.Job(func=FUNC, max_attempts=2))
    lock, hb = store.register_worker("w-fixed")
    claim = store.claim("default", store.ready("default")[0], "w-fixed")
    assert claim is not None
    store.close_claim(claim)
    os.close(lock)  # the predecessor dies: no unregister
    os.close(hb)

    worker = fsjobs.Worker(queue, worker_id="w-fixed", rescue_interval=0.01)
    assert await worker.run_until_empty() == 1
    state = await queue.get(job_id)
    assert (state.status, state.result, state.attempts) == (JobStatus.COMPLETED, "ran", 2)
    queue.close()


# -- medium: a damaged first record is corruption, not a torn tail -----------------------


def test_a_damaged_first_record_is_quarantined_not_cut(store: Store, root: pathlib.Path) -> None:
    """
    The repro: change one byte of a pending job's ``pushed`` record. fsck
    --repair used to cut the "torn tail" and leave a 0-byte spec, reporting a
    healthy root. A complete line that fails its checksum is corruption: until
    fsck runs the job reads as pending with a CorruptJob error; fsck reports it
    and moves the job to corrupt/, keeping its bytes.
    """
    job_id = push(store, kwargs={"payload": "abcdef"})
    (segment,) = root.glob(f"jobs/*/{job_id}/000000.jsonl")
    original = segment.read_bytes()
    with segment.open("r+b") as f:  # in place: the marker is another name of this file
        f.seek(original.index(b"abcdef"))
        f.write(b"X")

    before = store.get(job_id)  # still pending, and says why it cannot be read
    assert before.status is JobStatus.PENDING and before.error is not None
    assert before.error.type == "CorruptJob"
    assert [s.id for s in store.list_jobs(None)] == [job_id]

    report = fsck(store, repair=True, settle=0)

    assert [(p.kind, p.repaired) for p in report.problems] == [("journal-corrupt", True)]
    assert segment.stat().st_size == len(original), "a complete line must never be cut"
    state = store.get(job_id)
    assert state.status is JobStatus.CORRUPT
    assert list(root.glob(f"queues/default/corrupt/*/{job_id}"))
    assert not any(job_id in name for name in store.ready("default"))


# -- medium: one unreadable job among good ones ------------------------------------------


def _finish(store: Store, ending: Ending, result: object = None) -> str:
    job_id = push(store)
    lock, hb = store.register_worker("w-1")
    (name,) = [n for n in store.ready("default") if job_id in n]
    claim = store.claim("default", name, "w-1")
    assert claim is not None
    store.finish(claim, Outcome(ending, result=result))
    store.unregister_worker("w-1", lock, hb)
    return job_id


def _rewrite_in_place(segment: pathlib.Path, record: journal.Record) -> None:
    with segment.open("r+b") as f:
        f.truncate(0)
        f.write(journal.encode(record))


def test_one_unreadable_job_does_not_break_ls_show_or_prune(
    store: Store, root: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """
    The repros: a completed job whose result.json is gone, and a pending job
    whose checksum-valid spec lacks ``created_at``. ls lists every job and
    names the damaged ones, show names the job, prune deletes the good final
    jobs and goes on past the bad one.
    """
    good = _finish(store, Ending.COMPLETED, result=1)
    no_result = _finish(store, Ending.COMPLETED, result={"big": "x" * 70_000})
    (result_file,) = root.glob(f"jobs/*/{no_result}/attempts/*/result.json")
    result_file.unlink()
    no_created = push(store)
    (segment,) = root.glob(f"jobs/*/{no_created}/000000.jsonl")
    (pushed,) = journal.parse(segment.read_bytes()).records
    spec = {k: v for k, v in pushed.data["spec"].items() if k != "created_at"}
    _rewrite_in_place(
        segment, journal.Record(pushed.type, pushed.at, {**pushed.data, "spec": spec})
    )
    later = push(store)

    assert cli.main(["--root", str(root), "ls", "--queue", "*", "--limit", "10"]) == 0
    out = capsys.readouterr().out
    for job_id in (good, no_result, no_created, later):
        assert job_id in out
    assert cli.main(["--root", str(root), "show", no_result]) == 0
    shown = capsys.readouterr().out
    assert "status: completed" in shown and "ResultUnreadable" in shown and no_result in shown
    assert cli.main(["--root", str(root), "show", no_created]) == 0
    shown = capsys.readouterr().out
    assert "status: pending" in shown and no_created in shown

    pruned = store.prune("default", dt.datetime.now(dt.UTC) + dt.timedelta(days=1), FINAL)
    assert pruned >= 1
    with pytest.raises(fsjobs.JobNotFound):
        store.get(good)
    assert store.get(later).status is JobStatus.PENDING
