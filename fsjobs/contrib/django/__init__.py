"""
A backend for Django's Tasks framework (``fsjobs[django]``): Django's own
``@task``, ``.enqueue()`` and ``get_result()``, with fsjobs as the engine::

    TASKS = {
        "default": {
            "BACKEND": "fsjobs.contrib.django.FsJobsBackend",
            "QUEUES": ["default", "emails"],
            "OPTIONS": {"root": "/srv/jobs"},
        }
    }

and workers started with ``fsjobs worker --root /srv/jobs fsjobs.contrib.django.setup
myproject.tasks`` (the first module sets Django up from DJANGO_SETTINGS_MODULE; the
second defines the tasks, which the backend registers with fsjobs as they are
declared). On Python 3.11, where Django has no ``django.tasks``, the ``django-tasks``
backport gives the same API, and the backend works with either.

How Django's task maps onto a job:

- the job's task name is the function's module path (``myproject.tasks.send``), its
  kwargs ``{"args": [...], "kwargs": {...}}``;
- ``queue_name`` is the fsjobs queue; ``run_after`` is ``scheduled_at``;
- Django's priority p (-100 to 100, larger runs sooner) is fsjobs priority -p (lower
  runs sooner), so the order Django promises holds;
- statuses: pending, scheduled, retrying and held are READY; running is RUNNING;
  completed is SUCCESSFUL; failed, timed out, cancelled and corrupt are FAILED.
"""

from __future__ import annotations

import builtins
import datetime as dt
import inspect
import threading
import typing

from django.core.exceptions import ImproperlyConfigured
from django.db import close_old_connections
from django.utils import timezone
from django.utils.module_loading import import_string

from fsjobs import Context, Job, JobNotFound, JobState, JobStatus, Queue, SyncQueue, tasks

from ._compat import (
    BaseTaskBackend,
    InvalidTask,
    Task,
    TaskContext,
    TaskError,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
    normalize_json,
    task_enqueued,
)

__all__ = ["FsJobsBackend", "django_status"]

#: Django task module path -> the first Django Task declared for it in this process.
_declared: dict[str, typing.Any] = {}
#: (root, queue) -> the SyncQueue of the backends using them (a backend is made per thread).
_queues: dict[tuple[str, str], SyncQueue] = {}
_lock = threading.Lock()


class FsJobsBackend(BaseTaskBackend):  # type: ignore[misc]
    """Django Tasks on an fsjobs root: ``OPTIONS={"root": "/srv/jobs"}``."""

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, typing.Any]) -> None:
        super().__init__(alias, params)
        root = self.options.get("root")
        if not root:
            raise ImproperlyConfigured(
                f"the task backend {alias!r} (fsjobs) needs OPTIONS={{'root': '/path/to/jobs'}}"
            )
        self.root = str(root)

    def queue(self, name: str) -> SyncQueue:
        """The fsjobs queue of a Django queue name (one per root and name in the process)."""
        with _lock:
            queue = _queues.get((self.root, name))
            if queue is None:
                queue = _queues[(self.root, name)] = SyncQueue(self.root, name)
            return queue

    def validate_task(self, task: typing.Any) -> None:
        """
        Django's checks, then register the task with fsjobs under its module path, so
        a worker that imports the task's module can run its jobs.
        """
        super().validate_task(task)
        try:
            self.queue(task.queue_name)
        except ValueError as exc:
            raise InvalidTask(str(exc)) from exc
        _declare(task, self.root)

    def enqueue(self, task: typing.Any, args: typing.Any, kwargs: typing.Any) -> typing.Any:
        """Push a job for the task; returns its TaskResult (its id is the job id)."""
        run_after = task.run_after
        if run_after is not None and timezone.is_naive(run_after):
            run_after = timezone.make_aware(run_after)
        job = Job(
            func=task.module_path,
            kwargs={"args": normalize_json(list(args)), "kwargs": normalize_json(dict(kwargs))},
            priority=-task.priority,
            scheduled_at=run_after,
        )
        queue = self.queue(task.queue_name)
        result = self._result(task, queue.get(queue.push(job)))
        task_enqueued.send(type(self), task_result=result)
        return result

    def get_result(self, result_id: str) -> typing.Any:
        """The TaskResult of a job (any queue under the root); TaskResultDoesNotExist if none."""
        try:
            state = self.queue("default").get(result_id)
        except (JobNotFound, ValueError) as exc:
            raise TaskResultDoesNotExist(result_id) from exc
        task = _declared.get(state.func) or _import_task(state)
        if task is None:
            raise TaskResultDoesNotExist(f"{result_id} is not a job of a Django task")
        return self._result(task, state)

    def _result(self, task: typing.Any, state: JobState) -> typing.Any:
        changes: dict[str, typing.Any] = {"queue_name": state.queue, "backend": self.alias}
        if -100 <= -state.priority <= 100:
            changes["priority"] = -state.priority
        if state.scheduled_at is not None:
            changes["run_after"] = state.scheduled_at
        args, task_kwargs = state.kwargs.get("args"), state.kwargs.get("kwargs")
        result = TaskResult(
            task=task.using(**changes),
            id=state.id,
            status=django_status(state.status),
            enqueued_at=state.created_at,
            started_at=state.started_at,
            finished_at=state.finished_at,
            last_attempted_at=state.started_at,
            args=args if isinstance(args, list) else [],
            kwargs=task_kwargs if isinstance(task_kwargs, dict) else {},
            backend=self.alias,
            errors=_errors(state),
            worker_ids=[state.worker or ""] * state.attempts,
        )
        if state.status is JobStatus.COMPLETED:
            object.__setattr__(result, "_return_value", state.result)
        return result


