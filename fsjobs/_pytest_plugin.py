"""
The fixtures of the pytest plugin ``fsjobs`` (`fsjobs.testing` is the entry
point; it loads this module, which is the only one that needs pytest).

- ``fsjobs_root``: the path of a fresh queue root, under ``tmp_path``.
- ``fsjobs_queue``: a `Queue` named ``default`` on that root.
- ``fsjobs_sync_queue``: a `SyncQueue` on the same root and queue.
- ``fsjobs_pushed``: a `PushLog` of every job pushed during the test, by any
  queue of the process (``fsjobs_pushed.assert_pushed(task, **kwargs)``).
- ``fsjobs_eager``: ``fsjobs_queue`` with eager mode on for the whole test: every
  push through any queue of the process runs the due jobs of its queue at once.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pytest

from .queue import Queue
from .sync_queue import SyncQueue
from .testing import PushLog, eager, record_pushes


@pytest.fixture
def fsjobs_root(tmp_path: pathlib.Path) -> pathlib.Path:
    """The path of a queue root under ``tmp_path``; the first push creates it."""
    return tmp_path / "fsjobs-root"


@pytest.fixture
def fsjobs_queue(fsjobs_root: pathlib.Path) -> Iterator[Queue]:
    """A `Queue` named ``default`` on `fsjobs_root`, closed after the test."""
    queue = Queue(fsjobs_root)
    try:
        yield queue
    finally:
        queue.close()


@pytest.fixture
def fsjobs_sync_queue(fsjobs_root: pathlib.Path) -> Iterator[SyncQueue]:
    """A `SyncQueue` on the root and queue of `fsjobs_queue`, closed after the test."""
    queue = SyncQueue(fsjobs_root)
    try:
        yield queue
    finally:
        queue.close()


@pytest.fixture
def fsjobs_pushed() -> Iterator[PushLog]:
    """Every job pushed during the test through any queue of the process."""
    with record_pushes() as log:
        yield log


@pytest.fixture
def fsjobs_eager(fsjobs_queue: Queue) -> Iterator[Queue]:
    """`fsjobs_queue`, with eager mode (`fsjobs.testing.eager`) on during the test."""
    with eager():
        yield fsjobs_queue
