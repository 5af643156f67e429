"""
What a running task receives: the `Context` of its attempt.

A task gets it by declaring a parameter annotated ``fsjobs.Context``.
"""

from __future__ import annotations

import pathlib
import threading
import typing
from collections.abc import Callable, Generator

import attrs

#: Records a progress report at once (it must not block on the disk).
ProgressSink = Callable[[float | None, str | None], None]


class Done:
    """An awaitable that has already finished: what `Context.progress` returns."""

    __slots__ = ()

    def __await__(self) -> Generator[None, None, None]:
        yield from ()

    def __repr__(self) -> str:
        return "<fsjobs progress recorded>"


DONE: typing.Final = Done()


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
    _output_path: pathlib.Path | None = attrs.field(default=None, init=False)

    @property
    def output_dir(self) -> pathlib.Path:
        """A directory for this attempt's output files (created on first use)."""
        if self._output_path is None:
            self._output_path = self._output_dir()
        return self._output_path

    @property
    def cancelled(self) -> bool:
        """True once the worker is stopping this attempt (sync tasks in threads should poll it)."""
        return self._cancel_event.is_set()

    def progress(self, percent: float | None, message: str | None = None) -> Done:
        """
        Record progress (0-100) and an optional message in the job's journal. The
        report is taken at once, from any executor; the result is an awaitable
        that has already finished, so ``await ctx.progress(50)`` in an async task
        and a plain ``ctx.progress(50)`` in a sync one both work.
        """
        if percent is not None and not 0 <= percent <= 100:
            raise ValueError(f"progress must be between 0 and 100, not {percent}")
        self._progress(percent, message)
        return DONE

    def progress_sync(self, percent: float | None, message: str | None = None) -> None:
        """The same as `progress`, for code written when sync tasks could not call it plainly."""
        self.progress(percent, message)


def is_context_hint(hint: typing.Any) -> bool:
    return hint is Context or hint in ("Context", "fsjobs.Context")
