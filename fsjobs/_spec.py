"""
A job's spec on disk: what the ``pushed`` record holds (everything about a job
but its upload bytes), written by `spec_of` and read back by `job_from_spec`.
Keys beyond `SPEC_KEYS` were written by a newer fsjobs.
"""

from __future__ import annotations

import datetime as dt
import typing
from collections.abc import Mapping

from ._clock import format_time, parse_time
from ._json import JSON
from .errors import InvalidJob
from .model import Backoff, Job, Limit, check_executor, converter


def spec_of(
    job: Job, queue: str, created_at: dt.datetime, workflow: dict[str, JSON] | None = None
) -> dict[str, JSON]:
    """
    The on-disk spec of a job (everything but the upload bytes). ``executor``,
    ``depends_on`` and ``workflow`` (``{"id", "name", "step"}`` of a workflow's
    step) are written only when set: a job without them reads as before (the
    root lists the feature of each that it holds).
    """
    spec: dict[str, JSON] = {
        "queue": queue,
        "created_at": format_time(created_at),
        "func": job.func,
        "kwargs": job.kwargs,
        "priority": job.priority,
        "scheduled_at": None if job.scheduled_at is None else format_time(job.scheduled_at),
        "max_attempts": job.max_attempts,
        "timeout": job.timeout,
        "unique_key": job.unique_key,
        "limits": [{"type": x.type.value, "value": x.value} for x in job.limits],
        "backoff": None if job.backoff is None else converter.unstructure(job.backoff),
        "uploads": list[JSON](sorted(job.uploads)),
    }
    if job.executor is not None:
        spec["executor"] = job.executor
    if job.depends_on:
        spec["depends_on"] = list[JSON](job.depends_on)
    if workflow is not None:
        spec["workflow"] = workflow
    return spec


#: Every key a spec written by this fsjobs may hold.
SPEC_KEYS = frozenset(
    {
        "queue",
        "created_at",
        "func",
        "kwargs",
        "priority",
        "scheduled_at",
        "max_attempts",
        "timeout",
        "unique_key",
        "limits",
        "backoff",
        "uploads",
        "executor",
        "depends_on",
        "workflow",
    }
)


def unknown_spec_keys(spec: Mapping[str, JSON]) -> set[str]:
    """Keys of an on-disk spec that this fsjobs does not know (a newer one may write them)."""
    return set(spec) - SPEC_KEYS


def job_from_spec(spec: Mapping[str, JSON]) -> Job:
    """Rebuild the Job of an on-disk spec; raises InvalidJob (or ValueError/TypeError)."""
    sched = spec.get("scheduled_at")
    backoff = spec.get("backoff")
    limits = spec.get("limits") or []
    if not isinstance(limits, list):
        raise InvalidJob("limits must be a list")
    depends_on = spec.get("depends_on") or []
    if not isinstance(depends_on, list):
        raise InvalidJob("depends_on must be a list")
    return Job(
        func=typing.cast(str, spec["func"]),
        kwargs=typing.cast(dict[str, JSON], spec.get("kwargs") or {}),
        priority=typing.cast(int, spec.get("priority", 0)),
        scheduled_at=None if sched is None else parse_time(typing.cast(str, sched)),
        max_attempts=typing.cast(int, spec.get("max_attempts", 1)),
        timeout=typing.cast("float | None", spec.get("timeout")),
        unique_key=typing.cast("str | None", spec.get("unique_key")),
        limits=[converter.structure(x, Limit) for x in limits],
        backoff=None if backoff is None else converter.structure(backoff, Backoff),
        executor=check_executor(spec.get("executor")),
        depends_on=typing.cast(list[str], depends_on),
    )