def django_status(status: JobStatus) -> typing.Any:
    """
    Django's status for an fsjobs status: completed is SUCCESSFUL, running is RUNNING,
    any other final status FAILED, and every waiting one (pending, scheduled, retrying,
    held...) READY.
    """
    if status is JobStatus.COMPLETED:
        return TaskResultStatus.SUCCESSFUL
    if status is JobStatus.RUNNING:
        return TaskResultStatus.RUNNING
    if status.is_final:
        return TaskResultStatus.FAILED
    return TaskResultStatus.READY


def _errors(state: JobState) -> list[typing.Any]:
    """The latest attempt's error as Django's TaskError (built-ins named ``builtins.X``)."""
    if state.error is None:
        return []
    path = state.error.type
    if "." not in path and isinstance(getattr(builtins, path, None), type):
        path = f"builtins.{path}"
    return [TaskError(exception_class_path=path, traceback=state.error.traceback)]


def _import_task(state: JobState) -> typing.Any:
    """
    The Django task a job names, imported as Django's own backends do, for a job that
    looks like one this backend pushed and a name that is a Django Task; else None.
    """
    if set(state.kwargs) != {"args", "kwargs"}:
        return None
    try:
        task = import_string(state.func)
    except ImportError:
        return None
    return task if isinstance(task, Task) else None


def _declare(task: typing.Any, root: str) -> None:
    """Register a Django task with fsjobs (once per module path)."""
    with _lock:
        if task.module_path in _declared:
            return
        _declared[task.module_path] = task
    run = _runner(task)
    tasks.register(
        tasks.Task(run, name=task.module_path, queue=Queue(root, task.queue_name), job_defaults={})
    )


def _runner(task: typing.Any) -> typing.Callable[..., typing.Any]:
    """The function a worker runs for a job of `task`: Django's function, with its args."""
    func = task.func

    def context(ctx: Context, args: list[typing.Any]) -> list[typing.Any]:
        if not task.takes_context:
            return list(args)
        now = dt.datetime.now(dt.UTC)
        running = TaskResult(
            task=task,
            id=ctx.job_id,
            status=TaskResultStatus.RUNNING,
            enqueued_at=None,
            started_at=now,
            finished_at=None,
            last_attempted_at=now,
            args=list(args),
            kwargs={},
            backend=task.backend,
            errors=[],
            worker_ids=[""] * ctx.attempt,
        )
        return [TaskContext(task_result=running), *args]

    if inspect.iscoroutinefunction(func):

        async def run_async(
            ctx: Context, args: list[typing.Any], kwargs: dict[str, typing.Any]
        ) -> typing.Any:
            return normalize_json(await func(*context(ctx, args), **kwargs))

        return run_async

    def run(ctx: Context, args: list[typing.Any], kwargs: dict[str, typing.Any]) -> typing.Any:
        close_old_connections()  # as around a request: no stale database connection
        try:
            return normalize_json(func(*context(ctx, args), **kwargs))
        finally:
            close_old_connections()

    return run
