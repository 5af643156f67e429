"""
Periodic tasks: ``@queue.periodic(...)`` registers a task and its schedule.

A periodic task is a task (in the registry of `tasks`, run like any other)
plus a schedule, kept here by root and name. `Worker.run` keeps the schedules
of its root (`_periodic_runner`); `run_until_empty` and other processes that
import the task keep none.
"""

from __future__ import annotations

import datetime as dt
import threading
import typing
from collections.abc import Callable

import attrs

from . import _names, tasks
from ._schedule import Schedule
from .errors import InvalidJob, InvalidSettings

P = typing.ParamSpec("P")
R = typing.TypeVar("R")


class Owner(typing.Protocol):
    """What a periodic task needs of its `fsjobs.Queue`: its root and name, and a push."""

    root: str
    name: str

    async def push(self, job: typing.Any) -> str: ...


@attrs.frozen
class Periodic:
    """A task and its schedule: the jobs of its ticks go to `queue` under `root`."""

    name: str
    schedule: Schedule
    task: tasks.Task[..., typing.Any]
    root: str
    queue: str
    catch_up: bool = False

    def describe(self) -> dict[str, typing.Any]:
        """What ``periodic/<name>.json`` says of it (besides the next tick)."""
        return {
            "name": self.name,
            "schedule": self.schedule.describe(),
            "cron": self.schedule.cron,
            "every": self.schedule.every,
            "timezone": self.schedule.timezone,
            "queue": self.queue,
            "task": self.task.task_name,
            "catch_up": self.catch_up,
        }


_lock = threading.Lock()
_registry: dict[tuple[str, str], Periodic] = {}


def register(periodic: Periodic) -> None:
    key = (periodic.root, periodic.name)
    with _lock:
        old = _registry.get(key)
        if old is not None and old.task.fn is not periodic.task.fn:
            raise InvalidJob(
                f"periodic task {periodic.name!r} is already registered for {old.task.fn!r}; "
                "give one of them another name="
            )
        _registry[key] = periodic


def registered(root: str) -> list[Periodic]:
    """The periodic tasks registered in this process for the root at `root`."""
    with _lock:
        return sorted((p for (r, _), p in _registry.items() if r == root), key=lambda p: p.name)


def make_decorator(
    owner: Owner,
    cron: str | None,
    *,
    every: dt.timedelta | float | None,
    name: str | None,
    timezone: str,
    catch_up: bool,
    queue: str | None,
    options: dict[str, typing.Any],
) -> Callable[[Callable[P, R]], tasks.Task[P, R]]:
    """The decorator of ``@queue.periodic``: a task, plus its schedule (checked now)."""
    schedule = Schedule.of(cron, every, timezone)
    if "unique_key" in options:
        raise InvalidSettings("a periodic task's unique key is its tick's: do not give one")
    target = _names.check_name("queue", queue or owner.name)
    make_task = tasks.make_task_decorator(owner, name=name, options=options)

    def decorate(fn: Callable[P, R]) -> tasks.Task[P, R]:
        task = make_task(fn)
        if not _names.NAME_RE.fullmatch(task.task_name):
            raise InvalidJob(
                f"periodic task {task.task_name!r}: its name names a file, so it must be "
                "1-128 characters of [A-Za-z0-9._-]: give it name='app.cleanup'"
            )
        register(Periodic(task.task_name, schedule, task, owner.root, target, bool(catch_up)))
        return task

    return decorate
