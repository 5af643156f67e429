"""The real `fsjobs` command line, run as a subprocess against a real root."""

from __future__ import annotations

import json
import os
import pathlib
import pty
import select
import subprocess
import sys
import textwrap
import time

import pytest

from tests.acceptance.cli import fsjobs

TASKS = textwrap.dedent(
    """
    import os
    import time

    import fsjobs

    queue = fsjobs.Queue(os.environ["FSJOBS_ROOT"])

    @queue.task(name="clitasks.add")
    def add(a: int, b: int) -> int:
        return a + b

    @queue.task(name="clitasks.halfway")
    def halfway(ctx: fsjobs.Context, go: str) -> str:
        ctx.progress_sync(50, "half")
        deadline = time.monotonic() + 60
        while not os.path.exists(go) and time.monotonic() < deadline:
            time.sleep(0.01)
        return "done"

    @queue.task(name="clitasks.fail")
    def fail() -> None:
        raise ValueError("nope\\x1b[31m")
    """
)


@pytest.fixture
def cli_env(
    root: pathlib.Path, tmp_path: pathlib.Path, subprocess_env: dict[str, str]
) -> dict[str, str]:
    (tmp_path / "clitasks.py").write_text(TASKS)
    env = dict(subprocess_env, FSJOBS_ROOT=str(root))
    env["PYTHONPATH"] = f"{tmp_path}:{env['PYTHONPATH']}"
    return env


def test_push_work_show_ls_stats(root: pathlib.Path, cli_env: dict[str, str]) -> None:
    """Jobs pushed from the shell run in a CLI worker and are visible to show, ls and stats."""
    pushed = fsjobs(root, "push", "clitasks.add", "--kwargs", '{"a": 2, "b": 3}', env=cli_env)
    assert pushed.returncode == 0, pushed.stderr
    job_id = pushed.stdout.strip()
    failing = fsjobs(root, "push", "clitasks.fail", env=cli_env).stdout.strip()

    shown = json.loads(fsjobs(root, "show", job_id, "--json", env=cli_env).stdout)
    assert shown["status"] == "pending"

    worked = fsjobs(root, "worker", "clitasks", "--until-empty", env=cli_env)
    assert worked.returncode == 0, worked.stderr
    assert "ran 2 jobs" in worked.stdout

    shown = json.loads(fsjobs(root, "show", job_id, "--json", env=cli_env).stdout)
    assert (shown["status"], shown["result"], shown["attempts"]) == ("completed", 5, 1)

    history = fsjobs(root, "history", failing, env=cli_env).stdout.splitlines()
    assert [line.split()[2] for line in history] == ["pushed", "claimed", "failed"]
    assert "ValueError: nope" in history[2] and "\x1b" not in history[2]
    events = [
        json.loads(line)
        for line in fsjobs(root, "history", job_id, "--json", env=cli_env).stdout.splitlines()
    ]
    assert [(e["type"], e["attempt"]) for e in events] == [
        ("pushed", None),
        ("claimed", 1),
        ("completed", 1),
    ]
    assert events[2]["data"]["result"] == 5

    text = fsjobs(root, "show", failing, env=cli_env).stdout
    assert "ValueError" in text
    assert "\x1b" not in text, "control characters from job data must be escaped"

    listed = json.loads(fsjobs(root, "ls", "--status", "failed", "--json", env=cli_env).stdout)
    assert [s["id"] for s in listed] == [failing]

    stats = json.loads(fsjobs(root, "stats", "--json", env=cli_env).stdout)
    flow = {"paused": False, "concurrency": None, "rate": None}
    assert stats == {
        "queues": {
            "default": {"counts": {"completed": 1, "failed": 1}, "oldest_pending_s": None, **flow}
        },
        "workers_alive": 0,
    }
    metrics = fsjobs(root, "stats", "--prometheus", env=cli_env).stdout
    assert 'fsjobs_jobs{queue="default",status="completed"} 1\n' in metrics
    assert 'fsjobs_jobs{queue="default",status="pending"} 0\n' in metrics
    assert "fsjobs_workers_alive 0\n" in metrics

    watched = fsjobs(root, "watch", job_id, env=cli_env)
    assert (watched.returncode, watched.stdout) == (0, "completed  attempt 1/1\n")
    assert fsjobs(root, "retry", job_id, env=cli_env).returncode == 1, "completed: not retried"
    retried = fsjobs(root, "retry", failing, "--attempts", "2", env=cli_env)
    assert (retried.returncode, retried.stdout.strip()) == (0, f"{failing}: pending")
    assert fsjobs(root, "hold", failing, env=cli_env).stdout.strip() == f"{failing}: held"
    assert fsjobs(root, "release", failing, env=cli_env).stdout.strip() == f"{failing}: pending"
    assert fsjobs(root, "cancel", failing, env=cli_env).stdout.strip() == f"{failing}: cancelled"
    stats = json.loads(fsjobs(root, "stats", "--json", env=cli_env).stdout)
    assert stats["queues"]["default"]["counts"] == {"completed": 1, "cancelled": 1}

    assert fsjobs(root, "prune", "--older-than", "1d", env=cli_env).stdout == "pruned 0 jobs\n"
    bad_age = fsjobs(root, "prune", "--older-than", "soon", env=cli_env)
    assert bad_age.returncode == 2
    assert "not a duration" in bad_age.stderr

    checked = fsjobs(root, "fsck", env=cli_env)
    assert (checked.returncode, checked.stdout.strip()) == (
        0,
        "fsck: 2 jobs, 2 markers, 0 problems (0 left)",
    )
    (root / "tmp" / "stray").mkdir(parents=True)
    os.utime(root / "tmp" / "stray", (0, 0))
    damaged = fsjobs(root, "fsck", "--json", env=cli_env)
    assert damaged.returncode == 4
    assert [p["kind"] for p in json.loads(damaged.stdout)["problems"]] == ["tmp-garbage"]
    assert fsjobs(root, "fsck", "--repair", env=cli_env).returncode == 0
    assert fsjobs(root, "fsck", env=cli_env).returncode == 0


