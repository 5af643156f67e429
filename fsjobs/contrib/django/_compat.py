"""
Django's Tasks framework from wherever it is: ``django.tasks`` (Django 6.0 and
later, Python 3.12 and later) or the ``django-tasks`` backport (``django_tasks``,
which gives the same API on Python 3.11 and older Django).
"""

from __future__ import annotations

import importlib
import typing

try:
    importlib.import_module("django.tasks")
except ImportError:  # the backport
    PACKAGE = "django_tasks"
    _JSON_MODULE = "django_tasks.utils"
else:
    PACKAGE = "django.tasks"
    _JSON_MODULE = "django.utils.json"

_tasks = importlib.import_module(PACKAGE)
_base = importlib.import_module(f"{PACKAGE}.base")
_backends = importlib.import_module(f"{PACKAGE}.backends.base")
_exceptions = importlib.import_module(f"{PACKAGE}.exceptions")
_signals = importlib.import_module(f"{PACKAGE}.signals")

BaseTaskBackend: typing.Any = _backends.BaseTaskBackend
Task: typing.Any = _base.Task
TaskContext: typing.Any = _base.TaskContext
TaskError: typing.Any = _base.TaskError
TaskResult: typing.Any = _base.TaskResult
TaskResultStatus: typing.Any = _base.TaskResultStatus
TaskResultDoesNotExist: typing.Any = _exceptions.TaskResultDoesNotExist
#: ``InvalidTask`` in Django, ``InvalidTaskError`` in the backport.
InvalidTask: typing.Any = getattr(_exceptions, "InvalidTask", None) or _exceptions.InvalidTaskError
task_enqueued: typing.Any = _signals.task_enqueued
normalize_json: typing.Callable[[object], typing.Any] = importlib.import_module(
    _JSON_MODULE
).normalize_json
