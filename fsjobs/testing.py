"""
Helpers for testing code that uses fsjobs, on the real store, with no sleeps
and no extra processes.

``await drain(queue)`` runs every due job of the queue in this process and
returns how many attempts ran, in the spirit of Oban's ``drain_queue`` and
procrastinate's in-memory testing: push in the test, drain, assert on results.
``FakeClock`` is a clock you move by hand (``Queue(root, clock=clock)``), so
scheduled jobs and backoffs can be tested without waiting for them.
``record_pushes()`` lists what the code under test pushed (``assert_pushed``),
and ``eager()`` runs each pushed job at once, inside the push.

This module is also the pytest plugin ``fsjobs`` (entry point group ``pytest11``):
installing fsjobs gives every test suite the fixtures ``fsjobs_root``,
``fsjobs_queue``, ``fsjobs_sync_queue``, ``fsjobs_pushed`` and ``fsjobs_eager``
(see `fsjobs._pytest_plugin`; ``-p no:fsjobs`` turns them off).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import threading
import typing
from collections.abc import Callable, Iterable, Iterator, Sequence

import attrs

from ._json import JSON
from .model import Job
from .queue import Queue
from .sync_queue import SyncQueue
from .worker import Worker

#: pytest reads this when it loads the plugin: the fixtures live in their own
#: module, so that importing fsjobs.testing never needs pytest.
pytest_plugins = ["fsjobs._pytest_plugin"]


class FakeClock:
    """A wall clock and a monotonic clock that move only when told to."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        if start is not None and start.tzinfo is None:
            raise ValueError("FakeClock needs a timezone-aware start time")
        self._now = start or dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
        self._mono = 0.0
        self._lock = threading.Lock()

    def now(self) -> dt.datetime:
        with self._lock:
            return self._now

    def monotonic(self) -> float:
        with self._lock:
            return self._mono

    def advance(self, seconds: float) -> None:
        """Move both clocks forward by `seconds`."""
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        with self._lock:
            self._now += dt.timedelta(seconds=seconds)
            self._mono += seconds


async def drain(
    queue: Queue,
    *,
    queues: Sequence[str] | None = None,
    concurrency: int = 1,
    wait_scheduled: bool = False,
    max_wait: float | None = None,
) -> int:
    """
    Run the due jobs of `queue` (or `queues`) in this process; return the attempts
    run. Installs no signal handler (a Worker's default).
    """
    worker = Worker(queue, queues, concurrency)
    return await worker.run_until_empty(wait_scheduled=wait_scheduled, max_wait=max_wait)


# -- what was pushed ---------------------------------------------------------------------

#: A task as the assertions take it: a `Task`, a plain function, or a task name.
TaskRef = Callable[..., typing.Any] | str


def task_name(task: TaskRef) -> str:
    """The name jobs of `task` carry in `Job.func`."""
    if isinstance(task, str):
        return task
    name = getattr(task, "task_name", None)
    if isinstance(name, str):
        return name
    return f"{task.__module__}.{task.__qualname__}"


@attrs.frozen
class PushedJob:
    """One job pushed while a `PushLog` was recording, as the pusher gave it."""

    #: The job's id (for a unique key already taken: the id of the job that holds it).
    id: str
    #: The job as pushed, with every option.
    job: Job
    #: The queue it was pushed to.
    queue: str
    #: The root directory of that queue.
    root: str

    @property
    def func(self) -> str:
        return self.job.func

    @property
    def kwargs(self) -> dict[str, JSON]:
        return dict(self.job.kwargs)


class PushLog(Sequence[PushedJob]):
    """
    The jobs pushed through any `Queue` or `SyncQueue` of the process while it
    records, in push order. ``fsjobs_pushed`` is one; ``record_pushes()`` makes one.
    """

    def __init__(self) -> None:
        self._jobs: list[PushedJob] = []
        self._lock = threading.Lock()

    @typing.overload
    def __getitem__(self, index: int) -> PushedJob: ...
    @typing.overload
    def __getitem__(self, index: slice) -> Sequence[PushedJob]: ...
    def __getitem__(self, index: int | slice) -> PushedJob | Sequence[PushedJob]:
        with self._lock:
            return self._jobs[index]

    def __len__(self) -> int:
        with self._lock:
            return len(self._jobs)

    def __repr__(self) -> str:
        return f"<fsjobs.testing.PushLog of {len(self)} jobs>"

    def add(self, pushed: Iterable[PushedJob]) -> None:
        with self._lock:
            self._jobs.extend(pushed)

    def clear(self) -> None:
        """Forget what was pushed so far."""
        with self._lock:
            self._jobs.clear()

    def of(self, task: TaskRef, /, **kwargs: JSON) -> list[PushedJob]:
        """The jobs of `task` whose kwargs include `kwargs` (each key with an equal value)."""
        name = task_name(task)
        return [
            p
            for p in list(self)
            if p.func == name
            and all(k in p.job.kwargs and p.job.kwargs[k] == v for k, v in kwargs.items())
        ]

    def assert_pushed(self, task: TaskRef, /, **kwargs: JSON) -> PushedJob:
        """
        Assert that a job of `task` whose kwargs include `kwargs` was pushed, and
        return the last such job (to check its options: ``.job.priority``, ``.queue``...).
        """
        found = self.of(task, **kwargs)
        if not found:
            raise AssertionError(
                f"no job of {task_name(task)} with kwargs including {kwargs!r} was pushed; "
                + self._pushed_so_far()
            )
        return found[-1]

    def assert_not_pushed(self, task: TaskRef, /, **kwargs: JSON) -> None:
        """Assert that no job of `task` whose kwargs include `kwargs` was pushed."""
        found = self.of(task, **kwargs)
        if found:
            raise AssertionError(
                f"{len(found)} job(s) of {task_name(task)} with kwargs including {kwargs!r} "
                f"were pushed: {[p.kwargs for p in found]!r}"
            )

    def _pushed_so_far(self) -> str:
        jobs = list(self)
        if not jobs:
            return "nothing was pushed"
        lines = [f"  {p.func}({p.kwargs!r}) to queue {p.queue!r}" for p in jobs[-20:]]
        more = f" (the last 20 of {len(jobs)})" if len(jobs) > 20 else ""
        return "pushed" + more + ":\n" + "\n".join(lines)


