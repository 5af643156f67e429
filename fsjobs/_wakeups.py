"""
Wake-ups within one process, and the threads that run store operations.

A push wakes the idle workers of its root in the same process at once, and a
finished job wakes whoever waits for it; across processes, workers and waiters
poll (helped by inotify on a local filesystem). Everything here is thread-safe
and loop-aware: a worker may run on another event loop or thread than the
pusher.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import typing
import weakref

_io_pool: concurrent.futures.ThreadPoolExecutor | None = None
_io_pool_lock = threading.Lock()
#: how many store operations of one process may run at once
IO_THREADS = 16


def io_pool() -> concurrent.futures.ThreadPoolExecutor:
    """The threads that run store operations (separate from the threads of sync tasks)."""
    global _io_pool
    with _io_pool_lock:
        if _io_pool is None:
            _io_pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=IO_THREADS, thread_name_prefix="fsjobs-io"
            )
        return _io_pool


class Wakeable(typing.Protocol):
    """Something a push or a finished job can wake, from any thread."""

    def wake(self) -> None: ...


class Waker:
    """An asyncio.Event that any thread may set."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.event = asyncio.Event()

    def wake(self) -> None:
        try:
            self.loop.call_soon_threadsafe(self.event.set)
        except RuntimeError:
            pass  # the loop is closed: nobody is waiting any more

    async def wait(self, timeout: float | None) -> bool:
        """Wait until woken or `timeout` passes; True if woken (the wake-up is consumed)."""
        try:
            async with asyncio.timeout(timeout):
                await self.event.wait()
        except TimeoutError:
            return False
        self.event.clear()
        return True


class ThreadWaker:
    """A waker for code that blocks its thread (`SyncQueue`): a threading.Event."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def wake(self) -> None:
        self.event.set()

    def wait(self, timeout: float | None) -> bool:
        """Block until woken or `timeout` passes; True if woken (the wake-up is consumed)."""
        woken = self.event.wait(timeout)
        self.event.clear()
        return woken


class Signals:
    """In-process wake-ups, keyed by root."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pushed: dict[str, weakref.WeakSet[Wakeable]] = {}
        self._finished: dict[tuple[str, str], set[Wakeable]] = {}

    def on_push(self, root: str, waker: Wakeable) -> None:
        """Wake `waker` whenever this process pushes a job (or makes one due again) under `root`."""
        with self._lock:
            self._pushed.setdefault(root, weakref.WeakSet()).add(waker)

    def pushed(self, root: str) -> None:
        with self._lock:
            wakers = list(self._pushed.get(root, ()))
        for w in wakers:
            w.wake()

    def wait_finish(self, root: str, job_id: str, waker: Wakeable) -> None:
        """Wake `waker` when a worker of this process ends an attempt of `job_id`."""
        with self._lock:
            self._finished.setdefault((root, job_id), set()).add(waker)

    def stop_waiting(self, root: str, job_id: str, waker: Wakeable) -> None:
        with self._lock:
            waiters = self._finished.get((root, job_id))
            if waiters is not None:
                waiters.discard(waker)
                if not waiters:
                    del self._finished[(root, job_id)]

    def finished(self, root: str, job_id: str) -> None:
        with self._lock:
            wakers = list(self._finished.get((root, job_id), ()))
        for w in wakers:
            w.wake()


#: The wake-ups of this process.
signals = Signals()
