"""
Fixtures of the fault tests, and their figures repeated in the terminal summary
(whether or not pytest captures output).
"""

from __future__ import annotations

import os
import pathlib
import shutil
import tempfile
from collections.abc import Iterator

import pytest

from ._fsck import REPORTED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if REPORTED:
        terminalreporter.section("fault-injection figures")
        for line in REPORTED:
            terminalreporter.write_line(line)


@pytest.fixture
def scratch(tmp_path: pathlib.Path) -> Iterator[pathlib.Path]:
    """
    A directory for thousands of short-lived queue roots: on tmpfs (/dev/shm) when
    there is one, where fsync costs nothing. The crash-point and I/O-error tests lose
    no page cache (a process exit is not a power cut), so durability is not what they
    measure; T4 (power loss) would need a real disk.
    """
    shm = pathlib.Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    path = pathlib.Path(tempfile.mkdtemp(prefix="fsjobs-faults-", dir=shm))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
