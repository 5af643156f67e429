"""
`Workflow`: a named graph of jobs, pushed all together or not at all.

No I/O here: a workflow is checked (step names, ``after`` references, cycles,
unique keys) before anything is written; `Queue.push_workflow` pushes it.
"""

from __future__ import annotations

import typing
from collections.abc import Iterable

import attrs

from . import _names
from .errors import InvalidJob
from .model import Job

#: At most this many steps per workflow.
MAX_STEPS = 1000


@attrs.frozen
class Step:
    """One step of a `Workflow`: its name, its job, the steps it runs after, its queue."""

    name: str
    job: Job
    after: tuple[str, ...] = ()
    #: None: the queue of the `Queue` that pushes the workflow
    queue: str | None = None


class Workflow:
    """
    A named graph of jobs::

        wf = (fsjobs.Workflow("report")
              .add("fetch", fetch.job(url=u))
              .add("parse", parse.job(), after=["fetch"])
              .add("mail", mail.job(), after=["parse"]))
        wf_id = await queue.push_workflow(wf)

    `add` returns the workflow itself, so calls chain (and a loop may add steps
    one by one). A step runs once every step it is ``after`` has completed, and
    reads their results in ``ctx.parents`` (step name -> result). A step that
    fails, times out or is cancelled cancels the steps that depend on it.
    """

    def __init__(self, name: str) -> None:
        #: The workflow's name (not unique: each push gets its own id).
        self.name = _names.check_name("workflow", name)
        self._steps: dict[str, Step] = {}

    def __repr__(self) -> str:
        return f"<fsjobs.Workflow {self.name!r}: {len(self._steps)} steps>"

    def __len__(self) -> int:
        return len(self._steps)

    def add(
        self, step: str, job: Job, after: Iterable[str] = (), *, queue: str | None = None
    ) -> typing.Self:
        """
        Add a step named `step` (1-128 characters of ``[A-Za-z0-9._-]``) that runs
        `job` once every step named in `after` has completed, on `queue` (default:
        the pushing queue). `after` may name steps added later: `Queue.push_workflow`
        refuses unknown names and cycles. A job with a `unique_key` is refused
        (`InvalidJob`): a key could make one step another job.
        """
        _names.check_name("step", step)
        if not isinstance(job, Job):
            raise TypeError(f"a workflow step takes an fsjobs.Job, not {type(job).__name__}")
        if step in self._steps:
            raise InvalidJob(f"workflow {self.name!r} has a step named {step!r} already")
        if job.unique_key is not None:
            raise InvalidJob(f"step {step!r}: a workflow's steps cannot have a unique_key")
        if isinstance(after, str):
            raise InvalidJob(f"step {step!r}: after= takes a list of step names, not a string")
        names = tuple(dict.fromkeys(after))
        for name in names:
            _names.check_name("step", name)
        if queue is not None:
            _names.check_name("queue", queue)
        if len(self._steps) >= MAX_STEPS:
            raise InvalidJob(f"a workflow has at most {MAX_STEPS} steps")
        self._steps[step] = Step(step, job, names, queue)
        return self

    @property
    def steps(self) -> dict[str, Step]:
        """The steps, by name, in the order they were added."""
        return dict(self._steps)

    def order(self) -> list[Step]:
        """
        The steps in an order where each comes after the steps it depends on (and,
        among those free to go, in the order they were added). `InvalidJob` for an
        empty workflow, a name in ``after`` that is no step, or a cycle.
        """
        if not self._steps:
            raise InvalidJob(f"workflow {self.name!r} has no steps")
        for step in self._steps.values():
            unknown = [a for a in step.after if a not in self._steps]
            if unknown:
                raise InvalidJob(f"step {step.name!r} runs after unknown steps {unknown}")
            if step.name in step.after:
                raise InvalidJob(f"step {step.name!r} cannot run after itself")
        left = {name: set(step.after) for name, step in self._steps.items()}
        ordered: list[Step] = []
        while left:
            free = [name for name, after in left.items() if not after]
            if not free:
                raise InvalidJob(f"workflow {self.name!r} has a cycle among {sorted(left)}")
            for name in free:
                ordered.append(self._steps[name])
                del left[name]
            for after in left.values():
                after.difference_update(free)
        return ordered
