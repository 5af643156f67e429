"""
The Django Tasks backend: a real Django settings module (examples/django_project),
Django's own ``@task``, ``.enqueue()`` and ``get_result()``, and a worker process
started as a deployment would start it (``fsjobs worker fsjobs.contrib.django.setup M``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow
pytest.importorskip("django", reason="needs fsjobs[django] (the test dependency group has it)")

TIMEOUT = 300  # a hang guard, not a timing assertion


@pytest.fixture(scope="module")
def seen(tmp_path_factory: pytest.TempPathFactory, subprocess_env: dict[str, str]) -> dict:
    tmp = tmp_path_factory.mktemp("django")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.integration.django_client",
            str(tmp / "root"),
            str(tmp / "log"),
        ],
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def subprocess_env() -> dict[str, str]:
    """The conftest's fixture of the same name, for this module's one Django run."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def test_framework_in_use(seen: dict) -> None:
    """Django's own django.tasks where it exists (3.12+, Django 6), else the backport."""
    expected = "django.tasks" if sys.version_info >= (3, 12) else "django_tasks"
    assert seen["framework"] == expected


def test_a_successful_result_through_get_result(seen: dict) -> None:
    assert seen["enqueued_status"] == ["READY"] * 5
    assert seen["total"] == ["SUCCESSFUL", 5, True, 1]
    assert seen["total_times"] is True
    assert seen["get_result"] == ["SUCCESSFUL", 5, [2, 3], "add"]
    assert seen["hello"] == "hello Ada", "an async task, through aenqueue and aget_result"
    assert seen["whoami"] is True, "takes_context: the context names the job and attempt"
    assert seen["worker_exit"] == 0


def test_priority_50_runs_before_minus_50(seen: dict) -> None:
    """Pushed low first, before the worker started: Django's larger priority ran first."""
    assert seen["priorities"] == [50, -50], "Django priority p is fsjobs priority -p"
    assert seen["order"] == ["high", "low"]


def test_the_job_is_plain_fsjobs(seen: dict) -> None:
    """func is the task's module path; kwargs hold args and kwargs; queue_name is the queue."""
    assert seen["job"] == {
        "func": "mysite.tasks.add",
        "kwargs": {"args": [2, 3], "kwargs": {}},
        "priority": 0,
    }
    assert seen["bad_queue"] == "reports"


def test_run_after_is_scheduled_at(seen: dict) -> None:
    assert seen["scheduled"] == ["scheduled", True]
    assert seen["later"] == "READY"


def test_a_failure_in_django_terms(seen: dict) -> None:
    assert seen["failed"] == ["FAILED", "builtins.ValueError", "ValueError"]
    assert seen["traceback_names_it"] is True


def test_django_errors(seen: dict) -> None:
    assert seen["missing"] == "TaskResultDoesNotExist"
    assert seen["mismatch"] == "TaskResultMismatch"
    assert "needs OPTIONS={'root'" in seen["no_root"]


def test_every_status_has_a_django_status(seen: dict) -> None:
    """Completed is SUCCESSFUL, running RUNNING, other final statuses FAILED, waiting ones READY."""
    mapping = {status: django for status, (_, django) in seen["mapping"].items()}
    assert mapping["completed"] == "SUCCESSFUL"
    assert mapping["running"] == "RUNNING"
    for status in ("pending", "scheduled", "retrying", "held"):
        assert mapping[status] == "READY", status
    for status in ("failed", "timed_out", "cancelled", "corrupt"):
        assert mapping[status] == "FAILED", status
    for status, (final, django) in seen["mapping"].items():  # statuses added later, too
        if status not in ("completed", "running"):
            assert django == ("FAILED" if final else "READY"), status


def test_eager_mode_through_django(seen: dict) -> None:
    """fsjobs.testing.eager(): enqueue() returns after the task ran."""
    assert seen["eager"] == ["SUCCESSFUL", 42]
