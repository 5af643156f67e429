"""
The task registry and the ``@queue.task`` decorator.

A worker runs only functions registered here, by name, from modules its
operator imported: a name read from disk is never imported, unless the worker
was given an ``allow_import`` prefix that covers it (whole dotted components:
``"myapp"`` covers ``myapp.jobs.send`` but not ``myapp2.send``). Then the
worker imports the module and runs the task registered under that name, or the
plain function found there.
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
from .model import Backoff, Job, Limit, check_executor, check_function_executor, check_limits_fit


class Pusher(typing.Protocol):
    """What a task needs of its queue: somewhere to push its jobs (a `fsjobs.Queue`)."""

    async def push(self, job: Job) -> str: ...


P = typing.ParamSpec("P")
R = typing.TypeVar("R")

#: Options a task passes on to the jobs built from it.
JOB_OPTIONS = (
    "priority",
    "max_attempts",
    "timeout",
    "unique_key",
    "limits",
    "backoff",
    "executor",
)

_registry: dict[str, Task[..., typing.Any]] = {}
#: plain functions a worker imported under an ``allow_import`` prefix, by name
_plain: dict[str, Task[..., typing.Any]] = {}


class Task(typing.Generic[P, R]):
    """A registered function. Calling it runs the function here and now."""

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        name: str,
        queue: Pusher | None,
        job_defaults: Mapping[str, typing.Any],
    ) -> None:
        self.fn = fn
        self.task_name = _names.check_task_name(name)
        self.queue = queue
        self.job_defaults: dict[str, typing.Any] = dict(job_defaults)
        self.timeout: float | None = self.job_defaults.get("timeout")
        self.executor = check_executor(self.job_defaults.get("executor"))
        self.is_async = inspect.iscoroutinefunction(fn)
        self.signature = inspect.signature(fn)
        self.context_param = _find_context_param(fn)
        functools.update_wrapper(self, fn)
        # Refuse bad defaults now, not at push.
        defaults = Job(func=self.task_name, **self.job_defaults)
        self.check_job(defaults)
        if self.executor == "process" and "<locals>" in fn.__qualname__:
            raise InvalidJob(
                f"task {self.task_name} runs under executor='process', whose child processes "
                "import it: define it at the top level of its module"
            )

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
        if self.queue is None:
            raise InvalidJob(f"{self.task_name} is a plain function: push Job.from_func(fn)")
        return await self.queue.push(self.job(**kwargs))

    def executor_for(self, job: Job) -> str | None:
        """The job's executor, else the task's; for a sync task None means the worker's default."""
        executor = job.executor or self.executor
        if executor is None and self.is_async:
            return "async"
        return executor

    def check_job(self, job: Job) -> None:
        """
        Raise InvalidJob if the job's executor cannot run this function, or it
        has a MEMORY limit that executor cannot enforce.
        """
        executor = self.executor_for(job)
        check_function_executor(self.task_name, self.is_async, executor)
        check_limits_fit(executor, job.limits)

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


def covered(name: str, allow_import: typing.Iterable[str]) -> bool:
    """
    Whether an ``allow_import`` prefix covers `name`, by whole dotted components:
    ``"pkg"`` and ``"pkg."`` cover ``pkg.mod.fn``, not ``pkgx.fn``; ``""`` covers nothing.
    """
    for prefix in allow_import:
        base = prefix.rstrip(".")
        if base and (name == base or name.startswith(base + ".")):
            return True
    return False


def lookup(name: str, allow_import: typing.Sequence[str] = ()) -> Task[..., typing.Any]:
    """
    The registered task called `name`; or, when an `allow_import` prefix covers
    the name, the task or plain function its module defines (imported now).
    UnknownTask otherwise, and nothing is imported.
    """
    task = _registry.get(name) or _plain.get(name)
    if task is None and covered(name, allow_import):
        task = _import(name)
    if task is None:
        raise UnknownTask(
            f"no task named {name!r} is registered in this worker: import the module that "
            "defines it (fsjobs worker myapp.tasks), give the worker an allow_import prefix "
            "that covers it, or route the job to a queue whose workers know it"
        )
    return task


def _import(name: str) -> Task[..., typing.Any] | None:
    """Import the longest module path that `name` starts with; find the task or function."""
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module = ".".join(parts[:cut])
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name is not None and (module == exc.name or module.startswith(exc.name + ".")):
                continue  # no such module: try a shorter path (a class attribute, say)
            raise UnknownTask(f"importing {module} for task {name!r} failed: {exc}") from exc
        except Exception as exc:
            raise UnknownTask(f"importing {module} for task {name!r} failed: {exc}") from exc
        if name in _registry:
            return _registry[name]
        try:
            found = function_at(module, ".".join(parts[cut:]))
        except AttributeError:
            return None
        if isinstance(found, Task):
            return found
        if not callable(found):
            return None  # type: ignore[unreachable]
        task = Task(found, name=name, queue=None, job_defaults={})
        _plain[name] = task
        return task
    return None


def function_at(module: str, qualname: str) -> Callable[..., typing.Any]:
    """
    The object at `qualname` in `module` (imported if needed): how a child process
    of the process executor finds the function of a task its worker knows.
    AttributeError if it is not there (say, a function defined inside another).
    """
    if "<locals>" in qualname:
        raise AttributeError(f"{module}.{qualname} is defined inside a function")
    found: typing.Any = importlib.import_module(module)
    for attr in qualname.split("."):
        found = getattr(found, attr)
    return typing.cast(Callable[..., typing.Any], found)


def registered_modules() -> list[str]:
    """The modules that define the registered tasks (what process executor children import)."""
    return sorted({getattr(t.fn, "__module__", None) or "__main__" for t in _registry.values()})


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