def test_watch_draws_a_live_bar_in_a_terminal(
    root: pathlib.Path, tmp_path: pathlib.Path, cli_env: dict[str, str]
) -> None:
    """In a terminal, `watch` redraws one bar line as progress arrives and ends with a newline."""
    go = tmp_path / "go"
    kwargs = json.dumps({"go": str(go)})
    job_id = fsjobs(
        root, "push", "clitasks.halfway", "--kwargs", kwargs, env=cli_env
    ).stdout.strip()
    leader, follower = pty.openpty()
    watch = subprocess.Popen(
        [sys.executable, "-m", "fsjobs", "watch", job_id, "--interval", "0.05"],
        stdout=follower,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(cli_env, COLUMNS="100"),
    )
    os.close(follower)
    worker = subprocess.Popen(
        [sys.executable, "-m", "fsjobs", "worker", "clitasks", "--until-empty"],
        stdout=subprocess.DEVNULL,
        env=cli_env,
    )
    try:
        seen = _read_pty_until(leader, b" 50.0%")
        go.touch()
        seen += _read_pty_until(leader, None)
        _, errors = watch.communicate(timeout=60)
        assert watch.returncode == 0, errors
        assert worker.wait(timeout=60) == 0
    finally:
        for proc in (watch, worker):
            proc.kill()
            proc.communicate()
        os.close(leader)
    text = seen.decode()
    assert f"running   [{'#' * 15}{'.' * 15}]  50.0% attempt 1/1 half" in text
    assert text.endswith(f"completed [{'#' * 30}] 100.0% attempt 1/1 half\r\n")
    assert "\r\x1b[K" in text, "each state is redrawn over the previous one"


def _read_pty_until(fd: int, marker: bytes | None, timeout: float = 60) -> bytes:
    """Read a pty until `marker` shows (or, with None, until the other end closes)."""
    data = b""
    deadline = time.monotonic() + timeout
    while marker is None or marker not in data:
        assert time.monotonic() < deadline, f"no {marker!r} in {data!r}"
        ready, _, _ = select.select([fd], [], [], 0.5)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: every writer has closed the pty
            chunk = b""
        if not chunk:
            assert marker is None, f"the pty closed before {marker!r}: {data!r}"
            break
        data += chunk
    return data


def test_errors_are_one_line_with_documented_exit_codes(
    root: pathlib.Path, cli_env: dict[str, str]
) -> None:
    """A missing job exits 3, bad input exits 1, bad usage exits 2: one line each, no traceback."""
    missing = fsjobs(root, "show", "0" * 22, env=cli_env)
    assert missing.returncode == 3
    bad = fsjobs(root, "push", "clitasks.add", "--kwargs", "[1, 2]", env=cli_env)
    assert bad.returncode == 1
    naive = fsjobs(root, "push", "clitasks.add", "--at", "2030-01-01T00:00:00", env=cli_env)
    assert naive.returncode == 1
    assert "timezone" in naive.stderr
    usage = fsjobs(root, "frobnicate", env=cli_env)
    assert usage.returncode == 2
    for result in (missing, bad, naive):
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert not list(root.glob("jobs/*/*")), "refused pushes create no job folder"
    assert not list(root.glob("queues/*/*/**/*.a000of*")), "refused pushes publish nothing"


