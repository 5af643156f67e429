"""``fsjobs logs`` and ``fsjobs worker --queues a=N``, run as a user runs them."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import textwrap
import time

import pytest

TASKS = textwrap.dedent(
    """
    import os
    import sys
    import time

    import fsjobs

    queue = fsjobs.Queue(os.environ["FSJOBS_ROOT"])

    @queue.task(name="logtasks.talk")
    def talk(go: str) -> str:
        print("first, in \\x1b[31mred")
        sys.stdout.flush()
        deadline = time.monotonic() + 60
        while not os.path.exists(go) and time.monotonic() < deadline:
            time.sleep(0.01)
        print("second", file=sys.stderr)
        return "done"
    """
)
DEADLINE = 120.0


def fsjobs(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fsjobs", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=DEADLINE,
        check=False,
    )


def start(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "fsjobs", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


@pytest.fixture
def env(
    root: pathlib.Path, tmp_path: pathlib.Path, subprocess_env: dict[str, str]
) -> dict[str, str]:
    (tmp_path / "logtasks.py").write_text(TASKS)
    out = dict(subprocess_env, FSJOBS_ROOT=str(root))
    out["PYTHONPATH"] = f"{tmp_path}:{out['PYTHONPATH']}"
    return out


@pytest.mark.slow
def test_logs_prints_an_attempts_output_and_follow_prints_it_as_it_grows(
    tmp_path: pathlib.Path, env: dict[str, str]
) -> None:
    go = tmp_path / "go"
    job_id = fsjobs("push", "logtasks.talk", "--kwargs", f'{{"go": "{go}"}}', env=env).stdout
    job_id = job_id.strip()
    worker = start("worker", "logtasks", "--until-empty", env=env)
    follow: subprocess.Popen[str] | None = None
    try:
        give_up = time.monotonic() + DEADLINE
        while "first" not in fsjobs("logs", job_id, env=env).stdout:
            assert worker.poll() is None and time.monotonic() < give_up, worker.communicate()
            time.sleep(0.05)
        follow = start("logs", job_id, "--follow", "--interval", "0.05", env=env)
        go.touch()
        out, err = follow.communicate(timeout=DEADLINE)
        assert follow.returncode == 0, err
        assert out == "first, in \\x1b[31mred\nsecond\n", "escaped, whole, and it ended"
        worker.communicate(timeout=DEADLINE)
        assert worker.returncode == 0
    finally:
        for proc in (worker, follow):
            if proc is not None and proc.poll() is None:
                proc.kill()
            if proc is not None:
                proc.communicate()
    shown = fsjobs("logs", job_id, "--attempt", "1", env=env)
    assert (shown.returncode, shown.stdout) == (0, "first, in \\x1b[31mred\nsecond\n")
    assert fsjobs("logs", job_id, "--attempt", "2", env=env).stdout == ""
    missing = fsjobs("logs", "0" * 22, env=env)
    assert missing.returncode == 3, missing.stderr


def test_worker_refuses_a_bad_queue_cap(env: dict[str, str]) -> None:
    for bad in ("a=0", "a=2,b", "a=x"):
        run = fsjobs("worker", "logtasks", "--queues", bad, env=env)
        assert run.returncode == 2, (bad, run.stderr)
        assert "--queues" in run.stderr


def test_the_worker_help_shows_the_new_options(env: dict[str, str]) -> None:
    shown = fsjobs("worker", "--help", env=env).stdout
    assert "Q=N" in shown and "--executor" in shown
