"""
What a running task receives: the `Context` of its attempt.

A task gets it by declaring a parameter annotated ``fsjobs.Context``.
"""

from __future__ import annotations

import asyncio
import pathlib
import threading
import typing
from collections.abc import Callable, Coroutine

import attrs

ProgressSink = Callable[[float | None, str | None], Coroutine[typing.Any, typing.Any, None]]


@attrs.define(kw_only=True, eq=False)
class Context:
    """The attempt a task is running: its ids, files and progress channel."""

    job_id: str
    attempt: int
    max_attempts: int
    queue: str
    uploads: dict[str, pathlib.Path] = attrs.field(factory=dict)
    #: The results of the jobs this one depends on: by step name for the steps of its
    #: own workflow, by job id for any other (`Job.depends_on`). Empty for a job
    #: without dependencies. Read when the attempt starts: every parent has completed.
    parents: dict[str, typing.Any] = attrs.field(factory=dict)
    _output_dir: Callable[[], pathlib.Path] = attrs.field(alias="output_dir_factory")
    _progress: ProgressSink = attrs.field(alias="progress_sink")
    _cancel_event: threading.Event = attrs.field(factory=threading.Event, alias="cancel_event")
    _loop: asyncio.AbstractEventLoop | None = attrs.field(default=None, alias="loop")
    _output_path: pathlib.Path | None = attrs.field(default=None, init=False)

    @property
    def output_dir(self) -> pathlib.Path:
        """A directory for this attempt's output files (created on first use)."""
        if self._output_path is None:
            self._output_path = self._output_dir()
        return self._output_path

    @property
    def cancelled(self) -> bool:
        """True once the worker is stopping this attempt (sync tasks should poll it)."""
        return self._cancel_event.is_set()

    async def progress(self, percent: float | None, message: str | None = None) -> None:
        """Record progress (0-100) and an optional message in the job's journal."""
        if percent is not None and not 0 <= percent <= 100:
            raise ValueError(f"progress must be between 0 and 100, not {percent}")
        await self._progress(percent, message)

    def progress_sync(self, percent: float | None, message: str | None = None) -> None:
        """`progress` for a sync task, called from its thread (not from the event loop)."""
        if percent is not None and not 0 <= percent <= 100:
            raise ValueError(f"progress must be between 0 and 100, not {percent}")
        if self._loop is None:
            raise RuntimeError("this context has no event loop to report progress to")
        asyncio.run_coroutine_threadsafe(self._progress(percent, message), self._loop).result()


def is_context_hint(hint: typing.Any) -> bool:
    return hint is Context or hint in ("Context", "fsjobs.Context")
