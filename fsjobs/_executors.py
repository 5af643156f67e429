"""
The process executor: a worker's pool of reusable child processes.

Children start by forkserver (a clean process, not a copy of the worker with its
threads and descriptors), import the worker's task modules, and run one task at
a time (see `_child`). The pool starts a child when a job needs one and none is
idle, keeps it for the next job, and replaces one that died or broke a limit.
It never holds more children than the worker's concurrency: a child is busy
with one of the worker's running attempts or idle, and an attempt that kills
its child waits until the child is gone before it ends.

The worker talks to a busy child through its connection, from threads of the
pool's own (a blocking ``recv`` per message), so the event loop never waits on
a child. Its heartbeat thread calls `ProcessPool.beat` after every beat, which
tells each child the heartbeat's age through the child's ``alive`` pipe.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import multiprocessing
import os
import pathlib
import signal
import threading
import typing
from collections.abc import Awaitable, Callable
from multiprocessing import reduction
from multiprocessing.connection import Connection

from . import _child, tasks
from ._logs import LogFile
from ._wakeups import io_pool
from .errors import ChildDied

logger = logging.getLogger("fsjobs.worker")

#: how long a child may take to start (import the task modules) before the attempt fails
START_TIMEOUT = 120.0


class Child:
    """One child process: its process, its connection, the write end of its alive pipe."""

    def __init__(
        self, process: multiprocessing.process.BaseProcess, conn: Connection, alive: Connection
    ) -> None:
        self.process = process
        self.conn = conn
        self.alive = alive
        self.pid = typing.cast(int, process.pid)
        self._gone = False

    def __repr__(self) -> str:
        return f"<fsjobs child {self.pid}>"

    def start_task(
        self, request: _child.Request, open_log: Callable[[], int]
    ) -> tuple[int, tuple[typing.Any, ...]]:
        """
        In one hop to a thread: open the attempt's log (the store does), send the
        request and the log's descriptor, and wait for the child's first message.
        Returns the descriptor (-1 if the log could not be made) and that message.
        """
        try:
            log_fd = open_log()
        except OSError as exc:  # the task still runs; its output goes nowhere
            logger.warning("job %s: its log could not be created: %s", request.job_id, exc)
            log_fd = -1
        try:
            self.conn.send(("run", request, log_fd >= 0))
            if log_fd >= 0:
                reduction.send_handle(self.conn, log_fd, self.pid)
            message: tuple[typing.Any, ...] = self.conn.recv()
        except BaseException:
            if log_fd >= 0:
                LogFile(fd=log_fd).close()  # keeps its tail
            raise
        return log_fd, message

    def beat(self, age: float) -> None:
        if self._gone:
            return
        try:
            os.write(self.alive.fileno(), _child.BEAT.pack(age))
        except (OSError, ValueError):
            pass  # full (the child is busy reading nothing?) or gone: the next beat says more

    def kill(self) -> None:
        """Kill the child if it still runs, wait until it is gone, close its channels."""
        if self.process.exitcode is None:
            self.process.kill()
        self.process.join()
        self.close()

    def close(self) -> None:
        if not self._gone:
            self._gone = True
            self.conn.close()
            self.alive.close()

    def death(self) -> str:
        """Why the (reaped) child is gone, in words: the signal that killed it, or its status."""
        code = self.process.exitcode
        if code is not None and code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"the child process {self.pid} running the task was killed by {name}"
        return f"the child process {self.pid} running the task exited with status {code}"


class ProcessPool:
    """Up to `size` reusable children; `run` runs one request in one of them."""

    def __init__(self, size: int, fence_after: float) -> None:
        self.size = size
        self.fence_after = fence_after
        self._idle: list[Child] = []
        self._children: set[Child] = set()
        self._starting = 0
        self._lock = threading.Lock()
        self._pipes = concurrent.futures.ThreadPoolExecutor(
            max_workers=size, thread_name_prefix="fsjobs-child-pipe"
        )

    @property
    def pids(self) -> list[int]:
        """The pids of the pool's children (busy or idle)."""
        with self._lock:
            return sorted(c.pid for c in self._children)

    def beat(self, age: float) -> None:
        """Tell every child how old the worker's last good heartbeat is (any thread)."""
        with self._lock:
            children = list(self._children)
        for child in children:
            child.beat(age)

    async def run(
        self,
        request: _child.Request,
        open_log: Callable[[], int],
        progress: Callable[[float | None, str | None], None],
        output_dir: Callable[[], Awaitable[pathlib.Path]],
    ) -> _child.Reply:
        """
        Run `request` in a child and return its reply; `open_log` opens the
        attempt's log, for the child to write. ChildDied if the child died first.
        Cancelled (a timeout, a cancel, the worker stopping), it kills the child
        and waits until it is gone before it re-raises.
        """
        child = await self._take()
        try:
            reply = await self._exchange(child, request, open_log, progress, output_dir)
        except BaseException:
            await self._discard(child)
            raise
        if reply.broke_limit:
            await self._discard(child)  # it broke a limit: a fresh one takes its place
        else:
            self._idle.append(child)
        return reply

    async def close(self) -> None:
        """Kill every child and wait until they are gone (the worker is stopping)."""
        with self._lock:
            children = list(self._children)
            self._children.clear()
        self._idle.clear()
        loop = asyncio.get_running_loop()
        for child in children:
            await loop.run_in_executor(io_pool(), child.kill)
        self._pipes.shutdown(wait=False)

    # -- the children -----------------------------------------------------------------------

    async def _take(self) -> Child:
        while self._idle:
            child = self._idle.pop()
            if child.process.exitcode is None:  # a look at its sentinel: does not block
                return child
            logger.warning("%s: died while idle; starting another", child.death())
            await self._discard(child)
        with self._lock:
            if len(self._children) + self._starting >= self.size:
                raise RuntimeError(f"the process pool already has {self.size} children")
            self._starting += 1
        loop = asyncio.get_running_loop()
        config = _child.Config(
            modules=tuple(
                m for m in tasks.registered_modules() if m not in ("__main__", "__mp_main__")
            ),
            fence_after=self.fence_after,
        )
        started = loop.run_in_executor(io_pool(), self._spawn, config)
        try:
            child = await asyncio.shield(started)
        except asyncio.CancelledError:
            started.add_done_callback(_kill_late)
            raise
        finally:
            with self._lock:
                self._starting -= 1
        with self._lock:
            self._children.add(child)
        return child

    @staticmethod
    def _spawn(config: _child.Config) -> Child:
        """Start a child and wait until it has imported the task modules (in a thread)."""
        mp = multiprocessing.get_context("forkserver")
        conn, child_conn = mp.Pipe(duplex=True)
        alive_r, alive_w = mp.Pipe(duplex=False)
        process = mp.Process(
            target=_child.main,
            args=(child_conn, alive_r, config),
            name="fsjobs-child",
            daemon=True,
        )
        try:
            process.start()
        finally:
            child_conn.close()  # the child has its own copies now: its death shows as EOF
            alive_r.close()
        os.set_blocking(alive_w.fileno(), False)
        child = Child(process, conn, alive_w)
        try:
            if not conn.poll(START_TIMEOUT):
                raise TimeoutError(f"no answer within {START_TIMEOUT} s")
            conn.recv()  # ("ready", pid)
        except (EOFError, OSError) as exc:
            child.kill()
            raise ChildDied(
                f"a child process of the process executor could not start ({child.death()}; "
                f"{exc}; its stderr says more)"
            ) from None
        return child

    async def _discard(self, child: Child) -> None:
        with self._lock:
            self._children.discard(child)
        if child in self._idle:
            self._idle.remove(child)
        await asyncio.shield(asyncio.get_running_loop().run_in_executor(io_pool(), child.kill))

    async def _exchange(
        self,
        child: Child,
        request: _child.Request,
        open_log: Callable[[], int],
        progress: Callable[[float | None, str | None], None],
        output_dir: Callable[[], Awaitable[pathlib.Path]],
    ) -> _child.Reply:
        loop = asyncio.get_running_loop()
        log_fd = -1
        started = loop.run_in_executor(self._pipes, child.start_task, request, open_log)
        try:
            try:
                log_fd, message = await asyncio.shield(started)
            except asyncio.CancelledError:
                started.add_done_callback(_close_log)
                raise
            while True:
                if message[0] == "progress":
                    progress(message[1], message[2])
                elif message[0] == "output_dir":
                    try:
                        answer: tuple[str, str] = ("output_dir", str(await output_dir()))
                    except OSError as exc:
                        answer = ("error", f"the output directory could not be created: {exc}")
                    await loop.run_in_executor(self._pipes, child.conn.send, answer)
                elif message[0] == "reply":
                    if log_fd >= 0:
                        os.close(log_fd)  # the child has cut it to its tail
                        log_fd = -1
                    return typing.cast(_child.Reply, message[1])
                message = await loop.run_in_executor(self._pipes, child.conn.recv)
        except (EOFError, OSError):
            await loop.run_in_executor(io_pool(), child.kill)
            raise ChildDied(child.death()) from None
        finally:
            if log_fd >= 0:  # the child did not end its task: stop it, then cut the log here
                await asyncio.shield(
                    loop.run_in_executor(io_pool(), _stop_and_close, child, log_fd)
                )


def _stop_and_close(child: Child, log_fd: int) -> None:
    """Kill the child (a timeout, a cancel), then cut its task's log to its tail and close it."""
    try:
        child.kill()
    finally:
        LogFile(fd=log_fd).close()


def _close_log(started: asyncio.Future[tuple[int, tuple[typing.Any, ...]]]) -> None:
    """The attempt stopped waiting while its child was being given the task: close its log."""
    if not started.cancelled() and started.exception() is None:
        log_fd = started.result()[0]
        if log_fd >= 0:
            io_pool().submit(LogFile(fd=log_fd).close)


def _kill_late(started: asyncio.Future[Child]) -> None:
    """A child that finished starting after its attempt stopped waiting for it: kill it."""
    if not started.cancelled() and started.exception() is None:
        io_pool().submit(started.result().kill)
