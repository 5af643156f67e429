"""
Fixtures of the shared-filesystem tests: one GlusterFS volume mounted twice (``scripts/sharedfs``),
so that one directory is seen through two separate clients, as by two NFS hosts.

The mounts come from ``$FSJOBS_SHAREDFS_A`` and ``$FSJOBS_SHAREDFS_B``
(``eval "$(scripts/sharedfs env)"``). Without them, a root user with FUSE and GlusterFS gets
the bed brought up for the session (and taken down after it, if this session brought it up);
anyone else gets the tests skipped, unless ``$FSJOBS_REQUIRE_SHAREDFS=1`` (CI sets it), which
turns the skip into a failure.

Figures the tests measure are printed, repeated in the terminal summary, and written as one
JSON object to the file named by ``$FSJOBS_SHAREDFS_REPORT``, if set.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import attrs
import pytest

from tests.conftest import REPO
from tests.integration.harness import Children

SCRIPT = REPO / "scripts" / "sharedfs"
#: How long a new name may take to show through the other mount (milliseconds in practice).
VISIBLE_TIMEOUT = 30.0


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "sharedfs: runs against a GlusterFS volume mounted twice (scripts/sharedfs), "
        "as two hosts sharing a directory",
    )


# -- figures ----------------------------------------------------------------------------------

#: test name -> its figures, for the terminal summary and $FSJOBS_SHAREDFS_REPORT
FIGURES: dict[str, dict[str, Any]] = {}


def record_figures(test: str, **figures: Any) -> None:
    """Print the figures of `test` and keep them for the summary and the JSON report."""
    FIGURES.setdefault(test, {}).update(figures)
    print(f"\nFIGURES sharedfs {test} " + " ".join(f"{k}={v}" for k, v in figures.items()))
    path = os.environ.get("FSJOBS_SHAREDFS_REPORT")
    if path:
        tmp = f"{path}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(FIGURES, f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("shared-filesystem figures (GlusterFS, two mounts)")
        for test, figures in FIGURES.items():
            line = " ".join(f"{k}={v}" for k, v in figures.items())
            terminalreporter.write_line(f"{test}: {line}")


# -- the bed ----------------------------------------------------------------------------------


def _wait_visible(path: pathlib.Path, what: str) -> None:
    give_up = time.monotonic() + VISIBLE_TIMEOUT
    while not path.exists():
        if time.monotonic() > give_up:
            pytest.fail(f"{what}: {path} did not appear within {VISIBLE_TIMEOUT} s")
        time.sleep(0.01)


def _check_shared(a: pathlib.Path, b: pathlib.Path) -> None:
    """Both are mount points, and a name created through `a` shows through `b`."""
    for m in (a, b):
        if not os.path.ismount(m):
            pytest.fail(f"{m} is not a mount point: run scripts/sharedfs up")
    probe = f".probe-{uuid.uuid4().hex}"
    (a / probe).touch()
    try:
        _wait_visible(b / probe, f"{a} and {b} are not one shared filesystem")
    finally:
        (a / probe).unlink()


def _why_not_possible() -> str | None:
    """Why this process cannot bring the bed up itself, or None if it can."""
    missing = []
    if os.geteuid() != 0:
        missing.append("not root")
    if not os.path.exists("/dev/fuse"):
        missing.append("no /dev/fuse")
    if not all(shutil.which(b) for b in ("glusterd", "gluster", "mount.glusterfs")):
        missing.append("GlusterFS not installed (glusterfs-server, glusterfs-client)")
    return ", ".join(missing) or None


def _script(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@attrs.frozen
class Mounts:
    a: pathlib.Path
    b: pathlib.Path


@pytest.fixture(scope="session")
def sharedfs_mounts() -> Iterator[Mounts]:
    """The two mount points of one GlusterFS volume; brought up here if need be and possible."""
    env_a, env_b = os.environ.get("FSJOBS_SHAREDFS_A"), os.environ.get("FSJOBS_SHAREDFS_B")
    required = os.environ.get("FSJOBS_REQUIRE_SHAREDFS") == "1"
    if env_a and env_b:
        mounts = Mounts(pathlib.Path(env_a), pathlib.Path(env_b))
        _check_shared(mounts.a, mounts.b)
        yield mounts
        return
    why = _why_not_possible()
    if why is not None:
        message = (
            f"needs root and FUSE (and GlusterFS) for the shared-filesystem bed: {why}; "
            "or bring one up with `sudo scripts/sharedfs up` "
            'and `eval "$(scripts/sharedfs env)"`'
        )
        if required:
            pytest.fail(
                f"FSJOBS_REQUIRE_SHAREDFS=1 but the shared-filesystem bed is missing: {why}"
            )
        pytest.skip(message)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FSJOBS_SHAREDFS_")}
    was_up = _script("status", env=env).returncode == 0
    if not was_up:
        up = _script("up", env=env)
        if up.returncode != 0:
            pytest.fail(f"scripts/sharedfs up failed:\n{up.stdout}{up.stderr}")
    exports = _script("env", env=env).stdout.split()  # ["export", "A=...", "B=..."]
    paths = dict(item.split("=", 1) for item in exports[1:])
    mounts = Mounts(
        pathlib.Path(paths["FSJOBS_SHAREDFS_A"]), pathlib.Path(paths["FSJOBS_SHAREDFS_B"])
    )
    try:
        _check_shared(mounts.a, mounts.b)
        yield mounts
    finally:
        if not was_up:
            down = _script("down", env=env)
            assert down.returncode == 0, f"scripts/sharedfs down failed:\n{down.stderr}"


@attrs.frozen
class Shared:
    """One fresh directory as seen from "host A" (mount A) and "host B" (mount B)."""

    a: pathlib.Path
    b: pathlib.Path

    def on(self, side: str) -> pathlib.Path:
        return self.a if side == "a" else self.b


@pytest.fixture
def shared(sharedfs_mounts: Mounts, request: pytest.FixtureRequest) -> Iterator[Shared]:
    """A fresh sub-directory, the same relative path under both mounts; removed afterwards."""
    name = f"{request.node.name[:60]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    name = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
    here = Shared(sharedfs_mounts.a / name, sharedfs_mounts.b / name)
    here.a.mkdir()
    _wait_visible(here.b, "the test's directory through mount B")
    try:
        yield here
    finally:
        shutil.rmtree(here.a, ignore_errors=True)


@pytest.fixture
def children(tmp_path: pathlib.Path, subprocess_env: dict[str, str]) -> Iterator[Children]:
    """The child processes of a test (tests.integration.harness); killed at its end."""
    kids = Children(tmp_path, subprocess_env)
    try:
        yield kids
    finally:
        kids.kill_all()
