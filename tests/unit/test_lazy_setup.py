"""
Blocking setup never runs on the event loop (DESIGN 9.1): constructing a Queue
or a Worker touches no file and reads no mount table, and ``async with Queue``
does the setup in an I/O thread.
"""

from __future__ import annotations

import asyncio
import pathlib
import threading

import pytest

import fsjobs
from fsjobs import _paths, _tree


@pytest.fixture
def mount_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The threads that read the mount table."""
    threads: list[str] = []
    real = _paths.mount_of

    def spy(path: str) -> _paths.Mount | None:
        threads.append(threading.current_thread().name)
        return real(path)

    monkeypatch.setattr(_tree, "mount_of", spy)
    return threads


@pytest.mark.asyncio
async def test_constructors_do_no_io(tmp_path: pathlib.Path, mount_reads: list[str]) -> None:
    root = tmp_path / "new-root"
    queue = fsjobs.Queue(root)
    fsjobs.Worker(queue, concurrency=2)
    assert not root.exists(), "the constructors created the root"
    assert mount_reads == [], "the constructors read the mount table"
    queue.close()


@pytest.mark.asyncio
async def test_async_with_sets_the_root_up_off_the_loop(
    tmp_path: pathlib.Path, mount_reads: list[str]
) -> None:
    root = tmp_path / "new-root"
    loop_thread = threading.current_thread().name
    async with fsjobs.Queue(root) as queue:
        assert (root / "fsjobs.json").is_file()
        assert mount_reads and loop_thread not in mount_reads
        worker = fsjobs.Worker(queue)
        await asyncio.wait_for(worker.run_until_empty(), 30)  # a hang guard
        assert worker.max_poll_interval == fsjobs.worker.IDLE_POLL_LOCAL
    assert loop_thread not in mount_reads


@pytest.mark.asyncio
async def test_reads_of_a_missing_root_create_nothing(tmp_path: pathlib.Path) -> None:
    """A mistyped root: listings are empty, get() says JobNotFound, and no directory appears."""
    root = tmp_path / "typo"
    queue = fsjobs.Queue(root)
    assert list(await queue.list_jobs(queue="*")) == []
    assert set((await queue.counts()).values()) == {0}
    with pytest.raises(fsjobs.JobNotFound):
        await queue.get("01m8ttev480000k622vnjx")
    queue.close()
    assert not root.exists()