def test_pause_configure_and_the_listings_that_show_them(
    root: pathlib.Path, cli_env: dict[str, str]
) -> None:
    """pause/resume/configure from a shell; stats and ls say what is paused and capped."""
    pushed = fsjobs(root, "push", "clitasks.add", "--kwargs", '{"a": 1, "b": 1}', env=cli_env)
    assert pushed.returncode == 0, pushed.stderr
    assert fsjobs(root, "pause", "default", env=cli_env).stdout == "default: paused\n"
    assert fsjobs(root, "pause", "default", env=cli_env).stdout == "default: paused (already)\n"
    configured = fsjobs(
        root, "configure", "default", "--concurrency", "2", "--rate", "10/m", env=cli_env
    )
    assert configured.stdout == "default: paused  concurrency=2 rate=10/m\n", configured.stderr
    assert (root / "queues/default/settings.json").read_text() == (
        '{"concurrency":2,"rate":"10/m"}\n'
    ), "readable with cat"
    stats = fsjobs(root, "stats", env=cli_env).stdout
    assert "[paused concurrency=2 rate=10/m]" in stats
    listed = fsjobs(root, "ls", env=cli_env)
    assert "queue default is paused (fsjobs resume default)" in listed.stderr
    assert "queue default is capped: concurrency=2 rate=10/m" in listed.stderr
    ran = fsjobs(root, "worker", "clitasks", "--until-empty", env=cli_env)
    assert ran.returncode == 0 and "ran 0" in ran.stdout + ran.stderr, "a paused queue is empty"
    for bad in (["--concurrency", "0"], ["--rate", "5/d"], ["--rate", "fast"]):
        wrong = fsjobs(root, "configure", "default", *bad, env=cli_env)
        assert wrong.returncode == 2 and "invalid" in wrong.stderr
    removed = fsjobs(root, "configure", "default", "--rate", "none", "--json", env=cli_env)
    assert json.loads(removed.stdout) == {
        "queue": "default",
        "paused": True,
        "concurrency": 2,
        "rate": None,
    }
    assert fsjobs(root, "resume", "default", env=cli_env).stdout == "default: resumed\n"
    ran = fsjobs(root, "worker", "clitasks", "--until-empty", env=cli_env)
    assert ran.returncode == 0 and "ran 1" in ran.stdout + ran.stderr
    schedules = fsjobs(root, "schedules", env=cli_env)
    assert schedules.returncode == 0
    assert schedules.stdout.startswith("no schedules"), schedules.stdout


def test_doctor_checks_the_root(root: pathlib.Path, cli_env: dict[str, str]) -> None:
    """`fsjobs doctor` passes on a local disk and says what it checked."""
    checked = fsjobs(root, "doctor", env=cli_env)
    assert checked.returncode == 0, checked.stdout
    assert [line.split()[1] for line in checked.stdout.splitlines()] == [
        "filesystem:",
        "locks:",
        "clock:",
        "space:",
    ]
    checks = json.loads(fsjobs(root, "doctor", "--json", env=cli_env).stdout)
    assert {c["name"]: c["level"] for c in checks}["locks"] == "ok"


def test_help_lists_exit_codes(subprocess_env: dict[str, str]) -> None:
    """`fsjobs --help` documents the exit codes."""
    out = subprocess.run(
        [sys.executable, "-m", "fsjobs", "--help"],
        capture_output=True,
        text=True,
        env=subprocess_env,
        check=True,
    ).stdout
    assert "exit codes" in out
    assert "3 no such job" in out


def test_demo_runs_jobs_in_priority_then_schedule_order(subprocess_env: dict[str, str]) -> None:
    """The README's demo command runs every job and prints them in run order."""
    out = subprocess.run(
        [sys.executable, "-m", "fsjobs", "demo"],
        capture_output=True,
        text=True,
        env=subprocess_env,
        check=True,
        timeout=120,
    ).stdout
    assert "the worker ran 4 jobs" in out
    order = out.split("run order: ")[1].splitlines()[0].split(" -> ")
    assert order == [
        "greet, priority -10 (runs first)",
        "square, priority 0",
        "greet, priority 5",
        "square, in 0.5 s",
    ]
    assert out.count("completed") == 4
