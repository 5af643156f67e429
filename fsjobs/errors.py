"""
The one exception tree of fsjobs.

Every error derives from `FsJobsError` and, where a Python user would catch a
built-in, from that built-in too::

    FsJobsError
    ├── InvalidJob (ValueError)          a job, name or option was refused; nothing was written
    ├── InvalidSettings (ValueError)     a queue setting or schedule was refused, or is unreadable
    ├── UnknownTask (LookupError)        no task of that name is registered in this process
    ├── JobNotFound (LookupError)        no job with that id under the root
    ├── JobNotDone                       result() of a job that is not final yet
    ├── JobFailed                        the job ended failed or timed_out (carries the state)
    ├── JobCancelled                     the job ended cancelled (carries the state)
    ├── WaitTimeout (TimeoutError)       wait()/watch() gave up before the job ended
    ├── UniqueKeyBusy                    another push of the same unique key is still staging
    ├── UniqueKeyConflict                retry(): the key now belongs to another unfinished job
    ├── PushError                        push_many() failed part-way (carries published_ids)
    ├── DependencyFailed                 a job this one depends on did not complete
    ├── ResultNotSerializable (TypeError)  a task returned something that is not JSON
    ├── ChildDied                        the process executor's child died running the task
    ├── StoreError (OSError)             the directory could not be used as asked
    │   ├── StoreFull                    below the free-space reserve, or ENOSPC
    │   ├── PublishFailed                an attempt ran, but its outcome could not be recorded
    │   └── FormatError                  the root holds an unknown or damaged format
    ├── CorruptRecord (ValueError)       a journal line failed its checksum or schema
    │   └── UnknownRecordType            a valid record of a type this fsjobs does not know
    └── Retry                            raised by a task to ask for another attempt

So ``except ValueError`` catches `InvalidJob`, and ``except TimeoutError`` catches
`WaitTimeout`. Errors a worker records as a job's error (`UnknownTask`,
`ResultNotSerializable`) reach you in `JobState.error` and `JobFailed`, with
``ErrorInfo.type`` such as ``"fsjobs.errors.UnknownTask"``.

The class docstring is the default message, so ``raise UniqueKeyBusy()`` still says
something useful (procrastinate's habit); keep each one a single sentence.
"""

from __future__ import annotations

import traceback

from .states import ErrorInfo, JobState


class FsJobsError(Exception):
    """An fsjobs operation failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class InvalidJob(FsJobsError, ValueError):
    """The job or one of its options is invalid; nothing was written."""


class InvalidSettings(FsJobsError, ValueError):
    """A queue setting (concurrency, rate) or a schedule is invalid; nothing was written."""


class UnknownTask(FsJobsError, LookupError):
    """No task of this name is registered; import the module that defines it."""


class JobNotFound(FsJobsError, LookupError):
    """No job with this id exists under the queue root."""

    def __init__(self, job_id: str, message: str | None = None) -> None:
        #: The id that was looked for.
        self.job_id = job_id
        super().__init__(message or f"no job {job_id!r} under this root")


class _StateError(FsJobsError):
    def __init__(self, state: JobState, message: str | None = None) -> None:
        #: The job's `JobState` when the error was raised.
        self.state = state
        super().__init__(message or f"job {state.id} is {state.status.value}")


class JobNotDone(_StateError):
    """The job has not reached a final state yet; wait() for it."""


class JobFailed(_StateError):
    """The job ended failed or timed out; `state.error` says why."""

    def __init__(self, state: JobState, message: str | None = None) -> None:
        if message is None and state.error is not None:
            message = (
                f"job {state.id} {state.status.value}: {state.error.type}: {state.error.message}"
            )
        super().__init__(state, message)


class JobCancelled(_StateError):
    """The job was cancelled."""


class WaitTimeout(FsJobsError, TimeoutError):
    """The job did not reach a final state within the timeout."""


class UniqueKeyBusy(FsJobsError):
    """Another push with the same unique key is still in progress; try again."""


class UniqueKeyConflict(FsJobsError):
    """The job's unique key belongs to another unfinished job; the job was left as it was."""


class PushError(FsJobsError):
    """push_many() stopped part-way; `published_ids` were pushed, the rest were not."""

    def __init__(self, message: str, published_ids: list[str]) -> None:
        #: The ids of the jobs that were pushed (and must not be pushed again); the
        #: original error is the `PushError`'s ``__cause__``.
        self.published_ids = published_ids
        super().__init__(message)


class DependencyFailed(FsJobsError):
    """A job this one depends on did not complete: this one was cancelled, or not retried."""


class ResultNotSerializable(FsJobsError, TypeError):
    """The task returned a value that cannot be stored as JSON."""


class ChildDied(FsJobsError):
    """The child process running the task died (by a signal, or exiting) before it answered."""


class StoreError(FsJobsError, OSError):
    """The queue directory could not be used as asked."""


class StoreFull(StoreError):
    """The filesystem is below the free-space reserve; free space or lower the reserve."""


class PublishFailed(StoreError):
    """An attempt ran, but its outcome could not be recorded; the attempt still counts."""


class FormatError(StoreError):
    """The root holds a format this version of fsjobs does not understand."""


class CorruptRecord(FsJobsError, ValueError):
    """A journal record failed its checksum or schema."""


class UnknownRecordType(CorruptRecord):
    """A record with a valid checksum and a type this version of fsjobs does not know."""


class Retry(FsJobsError):
    """Raised by a task to ask for another attempt, after `delay` seconds (or the backoff)."""

    def __init__(self, delay: float | None = None, message: str | None = None) -> None:
        #: Seconds before the next attempt, or None for the job's backoff. The retry
        #: uses an attempt; when none remains, the job fails with this error.
        self.delay = delay
        super().__init__(message or "the task asked to be retried")


def error_info(exc: BaseException) -> ErrorInfo:
    """How an exception is recorded as a job's error: its qualified type, message and traceback."""
    kind = type(exc)
    name = (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )
    return ErrorInfo(name, str(exc), "".join(traceback.format_exception(exc)))
