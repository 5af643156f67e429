"""
Issue #11 through the real command line: text from the disk is printed escaped,
and a user error is one line on stderr and the documented exit code, never a
traceback (argparse's own errors come after its usage line).
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import textwrap
import time

import pytest

from tests.acceptance.cli import fsjobs

EXIT_FAILED, EXIT_USAGE, EXIT_PROBLEMS = 1, 2, 4

BROKEN_MODULE = textwrap.dedent(
    """
    import no_such_dependency_of_clierrors  # the module exists; what it needs does not
    """
)


@pytest.fixture
def env(tmp_path: pathlib.Path, subprocess_env: dict[str, str]) -> dict[str, str]:
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "clierrors_broken.py").write_text(BROKEN_MODULE)
    return dict(subprocess_env, PYTHONPATH=f"{modules}:{subprocess_env['PYTHONPATH']}")


def assert_user_error(done: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    """No traceback; one line of our own, or argparse's usage and error lines; the exit code."""
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == code, done.stderr
    lines = done.stderr.splitlines()
    if lines and lines[0].startswith("usage: "):
        assert code == EXIT_USAGE and ": error: " in lines[-1], done.stderr
    else:
        assert len(lines) == 1 and lines[0].startswith("fsjobs: "), done.stderr
    for word in words:
        assert word in done.stderr, done.stderr


# -- text from the disk is escaped (#11 item 6) ---------------------------------------------------


def test_fsck_prints_a_planted_file_name_escaped_on_one_line(
    root: pathlib.Path, env: dict[str, str]
) -> None:
    """A name with a newline and an escape cannot forge report lines or drive the terminal."""
    assert fsjobs(root, "push", "clierrors.anything", env=env).returncode == 0
    (root / "tmp").mkdir(exist_ok=True)
    planted = root / "tmp" / "a\nfsck: 0 jobs\x1b[2J"
    planted.write_bytes(b"")
    old = time.time() - 7200  # past fsck's horizon: garbage left by a dead process
    os.utime(planted, (old, old))

    checked = fsjobs(root, "fsck", env=env)
    assert checked.returncode == EXIT_PROBLEMS, checked.stderr
    assert "\x1b" not in checked.stdout + checked.stderr
    lines = checked.stdout.splitlines()
    assert [line for line in lines if "tmp/" in line] == [
        "tmp-garbage          tmp/a\\nfsck: 0 jobs\\x1b[2J: left by a process that died"
    ]
    assert [line for line in lines if line.startswith("fsck:")] == [
        "fsck: 1 jobs, 1 markers, 1 problems (1 left)"
    ]
    forged = [line for line in checked.stderr.splitlines() if line.startswith("fsck: 0 jobs")]
    assert forged == [], "fsck's log lines stay whole too"


# -- user errors: worker and prune (#11 item 4) ---------------------------------------------------


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (("worker", "no_such_mod"), EXIT_USAGE, ("no task module 'no_such_mod'",)),
        (("worker", "no_such_pkg.tasks"), EXIT_USAGE, ("no task module 'no_such_pkg.tasks'",)),
        (
            ("worker", "clierrors_broken"),
            EXIT_FAILED,
            ("importing task module 'clierrors_broken' failed", "no_such_dependency_of_clierrors"),
        ),
        (("worker", "json", "--queues", ","), EXIT_USAGE, ("--queues",)),
        (("worker", "json", "--queues", ""), EXIT_USAGE, ("--queues",)),
        (("worker", "json", "--queues", "a,,b"), EXIT_USAGE, ("--queues",)),
        (("prune", "--older-than", "inf"), EXIT_USAGE, ("--older-than",)),
        (("prune", "--older-than", "1e20"), EXIT_USAGE, ("more than 100 years",)),
        (("prune", "--older-than", "5300000w"), EXIT_USAGE, ("more than 100 years",)),
        (("prune", "--older-than", "nan"), EXIT_USAGE, ("--older-than",)),
        (("prune", "--older-than", "-infd"), EXIT_USAGE, ("--older-than",)),
    ],
)
def test_worker_and_prune_user_errors(
    root: pathlib.Path,
    env: dict[str, str],
    args: tuple[str, ...],
    code: int,
    words: tuple[str, ...],
) -> None:
    assert_user_error(fsjobs(root, *args, env=env), code, *words)


def test_prune_takes_a_century_but_no_more(root: pathlib.Path, env: dict[str, str]) -> None:
    done = fsjobs(root, "prune", "--older-than", "36500d", env=env)
    assert (done.returncode, done.stdout) == (0, "pruned 0 jobs\n"), done.stderr


# -- user errors: ls --limit and watch --interval (#11 item 5) ------------------------------------

SOME_ID = "01m8tps3wb0000b7nbt1x5"


@pytest.mark.parametrize(
    "args",
    [
        ("ls", "--limit", "0"),
        ("ls", "--limit", "-1"),
        ("watch", SOME_ID, "--interval", "-1"),
        ("watch", SOME_ID, "--interval", "0"),
        ("watch", SOME_ID, "--interval", "nan"),
    ],
)
def test_ls_limit_and_watch_interval_must_be_positive(
    root: pathlib.Path, env: dict[str, str], args: tuple[str, ...]
) -> None:
    assert_user_error(fsjobs(root, *args, env=env), EXIT_USAGE, args[-2])


def test_ls_limit_one_lists_one_job(root: pathlib.Path, env: dict[str, str]) -> None:
    for _ in range(2):
        assert fsjobs(root, "push", "clierrors.anything", env=env).returncode == 0
    listed = fsjobs(root, "ls", "--limit", "1", env=env)
    assert listed.returncode == 0, listed.stderr
    assert len(listed.stdout.splitlines()) == 1
