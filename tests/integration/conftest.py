"""Fixtures of the integration tests: the child processes a test starts, and a queue."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pytest

import fsjobs

from .harness import Children


@pytest.fixture
def children(tmp_path: pathlib.Path, subprocess_env: dict[str, str]) -> Iterator[Children]:
    kids = Children(tmp_path, subprocess_env)
    try:
        yield kids
    finally:
        kids.kill_all()


@pytest.fixture
def queue(root: pathlib.Path) -> Iterator[fsjobs.Queue]:
    q = fsjobs.Queue(root)
    try:
        yield q
    finally:
        q.close()
