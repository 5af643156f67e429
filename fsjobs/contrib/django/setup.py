"""
Set Django up in an fsjobs worker: name this module first, before the modules
that declare the tasks::

    DJANGO_SETTINGS_MODULE=myproject.settings \\
        fsjobs worker --root /srv/jobs fsjobs.contrib.django.setup myproject.tasks

Importing it runs ``django.setup()`` (settings, logging, the app registry), so the
tasks may use models. The worker's root must be the backend's ``OPTIONS["root"]``.
"""

from __future__ import annotations

import os

import django

if not os.environ.get("DJANGO_SETTINGS_MODULE"):
    raise ImportError(
        "set DJANGO_SETTINGS_MODULE to your settings module (e.g. myproject.settings) "
        "before starting the worker"
    )
django.setup()
