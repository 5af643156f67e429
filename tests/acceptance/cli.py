"""The `fsjobs` command as a user runs it: a separate process, its output captured."""

from __future__ import annotations

import pathlib
import subprocess
import sys


def fsjobs(root: pathlib.Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``python -m fsjobs --root ROOT ARGS...``, never raising on a non-zero exit code."""
    return subprocess.run(
        [sys.executable, "-m", "fsjobs", "--root", str(root), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
