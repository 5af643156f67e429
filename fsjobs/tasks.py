"""
The task registry and the ``@queue.task`` decorator.

A worker runs only functions registered here, by name, from modules its
operator imported: a name read from disk is never imported (unless the worker
was given an ``allow_import`` prefix that matches it).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import typing
from collections.abc import Callable, Mapping

from . import _names
from ._json import JSON
from .context import is_context_hint
from .errors import InvalidJob, UnknownTask
from .model import Backoff, Job, Limit


class Pusher(typing.Protocol):
    """What a task needs of its queue: somewhere to push its jobs (a `fsjobs.Queue`)."""

    async def push(self, job: Job) -> str: ...


P = typing.ParamSpec("P")
R = typing.TypeVar("R")

#: Options a task passes on to the jobs built from it.
JOB_OPTIONS = ("priority", "max_attempts", "timeout", "unique_key", "limits", "backoff")

_registry: dict[str, Task[..., typing.Any]] = {}


class Task(typing.Generic[P, R]):
    """A registered function. Calling it runs the function here and now."""

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        name: str,
        queue: Pusher,
        job_defaults: Mapping[str, typing.Any],
    ) -> None:
        self.fn = fn
        self.task_name = _names.check_task_name(name)
        self.queue = queue
        self.job_defaults: dict[str, typing.Any] = dict(job_defaults)
        self.timeout: float | None = self.job_defaults.get("timeout")
        self.is_async = inspect.iscoroutinefunction(fn)
        self.signature = inspect.signature(fn)
        self.context_param = _find_context_param(fn)
        functools.update_wrapper(self, fn)
        Job(func=self.task_name, **self.job_defaults)  # refuse bad defaults now, not at push

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<fsjobs.Task {self.task_name}>"

    def job(self, **kwargs: JSON) -> Job:
        """
        A job for this task, with the task's options as defaults. Missing
        arguments are checked at push, when the job's uploads are known.
        """
        self.check_kwargs(kwargs, uploads=(), complete=False)
        return Job(func=self.task_name, kwargs=kwargs, **self.job_defaults)

    async def enqueue(self, **kwargs: JSON) -> str:
        """Push a job for this task to its queue; return the job id."""
        return await self.queue.push(self.job(**kwargs))

    def check_kwargs(
        self, kwargs: Mapping[str, object], uploads: typing.Iterable[str], *, complete: bool = True
    ) -> None:
        """
        Raise TypeError unless `kwargs` fit the signature; if `complete`, also unless
        they, the uploads and the context fill every required parameter.
        """
        params = self.signature.parameters
        takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
        names = {
            n
            for n, p in params.items()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and n != self.context_param
        }
        unknown = sorted(set(kwargs) - names) if not takes_any else []
        if unknown:
            raise TypeError(f"{self.task_name}() got unexpected arguments {unknown}")
        if not complete:
            return
        given = set(kwargs) | set(uploads)
        missing = sorted(
            n for n in names if params[n].default is inspect.Parameter.empty and n not in given
        )
        if missing:
            raise TypeError(f"{self.task_name}() is missing arguments {missing}")


def _find_context_param(fn: Callable[..., typing.Any]) -> str | None:
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # unresolvable annotations: fall back to the raw ones
        hints = dict(getattr(fn, "__annotations__", {}))
    return next((name for name, hint in hints.items() if is_context_hint(hint)), None)


def register(task: Task[..., typing.Any]) -> None:
    old = _registry.get(task.task_name)
    if old is not None and old.fn is not task.fn:
        raise InvalidJob(
            f"task name {task.task_name!r} is already registered for {old.fn!r}; "
            "give one of them another name="
        )
    _registry[task.task_name] = task


def lookup(name: str, allow_import: typing.Sequence[str] = ()) -> Task[..., typing.Any]:
    """The registered task called `name`; UnknownTask if there is none."""
    task = _registry.get(name)
    if task is None and any(name.startswith(prefix) for prefix in allow_import):
        module = name.rpartition(".")[0]
        while module and task is None:
            try:
                importlib.import_module(module)
            except ImportError:
                module = module.rpartition(".")[0]
                continue
            task = _registry.get(name)
            break
    if task is None:
        raise UnknownTask(
            f"no task named {name!r} is registered in this worker: import the module that "
            "defines it (fsjobs worker myapp.tasks), or route the job to a queue whose "
            "workers know it"
        )
    return task


def find(name: str) -> Task[..., typing.Any] | None:
    return _registry.get(name)


def registered() -> list[Task[..., typing.Any]]:
    """Every task registered in this process."""
    return list(_registry.values())


def make_task_decorator(
    queue: Pusher,
    *,
    name: str | None,
    options: dict[str, typing.Any],
) -> Callable[[Callable[P, R]], Task[P, R]]:
    unknown = sorted(set(options) - set(JOB_OPTIONS))
    if unknown:
        raise TypeError(f"unknown task options {unknown}; expected some of {list(JOB_OPTIONS)}")
    if "limits" in options:
        options["limits"] = tuple(typing.cast(typing.Iterable[Limit], options["limits"]))
    if "backoff" in options and not isinstance(options["backoff"], Backoff | None):
        raise InvalidJob("backoff must be an fsjobs.Backoff")

    def decorate(fn: Callable[P, R]) -> Task[P, R]:
        task_name = name
        if task_name is None:
            module = getattr(fn, "__module__", "__main__")
            if module == "__main__":
                raise InvalidJob(
                    f"task {fn.__qualname__} is defined in __main__: other processes cannot "
                    "import it, so give it a name: @queue.task(name='myapp.task')"
                )
            task_name = f"{module}.{fn.__qualname__}"
        task = Task(fn, name=task_name, queue=queue, job_defaults=options)
        register(task)
        return task

    return decorate
