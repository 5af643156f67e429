"""
Settings of the example Django project: Django's Tasks framework with fsjobs as
its backend. FSJOBS_ROOT names the queue root, for Django and for `fsjobs worker`
alike.
"""

from __future__ import annotations

import os

SECRET_KEY = "only-for-the-example"
DEBUG = False
USE_TZ = True
INSTALLED_APPS: list[str] = []
DATABASES: dict[str, dict[str, str]] = {}

TASKS = {
    "default": {
        "BACKEND": "fsjobs.contrib.django.FsJobsBackend",
        "QUEUES": ["default", "reports"],
        "OPTIONS": {"root": os.environ["FSJOBS_ROOT"]},
    }
}

#: Where the `record` task notes what ran, in order.
EXAMPLE_LOG = os.environ.get("EXAMPLE_LOG", os.devnull)