# -- recording and eager mode: one wrapper around push_many -------------------------------------


class _Modes:
    """What the wrapped ``push_many`` does besides pushing: record, run at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.logs: list[PushLog] = []
        self.eager = 0
        self.users = 0
        self.originals: dict[type, typing.Any] = {}

    def note(self, root: str, queue: str, jobs: list[Job], ids: list[str]) -> None:
        with self.lock:
            logs = list(self.logs)
        for log in logs:
            log.add(PushedJob(i, j, queue, root) for i, j in zip(ids, jobs, strict=True))

    @contextlib.contextmanager
    def using(self, log: PushLog | None = None, eager: bool = False) -> Iterator[None]:
        with self.lock:
            if self.users == 0:
                self._wrap()
            self.users += 1
            if log is not None:
                self.logs.append(log)
            self.eager += eager
        try:
            yield
        finally:
            with self.lock:
                if log is not None:
                    self.logs.remove(log)
                self.eager -= eager
                self.users -= 1
                if self.users == 0:
                    self._unwrap()

    def _wrap(self) -> None:
        queue_push = Queue.push_many
        sync_push = SyncQueue.push_many
        self.originals = {Queue: queue_push, SyncQueue: sync_push}

        async def push_many(queue: Queue, jobs: Iterable[Job]) -> list[str]:
            items = list(jobs)
            ids = await queue_push(queue, items)
            self.note(queue.root, queue.name, items, ids)
            if self.eager:
                await drain(queue, queues=[queue.name])
            return ids

        def sync_push_many(queue: SyncQueue, jobs: Iterable[Job]) -> list[str]:
            items = list(jobs)
            ids = sync_push(queue, items)
            self.note(queue.root, queue.name, items, ids)
            if self.eager:
                _run_inline(queue)
            return ids

        Queue.push_many = push_many  # type: ignore[method-assign, assignment]
        SyncQueue.push_many = sync_push_many  # type: ignore[method-assign, assignment]

    def _unwrap(self) -> None:
        Queue.push_many = self.originals[Queue]  # type: ignore[method-assign]
        SyncQueue.push_many = self.originals[SyncQueue]  # type: ignore[method-assign]


def _run_inline(sync: SyncQueue) -> None:
    """Run the due jobs of a SyncQueue's queue now, on a loop of a thread of its own."""
    store = sync.store
    queue = Queue(
        sync.root,
        sync.name,
        clock=sync.clock,
        staleness=store.staleness,
        reserve_bytes=store.reserve_bytes,
        durable=store.durable,
    )
    try:
        # A thread of its own: the caller may be a thread that already runs a loop.
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="fsjobs-eager") as pool:
            pool.submit(asyncio.run, drain(queue, queues=[queue.name])).result()
    finally:
        queue.close()


_modes = _Modes()


@contextlib.contextmanager
def record_pushes() -> Iterator[PushLog]:
    """
    Record every job pushed through any `Queue` or `SyncQueue` of this process
    until the block ends; the jobs are pushed as usual::

        with fsjobs.testing.record_pushes() as pushed:
            await signup("ann@example.com")
        pushed.assert_pushed(send_welcome, to="ann@example.com")
    """
    log = PushLog()
    with _modes.using(log):
        yield log


@contextlib.contextmanager
def eager() -> Iterator[None]:
    """
    Until the block ends, every push through a `Queue` or `SyncQueue` of this
    process also runs the due jobs of its queue before it returns (a worker in
    this process, on the real store: the same code path as production), so a
    job's result or failure is there at once through ``get``/``result``/``wait``.
    Like huey's immediate mode, a job scheduled in the future (or waiting out a
    retry's backoff) is not run early: use `FakeClock` and `drain` for those.
    """
    with _modes.using(eager=True):
        yield
