"""
`fsjobs migrate` converts a root that fsjobs 0.1 wrote (format 1, the fixture in
tests/fixtures) to format 2: every job reads as before and runs to its end, and a
crash at any filesystem call of the migration is survived by running it again.
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import subprocess
import sys
import tarfile

import pytest

import fsjobs
from fsjobs import JobStatus, _durable
from fsjobs._migrate import migrate
from fsjobs.fsck import fsck
from fsjobs.store import Store
from fsjobs.testing import drain

from ._fsck import report
from .crash_child import CRASHED
from .test_crash_points import MAX_K, Zygote, zygote  # noqa: F401  (a fixture)

pytestmark = pytest.mark.slow

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures"
IDS: dict[str, str] = json.loads((FIXTURES / "format1-root.json").read_text())
#: what each job of the fixture is, and what history it has (records, oldest first)
STATUS = {
    "pending": JobStatus.PENDING,
    "scheduled": JobStatus.SCHEDULED,
    "keyed": JobStatus.PENDING,
    "upload": JobStatus.PENDING,
    "emails": JobStatus.PENDING,
    "held": JobStatus.HELD,
    "completed": JobStatus.COMPLETED,
    "failed": JobStatus.FAILED,
    "running_dead": JobStatus.RUNNING,
}


def format1_root(base: pathlib.Path) -> pathlib.Path:
    with tarfile.open(FIXTURES / "format1-root.tar.gz") as tar:
        tar.extractall(base, filter="tar")
    return base / "root"


def check_migrated(root: pathlib.Path) -> None:
    """Every job of the fixture reads as it was, and nothing of format 1 is left."""
    assert json.loads((root / "fsjobs.json").read_text()) == {"format": 2, "features": []}
    assert not list(root.glob("jobs/*/*/journal*"))
    store = Store(root, staleness=0)
    try:
        for name, job_id in IDS.items():
            state = store.get(job_id)
            assert state.status is STATUS[name], name
        done = store.get(IDS["completed"])
        assert done.result == {"x": "y" * 70000}  # read from attempts/000001/result.json
        failed = store.get(IDS["failed"])
        assert failed.attempts == 2 and failed.error is not None and failed.error.message == "twice"
        history = [e.type for e in store.history(IDS["failed"])]
        assert history == ["pushed", "claimed", "retrying", "claimed", "failed"]
    finally:
        store.close()


def test_a_format_1_root_is_refused_until_migrated(tmp_path: pathlib.Path) -> None:
    """Every command names fsjobs migrate; after it, the root works."""
    root = format1_root(tmp_path)
    ls = [sys.executable, "-m", "fsjobs", "--root", str(root), "ls"]
    before = subprocess.run(ls, capture_output=True, text=True)
    assert before.returncode == 1 and "migrate" in before.stderr, before.stderr
    run = subprocess.run(
        [sys.executable, "-m", "fsjobs", "--root", str(root), "migrate"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert "9 jobs converted" in run.stdout
    check_migrated(root)
    assert subprocess.run(ls, capture_output=True, text=True).returncode == 0
    again = migrate(root)  # a second run finds nothing to do
    assert (again.converted, again.already) == (0, 9)


def test_a_migrated_root_runs_its_jobs(tmp_path: pathlib.Path) -> None:
    """The dead worker's job is rescued, the held one stays held, the rest complete."""
    root = format1_root(tmp_path)
    migrate(root)
    queue = fsjobs.Queue(root, staleness=0)
    emails = fsjobs.Queue(root, "emails", staleness=0)

    @queue.task(name="tests.migrate.task")
    def task(**kwargs: object) -> str:
        return "ran"

    async def run() -> None:
        await drain(queue)
        await drain(emails)

    asyncio.run(run())
    store = queue.store
    for name in ("pending", "keyed", "upload", "emails", "running_dead"):
        assert store.get(IDS[name]).status is JobStatus.COMPLETED, name
    assert store.get(IDS["held"]).status is JobStatus.HELD
    report = fsck(store, repair=True)
    assert report.unrepaired() == [], report.problems
    queue.close()
    emails.close()


def test_migrate_refuses_while_a_worker_runs(tmp_path: pathlib.Path) -> None:
    """A live worker holds its lock: migrate refuses and leaves the root as it was."""
    root = format1_root(tmp_path)
    (root / "workers").mkdir(exist_ok=True)
    fd = os.open(root / "workers" / "w-live.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        assert _durable.try_lock(fd)
        with pytest.raises(fsjobs.StoreError, match="stop every worker"):
            migrate(root)
        assert (root / "fsjobs.json").read_text() == '{"format":1}\n'  # untouched
    finally:
        os.close(fd)


def test_a_crash_anywhere_in_migrate_is_survived_by_running_it_again(
    tmp_path: pathlib.Path,
    zygote: Zygote,  # noqa: F811
) -> None:
    """Kill the migration before its k-th filesystem call, for every k; rerun; check."""
    crashes = 0
    for k in range(1, MAX_K + 1):
        root = format1_root(tmp_path / f"k{k:03d}")
        ack = tmp_path / f"k{k:03d}.ack"
        rc = zygote.run({"op": "migrate", "root": str(root), "k": k, "ack": str(ack)})
        assert rc in (0, CRASHED), (tmp_path / f"k{k:03d}.ack.err").read_text()
        if rc == CRASHED:
            crashes += 1
            marker = json.loads((root / "fsjobs.json").read_text())
            if marker != {"format": 2, "features": []}:  # not yet committed: nobody may write
                with pytest.raises(fsjobs.FormatError, match="migrat"):
                    Store(root).push_many([(fsjobs.Job(func="x.y"), "default")])
            migrate(root)
        check_migrated(root)
        if rc == 0:
            break
    else:
        pytest.fail(f"migrate still crashing after {MAX_K} calls")
    report(f"FIGURES migrate crash_points={crashes} jobs={len(IDS)} lost=0")
    assert crashes > 20  # every step of the conversion was interrupted somewhere
