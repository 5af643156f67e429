"""A person's tools work on the journal: every line of every segment is plain JSON."""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
import uuid

import pytest

import fsjobs
from fsjobs.testing import drain


@pytest.mark.asyncio
async def test_every_journal_line_of_a_finished_run_is_json(root: pathlib.Path) -> None:
    """After a run with successes, retries, failures, progress and cancels, json.loads (and jq)
    read every line of every segment."""
    queue = fsjobs.Queue(root)

    @queue.task(
        name=f"tests.tools.work.{uuid.uuid4().hex[:8]}",
        max_attempts=2,
        backoff=fsjobs.Backoff(initial=0, jitter=0),
    )
    async def work(ctx: fsjobs.Context, n: int) -> dict[str, int]:
        await ctx.progress(50, 'half way \u2014 "quoted"\nnewline')
        if n % 3 == 0 and ctx.attempt == 1:
            raise RuntimeError(f"flaky {n}")
        if n % 5 == 0:
            raise ValueError("always fails")
        return {"n": n}

    ids = [await work.enqueue(n=n) for n in range(12)]
    await queue.cancel(await work.enqueue(n=99))
    await drain(queue, wait_scheduled=True, max_wait=30)
    segments = sorted(root.glob("jobs/*/*/*.jsonl"))
    assert len(segments) > len(ids)
    lines = 0
    for segment in segments:
        for line in segment.read_text(encoding="ascii").splitlines():
            record = json.loads(line)
            assert {"crc", "type", "at"} <= set(record)
            lines += 1
        if shutil.which("jq"):
            subprocess.run(["jq", "-e", ".type", str(segment)], check=True, capture_output=True)
    assert lines >= 3 * len(ids)


def test_the_cli_watches_a_job_that_a_worker_process_runs(
    root: pathlib.Path, tmp_path: pathlib.Path, subprocess_env: dict[str, str]
) -> None:
    """Push and watch from the shell while a separate `fsjobs worker` process drains the queue."""
    (tmp_path / "shelltasks.py").write_text(
        "import os, fsjobs\n"
        "queue = fsjobs.Queue(os.environ['FSJOBS_ROOT'])\n"
        "@queue.task(name='shelltasks.echo')\n"
        "def echo(text: str, blob: bytes) -> str:\n"
        "    return text + ':' + blob.decode()\n"
    )
    env = dict(subprocess_env, FSJOBS_ROOT=str(root))
    env["PYTHONPATH"] = f"{tmp_path}:{env['PYTHONPATH']}"
    cmd = [__import__("sys").executable, "-m", "fsjobs"]
    with open(tmp_path / "worker.err", "wb") as err:
        worker = subprocess.Popen(
            [*cmd, "worker", "shelltasks"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        (tmp_path / "blob.txt").write_text("from a file")
        pushed = subprocess.run(
            [
                *cmd,
                "push",
                "shelltasks.echo",
                "--kwargs",
                '{"text": "hi"}',
                "--upload",
                f"blob={tmp_path / 'blob.txt'}",
            ],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        job_id = pushed.stdout.strip()
        watched = subprocess.run(
            [*cmd, "watch", job_id, "--json", "--timeout", "60"],
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert watched.returncode == 0, watched.stderr
        last = json.loads(watched.stdout.splitlines()[-1])
        assert (last["status"], last["result"]) == ("completed", "hi:from a file")
    finally:
        worker.terminate()
        assert worker.wait(timeout=60) == 0, (tmp_path / "worker.err").read_text()
