"""
Every ``examples/*.py`` runs as a user would run it, in a subprocess, and succeeds.

The list of examples is a glob, so a new example is tested without touching this
file. Each one gets its own root (its first argument) under ``tmp_path``, so
nothing is left behind and the files can be inspected when a test fails. Where an
example prints something that shows the feature worked, the test checks for it.
"""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO

EXAMPLES = sorted((REPO / "examples").glob("*.py"))
TIMEOUT = 120  # seconds; a hang guard, not a timing assertion

#: Patterns each example's output must contain (re.MULTILINE).
EXPECTED: dict[str, list[str]] = {
    "quickstart.py": [r"completed, result 5$", r"completed, result 42$"],
    "priorities.py": [
        r"^run order: urgent -> important -> routine A -> routine B -> routine C -> background$"
    ],
    "scheduled.py": [
        r"^refused: scheduled_at must be timezone-aware",
        r"^without waiting: ran 1 job\(s\)$",
        r"^waiting up to 10 s for scheduled jobs: ran 1 job\(s\)$",
        r"^the job a year ahead is still scheduled$",
    ],
    "retries.py": [
        r"^examples\.retries\.flaky: completed after 3/3$",
        r"^examples\.retries\.poll: completed after 2/5$",
        r"^examples\.retries\.broken: failed after 2/2, last error ValueError: bad input$",
        r"result\(\) raised JobFailed",
        r"^retried by hand: pending, attempts 2/3$",
        r"^after the manual retry: failed after 3 attempts$",
    ],
    "unique_keys.py": [
        r"^second push: .*\(same job: True\)$",
        r"^push to 'reports': .*\(same job: True\)$",
        r"^push after it ended: .*\(a new job: True\)$",
    ],
    "results_and_wait.py": [
        r"^result\(\) before the run: JobNotDone",
        r"^wait\(timeout=0\.1\): WaitTimeout",
        r"^result\(\): \{'count': 3, 'mean': 3\.0\}$",
        r"error type ZeroDivisionError",
        r"error type fsjobs\.errors\.UnknownTask",
        r"^watch: completed +100% step 3 of 3$",
        r"^history: pushed, claimed, completed$",
        r"^history: 3 progress records$",
    ],
    "sync_tasks.py": [
        r"sum\(range\(10000\)\) = 49995000 in thread fsjobs-task-",
        r"^crunch saw ctx\.cancelled",
        r"^crunch: timed_out \(TimeoutError\), result None$",
    ],
    "multiple_queues.py": [
        r"^worker ran 6 jobs: email:ann report:jan email:bob report:feb email:cid report:mar$",
        r"^ *videos: \{'pending': 1\}$",
    ],
    "limits.py": [
        r"^refused: a Limit\.Type\.MEMORY limit needs executor='process'",
        r"^512 MiB under 256: failed: MemoryError: .*MEMORY limit of 268435456 bytes$",
        r"^64 MiB under 256: completed: allocated 64 MiB in child \d+$",
        r"^an hour under 1 s: timed_out: TimeoutError",
        r"^a SIGKILL: failed: fsjobs\.errors\.ChildDied: .* killed by SIGKILL$",
    ],
    "logs.py": [
        r"^--- the log of ping:\nping 0\nping 1\nping 2\n--- the log of pong:\npong 0\n",
        r"^pong 2\n--- the log of report\.doc, attempt 1:\n",
        (
            r"^attempt 1: converting report\.doc in a child process\n.* INFO examples\.logs: "
            r"report\.doc has 3 pages\n"
        ),
        r"^attempt 2: converting report\.doc",
        r"^report\.doc: report\.pdf$",
        r"attempts/000001/log', '.*attempts/000002/log'\]$",
    ],
    "progress.py": [r"^completed +100\.0% +150/150 rows$", r"the last says 100\.0% '150/150 rows'"],
    "uploads_and_outputs.py": [
        r"^uploads the task saw: \['notes', 'photo'\]$",
        r"^outputs: \['summary\.txt', 'thumbnail\.bin'\]$",
        r"^notes: taken at dawn$",
    ],
    "cancel.py": [
        r"^cancel before it starts: True$",
        r"^the cancelled async task's log:\n  async task: cleaning up after CancelledError$",
        r"^cancel a running sync task: True$",
        r": cancelled, attempts=0$",
    ],
    "periodic.py": [
        r"^3 heartbeat ticks ran with 2 workers keeping the schedule:$",
        r"^each tick ran once: True$",
        r"^caught up the missed nightly tick: \d{4}-\d\d-\d\d 02:30 in Berlin$",
        r"^examples\.periodic\.heartbeat: every 1 s \(UTC\) -> queue default  last tick: ",
        r"^examples\.periodic\.nightly: 30 2 \* \* \* \(Europe/Berlin\)",
    ],
    "pause_resume.py": [
        r"^pause: True \(again: False\)$",
        r"^the pause is a file: True$",
        r"^paused after (\d+) jobs; half a second later still \1 done$",
        r"^a push to the paused queue: accepted$",
        r"^after resume all 21 jobs ran$",
        r"^run_until_empty on a paused queue ran 0$",
        r"^after resume it ran 1$",
    ],
    "queue_limits.py": [
        r"^settings\.json: \{'concurrency': 2\}$",
        r"^ran 10 jobs with 2 workers of concurrency 5: at most 2 at once$",
        r"^no window over 4: True$",
        r"^after removing the rate: QueueInfo\(paused=False, concurrency=None, rate=None\)$",
    ],
    "hold_and_retry.py": [
        r"^hold: True, now held$",
        r"^while held, the worker ran: \['nobody@example\.com'\]$",
        r"^retry: pending, attempts 1 of 2$",
        r"^ann@example\.com: completed after 1 attempt\(s\)$",
        r"^nobody@example\.com: completed after 2 attempt\(s\)$",
    ],
    "django_backend.py": [
        r"^enqueued add\(2, 3\) as job \w+: READY$",
        r"^add\(2, 3\): SUCCESSFUL, return value 5$",
        r"^greet \(async\): SUCCESSFUL, return value 'hello Ada'$",
        r"^explode: FAILED, builtins\.ValueError$",
        r"^add with run_after in an hour: READY \(scheduled\)$",
        r"^run order: high \(50\) -> low \(-50\)$",
        r"^worker exited with 0$",
    ],
    "sync_queue.py": [
        r"^  completed +100\.0% pass 3 of 3$",
        r"^result: \{'path': 'cat\.png', 'width': 200\}$",
        r"^widths: \[100, 200, 300\]$",
        r"^wait raised JobFailed: fsjobs\.errors\.UnknownTask$",
        r"^counts: \{'completed': 4, 'failed': 1\}$",
    ],
    "testing_with_pytest.py": [
        r"test_a_bad_address_fails_and_will_retry PASSED",
        r"=+ 5 passed in ",
    ],
    "fastapi_app.py": [
        r"^POST /fsjobs/jobs/examples\.fastapi_app\.thumbnail -> 201 ",
        r"^without the token: 401$",
        r"^a worker ran 2 jobs$",
        r": completed, result \{'width': 200, 'bytes_in': 1000, 'bytes_out': 200\}, 200 bytes$",
        r": completed, result \{'width': 500, 'bytes_in': 2000, 'bytes_out': 1000\}, 1000 bytes$",
        r"^dashboard links stay under the mount: True$",
    ],
    "report_pipeline.py": [
        r"^pushed monthly-report: fetch pending, chart blocked, totals blocked, mail blocked$",
        r"^archive job: blocked$",
        r"^ran 5 jobs; workflow completed$",
        r"^mail: to boss@example\.com: 245 sold in 3 regions, see chart\.txt$",
        r"^ north #{12}$",
        r"^archived: to boss@example\.com",
        r"^second run: workflow failed$",
        (
            r"^  chart: cancelled \(fsjobs\.errors\.DependencyFailed: "
            r"parent \w+ \(step 'fetch'\) ended failed\)$"
        ),
        (
            r"^  mail: cancelled \(fsjobs\.errors\.DependencyFailed: "
            r"parent \w+ \(step '(chart|totals)'\) ended cancelled\)$"
        ),
    ],
    "multiprocess_workers.py": [
        r"^all 12 jobs completed: \[0, 1, 4, 9, 16, 25, 36, 49, 64, 81, 100, 121\]$",
        r"^the job was rescued and completed on worker \d+, attempt 2 of 3$",
        r"^workers exited with \[",
    ],
}


def test_there_are_examples() -> None:
    """The glob finds the examples (an empty parametrisation would pass silently)."""
    assert len(EXAMPLES) >= 14


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs(
    example: pathlib.Path, tmp_path: pathlib.Path, subprocess_env: dict[str, str]
) -> None:
    """The example exits 0 on a fresh root and prints what shows its feature worked."""
    root = tmp_path / "root"
    proc = subprocess.run(
        [sys.executable, str(example), str(root)],
        cwd=REPO,
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    report = f"exit code {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"

    assert proc.returncode == 0, report
    assert proc.stdout.strip(), report
    for pattern in EXPECTED.get(example.name, []):
        assert re.search(pattern, proc.stdout, re.MULTILINE), f"missing /{pattern}/\n{report}"
    assert "Traceback" not in proc.stderr, report


def test_every_expectation_names_an_example() -> None:
    """A renamed example does not leave its expectations silently unchecked."""
    assert set(EXPECTED) <= {p.name for p in EXAMPLES}
