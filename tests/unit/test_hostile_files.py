"""
Hostile or broken job files: whatever is planted in a job's folder or the queue
tree, a worker neither crashes nor hangs, nothing outside the root is touched,
the bad job ends `corrupt`, and the good jobs still run.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import shutil
import tempfile
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fsjobs
from fsjobs import JobStatus
from fsjobs.fsck import fsck

DEEP = b"[" * 100_000 + b"]" * 100_000
VALID_LOOKING = b'{"crc":"00000000","type":"pushed","at":"2030-01-01T00:00:00.000Z"}\n'

hostile_segments = st.one_of(
    st.binary(max_size=300),  # garbage, bad UTF-8, torn lines
    st.sampled_from(
        [
            b"",
            b'{"crc":"',  # torn
            b'{"type":"pushed","spec":{"func":"x"}}\n',  # no checksum
            VALID_LOOKING,  # wrong checksum
            b'{"crc":"12345678","x":NaN}\n',
            b'{"crc":"12345678","a":1,"a":2}\n',
            DEEP,
            b'{"crc":"00000000","pad":"' + b"p" * (3 * 1024 * 1024) + b'"}\n',  # over the line cap
            b"\xff\xfe\x00\x00" * 100,
        ]
    ),
)


def plant(root: pathlib.Path, job_id: str, content: bytes | str) -> None:
    """Replace segment 0 of a job with `content`: bytes, 'symlink', 'directory' or 'missing'."""
    (segment,) = root.glob(f"jobs/*/{job_id}/000000.jsonl")
    segment.unlink()
    if content == "symlink":
        segment.symlink_to(root.parent / "victim.txt")
    elif content == "directory":
        segment.mkdir()
    elif content != "missing":
        assert isinstance(content, bytes)
        segment.write_bytes(content)


async def run_worker(queue: fsjobs.Queue) -> int:
    worker = fsjobs.Worker(queue, handle_signals=False)
    async with asyncio.timeout(60):  # a hang guard, not a timing assertion
        return await worker.run_until_empty()


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(content=st.one_of(hostile_segments, st.sampled_from(["symlink", "directory", "missing"])))
def test_a_job_with_a_hostile_journal_is_quarantined(content: bytes | str) -> None:
    """Whatever replaces a pending job's journal, it ends corrupt and the worker carries on."""
    base = pathlib.Path(tempfile.mkdtemp(prefix="fsjobs-hostile-"))
    try:
        root = base / "root"
        (base / "victim.txt").write_text("precious\n")
        asyncio.run(_quarantine(root, content))
        assert (base / "victim.txt").read_text() == "precious\n"
        assert sorted(p.name for p in base.iterdir()) == ["root", "victim.txt"]
    finally:
        shutil.rmtree(base)


async def _quarantine(root: pathlib.Path, content: bytes | str) -> None:
    queue = fsjobs.Queue(root)
    ran: list[str] = []

    @queue.task(name=f"tests.hostile.{uuid.uuid4().hex[:8]}")
    def task(tag: str) -> str:
        ran.append(tag)
        return tag

    bad = await task.enqueue(tag="bad")
    good = await task.enqueue(tag="good")
    plant(root, bad, content)

    assert await run_worker(queue) == 1
    assert ran == ["good"]
    assert (await queue.get(good)).status is JobStatus.COMPLETED
    state = await queue.get(bad)
    assert state.status is JobStatus.CORRUPT
    with pytest.raises(fsjobs.JobFailed):
        await queue.result(bad)
    report = fsck(queue.store)
    allowed = {"journal-tail", "journal-corrupt", "symlink", "marker-content", "foreign-file"}
    assert {p.kind for p in report.problems} <= allowed
    queue.close()


@pytest.mark.asyncio
async def test_foreign_names_in_the_queue_tree_are_ignored(root: pathlib.Path) -> None:
    """Junk files, directories and symlinks in pending/ and running/ never stop a worker."""
    queue = fsjobs.Queue(root)

    @queue.task(name=f"tests.hostile.{uuid.uuid4().hex[:8]}")
    def ok() -> str:
        return "ok"

    job_id = await ok.enqueue()
    (bucket,) = {p.parent for p in root.glob("queues/default/pending/*/*/*/*")}
    (bucket / "..hidden").write_text("x")
    (bucket / "not-a-marker").mkdir()
    (bucket / "0000000000.000000000000000.zzzz").symlink_to("/etc/passwd")
    running = root / "queues/default/running"
    running.mkdir(exist_ok=True)
    (running / "garbage.name").write_text(json.dumps({"x": 1}))

    await run_worker(queue)
    assert await queue.result(job_id) == "ok"
    assert (root / "queues/default/running/garbage.name").exists(), "foreign files are left alone"
