"""
Django's Tasks framework on fsjobs: Django's own ``@task``, ``.enqueue()`` and
``get_result()``, run by an ``fsjobs worker`` process.

    python examples/django_backend.py            # in a temporary directory
    python examples/django_backend.py /tmp/jobs  # keep the files and look at them

The project is ``examples/django_project/`` (settings and tasks). Needs
``pip install 'fsjobs[django]'``: Django 6 on Python 3.12+, the django-tasks
backport on 3.11. The worker is the command a deployment runs:

    DJANGO_SETTINGS_MODULE=mysite.settings FSJOBS_ROOT=/srv/jobs \\
        fsjobs worker fsjobs.contrib.django.setup mysite.tasks --queues default,reports
"""

from __future__ import annotations

import datetime as dt
import os
import pathlib
import subprocess
import sys
import tempfile

import django

import fsjobs

PROJECT = pathlib.Path(__file__).resolve().parent / "django_project"


def main(root: str, log: pathlib.Path) -> None:
    os.environ.update(
        DJANGO_SETTINGS_MODULE="mysite.settings", FSJOBS_ROOT=root, EXAMPLE_LOG=str(log)
    )
    sys.path.insert(0, str(PROJECT))
    django.setup()
    from mysite import tasks  # declaring the tasks registers them with fsjobs

    # Enqueued before any worker runs: the worker then takes the larger priority first.
    low = tasks.record.using(priority=-50).enqueue("low (-50)")
    high = tasks.record.using(priority=50).enqueue("high (50)")
    total = tasks.add.enqueue(2, 3)
    print(f"enqueued add(2, 3) as job {total.id}: {total.status}")
    in_an_hour = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    later = tasks.add.using(run_after=in_an_hour).enqueue(1, 1)
    hello = tasks.greet.enqueue("Ada")
    me = tasks.whoami.enqueue(note="with context")
    bad = tasks.explode.enqueue(order=7)

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PROJECT), *sys.path]))
    command = [sys.executable, "-m", "fsjobs", "worker", "fsjobs.contrib.django.setup"]
    command += ["mysite.tasks", "--queues", "default,reports", "--concurrency", "1"]
    worker = subprocess.Popen(command, cwd=PROJECT, env=env)
    try:
        # fsjobs' own API sees the same jobs: wait for each to end.
        jobs = fsjobs.SyncQueue(root)
        for result in (low, high, total, hello, me, bad):
            try:
                jobs.wait(result.id, timeout=60)
            except fsjobs.JobFailed:
                pass
    finally:
        worker.terminate()
        worker.wait(timeout=60)

    for result in (total, hello, me, bad, later):
        result.refresh()
    print(f"add(2, 3): {total.status}, return value {total.return_value}")
    print(f"greet (async): {hello.status}, return value {hello.return_value!r}")
    info = me.return_value
    print(f"whoami: attempt {info['attempt']}, same id: {info['id'] == me.id}")
    print(f"explode: {bad.status}, {bad.errors[0].exception_class_path}")
    print(f"add with run_after in an hour: {later.status} ({jobs.get(later.id).status.value})")
    again = tasks.add.get_result(total.id)
    print(f"get_result({total.id}): {again.status}, {again.return_value}")
    print("run order: " + " -> ".join(log.read_text().split("\n")[:-1]))
    print(f"worker exited with {worker.returncode}")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="fsjobs-django-") as tmp:
        root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(tmp, "root")
        main(root, pathlib.Path(tmp) / "log")
