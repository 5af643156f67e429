"""
Django tasks, declared with Django's own ``@task``. Nothing here mentions fsjobs:
the TASKS setting chooses the backend.
"""

from __future__ import annotations

from django.conf import settings

try:
    from django.tasks import task
except ImportError:  # Python 3.11: the django-tasks backport has the same API
    from django_tasks import task


@task
def add(a: int, b: int) -> int:
    return a + b


@task
def record(label: str) -> str:
    """Note `label` in the example's log: the order of the lines is the run order."""
    with open(settings.EXAMPLE_LOG, "a") as log:
        log.write(label + "\n")
    return label


@task
async def greet(name: str) -> str:
    return f"hello {name}"


@task(takes_context=True)
def whoami(context, note: str) -> dict:  # type: ignore[no-untyped-def]
    return {"id": context.task_result.id, "attempt": context.attempt, "note": note}


@task(queue_name="reports")
def explode(order: int) -> None:
    raise ValueError(f"order {order} does not exist")
