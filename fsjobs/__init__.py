"""
fsjobs: background jobs for asyncio with no server.

The queue is a directory of plain files; any number of worker processes, on
one host or on many hosts sharing the directory over NFS, claim and run jobs.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .context import Context as Context
from .errors import ChildDied as ChildDied
from .errors import CorruptRecord as CorruptRecord
from .errors import DependencyFailed as DependencyFailed
from .errors import FormatError as FormatError
from .errors import FsJobsError as FsJobsError
from .errors import InvalidJob as InvalidJob
from .errors import InvalidSettings as InvalidSettings
from .errors import JobCancelled as JobCancelled
from .errors import JobFailed as JobFailed
from .errors import JobNotDone as JobNotDone
from .errors import JobNotFound as JobNotFound
from .errors import PublishFailed as PublishFailed
from .errors import PushError as PushError
from .errors import ResultNotSerializable as ResultNotSerializable
from .errors import Retry as Retry
from .errors import StoreError as StoreError
from .errors import StoreFull as StoreFull
from .errors import UniqueKeyBusy as UniqueKeyBusy
from .errors import UniqueKeyConflict as UniqueKeyConflict
from .errors import UnknownTask as UnknownTask
from .errors import WaitTimeout as WaitTimeout
from .model import Backoff as Backoff
from .model import Job as Job
from .model import Limit as Limit
from .queue import Queue as Queue
from .states import ErrorInfo as ErrorInfo
from .states import Event as Event
from .states import JobPage as JobPage
from .states import JobState as JobState
from .states import JobStatus as JobStatus
from .states import QueueInfo as QueueInfo
from .states import WorkflowState as WorkflowState
from .states import WorkflowStatus as WorkflowStatus
from .sync_queue import SyncQueue as SyncQueue
from .tasks import Task as Task
from .worker import Worker as Worker
from .workflow import Workflow as Workflow

try:
    __version__ = version("fsjobs")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "Backoff",
    "ChildDied",
    "Context",
    "CorruptRecord",
    "DependencyFailed",
    "ErrorInfo",
    "Event",
    "FormatError",
    "FsJobsError",
    "InvalidJob",
    "InvalidSettings",
    "Job",
    "JobCancelled",
    "JobFailed",
    "JobNotDone",
    "JobNotFound",
    "JobPage",
    "JobState",
    "JobStatus",
    "Limit",
    "PublishFailed",
    "PushError",
    "Queue",
    "QueueInfo",
    "ResultNotSerializable",
    "Retry",
    "StoreError",
    "StoreFull",
    "SyncQueue",
    "Task",
    "UniqueKeyBusy",
    "UniqueKeyConflict",
    "UnknownTask",
    "WaitTimeout",
    "Worker",
    "Workflow",
    "WorkflowState",
    "WorkflowStatus",
    "__version__",
]
