"""
A Django process using fsjobs through Django's Tasks API, with the example project
(examples/django_project) and an ``fsjobs worker`` process of its own::

    python -m tests.integration.django_client ROOT LOG

Prints one JSON object with what it saw; test_django_backend checks it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import subprocess
import sys

import django

import fsjobs
import fsjobs.testing
from tests.conftest import REPO

PROJECT = REPO / "examples" / "django_project"


def main(root: str, log: str) -> None:
    os.environ.update(DJANGO_SETTINGS_MODULE="mysite.settings", FSJOBS_ROOT=root, EXAMPLE_LOG=log)
    sys.path.insert(0, str(PROJECT))
    django.setup()
    from django.core.exceptions import ImproperlyConfigured
    from mysite import tasks

    from fsjobs.contrib.django import FsJobsBackend, django_status
    from fsjobs.contrib.django._compat import PACKAGE, TaskResultDoesNotExist

    seen: dict[str, object] = {"framework": PACKAGE}
    jobs = fsjobs.SyncQueue(root)

    low = tasks.record.using(priority=-50).enqueue("low")
    high = tasks.record.using(priority=50).enqueue("high")
    total = tasks.add.enqueue(2, 3)
    in_an_hour = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).replace(microsecond=0)
    later = tasks.add.using(run_after=in_an_hour).enqueue(1, 1)
    hello = asyncio.run(tasks.greet.aenqueue("Ada"))
    me = tasks.whoami.enqueue(note="n")
    bad = tasks.explode.enqueue(order=7)
    seen["enqueued_status"] = [str(r.status) for r in (low, high, total, later, hello)]
    spec = jobs.get(total.id)
    seen["job"] = {"func": spec.func, "kwargs": spec.kwargs, "priority": spec.priority}
    seen["priorities"] = [jobs.get(low.id).priority, jobs.get(high.id).priority]
    scheduled = jobs.get(later.id)
    seen["scheduled"] = [scheduled.status.value, scheduled.scheduled_at == in_an_hour]
    seen["bad_queue"] = jobs.get(bad.id).queue

    command = [sys.executable, "-m", "fsjobs", "worker", "fsjobs.contrib.django.setup"]
    command += ["mysite.tasks", "--queues", "default,reports", "--concurrency", "1"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PROJECT), *sys.path]))
    worker = subprocess.Popen(command, cwd=PROJECT, env=env, stderr=subprocess.DEVNULL)
    try:
        for result in (low, high, total, hello, me, bad):
            try:
                jobs.wait(result.id, timeout=120)
            except fsjobs.JobFailed:
                pass
    finally:
        worker.terminate()
        seen["worker_exit"] = worker.wait(timeout=60)

    total.refresh()
    seen["total"] = [str(total.status), total.return_value, total.is_finished, total.attempts]
    seen["total_times"] = total.enqueued_at <= total.started_at <= total.finished_at
    again = tasks.add.get_result(total.id)
    seen["get_result"] = [str(again.status), again.return_value, again.args, again.task.name]
    seen["hello"] = asyncio.run(tasks.greet.aget_result(hello.id)).return_value
    seen["whoami"] = tasks.whoami.get_result(me.id).return_value == {
        "id": me.id,
        "attempt": 1,
        "note": "n",
    }
    failed = tasks.explode.get_result(bad.id)
    error = failed.errors[0]
    seen["failed"] = [
        str(failed.status),
        error.exception_class_path,
        error.exception_class.__name__,
    ]
    seen["traceback_names_it"] = "order 7 does not exist" in error.traceback
    seen["later"] = str(tasks.add.get_result(later.id).status)
    with open(log) as f:
        seen["order"] = f.read().split()
    try:
        tasks.add.get_result("0" * 22)
    except TaskResultDoesNotExist:
        seen["missing"] = "TaskResultDoesNotExist"
    try:
        tasks.greet.get_result(total.id)
    except Exception as exc:
        seen["mismatch"] = type(exc).__name__
    seen["mapping"] = {s.value: [s.is_final, str(django_status(s))] for s in fsjobs.JobStatus}
    try:
        FsJobsBackend("other", {"OPTIONS": {}})
    except ImproperlyConfigured as exc:
        seen["no_root"] = str(exc)

    # Eager mode (fsjobs.testing) works through Django too: the job has run at enqueue.
    with fsjobs.testing.eager():
        now = tasks.add.enqueue(20, 22)
    seen["eager"] = [str(now.status), now.return_value]
    print(json.dumps(seen))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
