"""
Issue #11: whatever a task raises, SystemExit and KeyboardInterrupt included,
fails its attempt; a real ``fsjobs worker`` process goes on and exits normally.
"""

from __future__ import annotations

import json
import pathlib
import textwrap

import pytest

from tests.acceptance.cli import fsjobs

TASKS = textwrap.dedent(
    """
    import os
    import sys

    import fsjobs

    queue = fsjobs.Queue(os.environ["FSJOBS_ROOT"])

    @queue.task(name="raising.exit_async")
    async def exit_async() -> None:
        raise SystemExit(3)

    @queue.task(name="raising.interrupt_async")
    async def interrupt_async() -> None:
        raise KeyboardInterrupt

    @queue.task(name="raising.exit_sync")
    def exit_sync() -> None:
        sys.exit(4)

    @queue.task(name="raising.interrupt_sync")
    def interrupt_sync() -> None:
        raise KeyboardInterrupt

    @queue.task(name="raising.add")
    def add(a: int, b: int) -> int:
        return a + b
    """
)


@pytest.fixture
def env(
    root: pathlib.Path, tmp_path: pathlib.Path, subprocess_env: dict[str, str]
) -> dict[str, str]:
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "raising.py").write_text(TASKS)
    return dict(
        subprocess_env,
        FSJOBS_ROOT=str(root),
        PYTHONPATH=f"{modules}:{subprocess_env['PYTHONPATH']}",
    )


def test_system_exit_and_keyboard_interrupt_from_tasks_fail_their_attempts(
    root: pathlib.Path, env: dict[str, str]
) -> None:
    expected = {
        "raising.exit_async": ("failed", "SystemExit", "3"),
        "raising.interrupt_async": ("failed", "KeyboardInterrupt", ""),
        "raising.exit_sync": ("failed", "SystemExit", "4"),
        "raising.interrupt_sync": ("failed", "KeyboardInterrupt", ""),
        "raising.add": ("completed", None, None),
    }
    for task in expected:
        kwargs = '{"a": 1, "b": 2}' if task == "raising.add" else "{}"
        pushed = fsjobs(root, "push", task, "--kwargs", kwargs, env=env)
        assert pushed.returncode == 0, pushed.stderr

    # --concurrency 1: each task runs alone, so the worker has to survive each one
    worked = fsjobs(root, "worker", "raising", "--until-empty", "--concurrency", "1", env=env)
    assert worked.returncode == 0, worked.stderr
    assert worked.stdout == "ran 5 jobs\n", worked.stderr
    assert "Traceback" not in worked.stderr

    listed = json.loads(fsjobs(root, "ls", "--json", env=env).stdout)
    seen = {}
    for state in listed:
        error = state["error"]
        seen[state["func"]] = (
            state["status"],
            None if error is None else error["type"],
            None if error is None else error["message"],
        )
        assert (state["attempts"], state["max_attempts"]) == (1, 1)
    assert seen == expected
