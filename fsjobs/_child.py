"""
The child side of the process executor: a reusable process that runs one sync task at a time.

A child is started by forkserver (see `_executors.ProcessPool`), imports its
worker's task modules, then serves requests over its connection until it is
told to stop or loses its worker:

1. it receives a `Request` and the descriptor of the attempt's log (the store
   opened it in the worker);
2. with the job's MEMORY limit it first compares the limit with its own size
   (an attempt whose limit is already below it fails at once, naming both
   numbers), then sets a soft ``RLIMIT_AS`` on its main thread, just before the
   task, and restores it after: an allocation past it raises `MemoryError`;
3. it runs the task with stdout, stderr, descriptors 1 and 2 and ``logging``
   going to the log (see `_capture`); ``ctx.progress`` sends a report,
   ``ctx.output_dir`` asks the worker for the directory;
4. it answers with a `Reply`.

It dies with its worker: the parent-death signal (its parent is the forkserver,
which exits when the worker does) and EOF on its ``alive`` pipe both kill it.
The worker writes its heartbeat's age into that pipe at every beat; a child
whose worker's heartbeat is older than ``fence_after`` (2/3 of the lease, when
other workers may rescue the job) while a task runs kills itself, so a rescued
job never runs twice at once.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import os
import pathlib
import resource
import select
import signal
import struct
import sys
import threading
import time
import traceback
import typing
from collections.abc import Callable, Iterator
from multiprocessing import reduction
from multiprocessing.connection import Connection

import attrs

from . import _capture, tasks
from ._json import JSON
from ._logs import LogFile
from ._paths import address_space_bytes
from .context import Context
from .errors import ResultNotSerializable, Retry, UnknownTask, error_info
from .model import to_json_result
from .states import ErrorInfo

#: one heartbeat report on the ``alive`` pipe: the age of the worker's last good beat, in seconds
BEAT = struct.Struct("=d")
_PR_SET_PDEATHSIG = 1
_M_ARENA_MAX = -8
#: the watchdog thread's stack: it only waits on a pipe
WATCHDOG_STACK = 256 * 1024


@attrs.frozen
class Config:
    """What a child is started with."""

    #: modules to import at start: those that define the worker's tasks
    modules: tuple[str, ...]
    #: kill the running task when the worker's heartbeat is older than this (seconds)
    fence_after: float


@attrs.frozen
class Request:
    """One attempt for a child to run."""

    job_id: str
    attempt: int
    max_attempts: int
    queue: str
    task_name: str
    #: where the child finds the function: its module and qualified name
    module: str
    qualname: str
    #: the job's kwargs, plus the bytes of uploads the function takes as parameters
    kwargs: dict[str, typing.Any]
    context_param: str | None
    uploads: dict[str, str]
    #: the results of the jobs this one depends on (`Context.parents`)
    parents: dict[str, typing.Any]
    memory: int | None
    #: the age of the worker's last good heartbeat when it sent this (seconds)
    silent_for: float


@attrs.frozen
class Reply:
    """How the task ended in the child."""

    #: "returned" (`result` holds it), "raised", "retry" (the task raised Retry),
    #: "unserializable" or "unknown" (the function was not found): the last two fail the job
    kind: str
    result: JSON = None
    error: ErrorInfo | None = None
    retry_delay: float | None = None
    #: MemoryError under the job's limit: the child broke a limit and is replaced
    broke_limit: bool = False


def main(conn: Connection, alive: Connection, config: Config) -> None:
    """A child's life (the target of its `multiprocessing.Process`)."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the worker, which stops gracefully
    try:
        stderr_fd = os.dup(2)
    except OSError:
        stderr_fd = -1
    _one_malloc_arena()
    watchdog = Watchdog(alive.fileno(), config.fence_after, stderr_fd)
    threading.stack_size(WATCHDOG_STACK)
    try:
        watchdog.start()
    finally:
        threading.stack_size(0)
    _capture.install()
    for module in config.modules:
        try:
            importlib.import_module(module)
        except BaseException:  # a broken module breaks only its own tasks
            _say(stderr_fd, f"fsjobs child {os.getpid()}: importing {module} failed:\n")
            _say(stderr_fd, traceback.format_exc())
    conn.send(("ready", os.getpid()))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message[0] != "run":
            return
        request = typing.cast(Request, message[1])
        log_fd = reduction.recv_handle(conn) if message[2] else -1
        conn.send(("reply", _run(conn, request, log_fd, watchdog)))


def _die_with_parent() -> None:
    """SIGKILL this process when its parent (the forkserver) dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: the alive pipe still ends the child
    if os.getppid() == 1:  # the parent died before the signal was armed
        os.kill(os.getpid(), signal.SIGKILL)


def _one_malloc_arena() -> None:
    """
    One malloc arena for every thread (glibc reserves 64 MiB of address space for
    each extra one): the child starts at about 35 MiB of address space instead of
    about 110, so a MEMORY limit means what it says.
    """
    try:
        ctypes.CDLL(None).mallopt(_M_ARENA_MAX, 1)
    except (OSError, AttributeError):
        pass  # not glibc


def _say(fd: int, text: str) -> None:
    try:
        os.write(fd, text.encode("utf-8", "backslashreplace"))
    except OSError:
        pass


class Watchdog(threading.Thread):
    """Kills the child when its worker is gone, or silent too long while a task runs."""

    def __init__(self, alive_fd: int, fence_after: float, stderr_fd: int) -> None:
        super().__init__(name="fsjobs-child-watchdog", daemon=True)
        self.alive_fd = alive_fd
        self.fence_after = fence_after
        self.stderr_fd = stderr_fd
        self.busy = False
        self.beat_at = time.monotonic()

    def task_starts(self, silent_for: float) -> None:
        self.beat_at = min(self.beat_at, time.monotonic() - silent_for)
        self.busy = True

    def run(self) -> None:
        pending = b""
        while True:
            readable, _, _ = select.select([self.alive_fd], [], [], 0.25)
            if readable:
                data = os.read(self.alive_fd, 4096)
                if not data:
                    self._kill("its worker is gone")
                pending += data
                whole = len(pending) - len(pending) % BEAT.size
                if whole:
                    (age,) = BEAT.unpack(pending[whole - BEAT.size : whole])
                    self.beat_at = time.monotonic() - age
                    pending = pending[whole:]
            silent = time.monotonic() - self.beat_at
            if self.busy and silent > self.fence_after:
                self._kill(
                    f"its worker's heartbeat is {silent:.1f} s old, over {self.fence_after:.1f} s "
                    "(2/3 of the lease): another worker may rescue the job"
                )

    def _kill(self, why: str) -> None:
        _say(self.stderr_fd, f"fsjobs child {os.getpid()}: killing itself: {why}\n")
        os.kill(os.getpid(), signal.SIGKILL)


def _run(conn: Connection, request: Request, log_fd: int, watchdog: Watchdog) -> Reply:
    lock = threading.Lock()  # the task may report progress from threads of its own

    def send(message: tuple[typing.Any, ...]) -> None:
        with lock:
            conn.send(message)

    def output_dir() -> pathlib.Path:
        with lock:
            conn.send(("output_dir",))
            kind, text = conn.recv()
        if kind != "output_dir":
            raise OSError(text)
        return pathlib.Path(text)

    log = LogFile(fd=log_fd)
    try:
        try:
            fn = _resolve(request)
        except Exception as exc:
            return Reply("unknown", error=error_info(UnknownTask(str(exc))))
        if request.memory is not None:
            size = address_space_bytes()
            if size is not None and request.memory < size:
                return Reply("raised", error=error_info(_below_size(request.memory, size)))
        ctx = Context(
            job_id=request.job_id,
            attempt=request.attempt,
            max_attempts=request.max_attempts,
            queue=request.queue,
            uploads={name: pathlib.Path(p) for name, p in request.uploads.items()},
            parents=request.parents,
            output_dir_factory=output_dir,
            progress_sink=lambda percent, message: send(("progress", percent, message)),
        )
        kwargs = dict(request.kwargs)
        if request.context_param is not None:
            kwargs[request.context_param] = ctx
        with _capture.capturing(log), _descriptors_to(log_fd):
            returned, value = _call(fn, kwargs, request, watchdog)
        return _reply(returned, value, request.memory)
    finally:
        log.close()


def _resolve(request: Request) -> Callable[..., typing.Any]:
    """The task's function: at its module and qualified name, else registered under its name."""
    try:
        found: typing.Any = tasks.function_at(request.module, request.qualname)
    except (ImportError, AttributeError) as exc:
        found = tasks.find(request.task_name)
        if found is None:
            raise LookupError(
                f"the process executor's child cannot find task {request.task_name} "
                f"({request.module}.{request.qualname}: {exc}): define it at the top level "
                "of an importable module"
            ) from exc
    return typing.cast(Callable[..., typing.Any], getattr(found, "fn", found))


def _below_size(limit: int, size: int) -> MemoryError:
    return MemoryError(
        f"the job's MEMORY limit of {limit} bytes ({limit / 2**20:.1f} MiB) is below the "
        f"{size} bytes ({size / 2**20:.1f} MiB) of address space the child process already "
        "uses: raise the limit"
    )


@contextlib.contextmanager
def _descriptors_to(fd: int) -> Iterator[None]:
    """Point descriptors 1 and 2 at the log while the task runs (subprocesses, C code)."""
    if fd < 0:
        yield
        return
    saved: list[tuple[int, int]] = []
    for stream in (sys.__stdout__, sys.__stderr__):
        with contextlib.suppress(Exception):
            if stream is not None:
                stream.flush()
    for target in (1, 2):
        try:
            saved.append((target, os.dup(target)))
        except OSError:
            continue  # not open: leave it so
        os.dup2(fd, target)
    try:
        yield
    finally:
        for stream in (sys.__stdout__, sys.__stderr__):
            with contextlib.suppress(Exception):
                if stream is not None:
                    stream.flush()
        for target, copy in saved:
            os.dup2(copy, target)
            os.close(copy)


def _call(
    fn: Callable[..., typing.Any],
    kwargs: dict[str, typing.Any],
    request: Request,
    watchdog: Watchdog,
) -> tuple[bool, typing.Any]:
    """Run the function on this (main) thread under the job's MEMORY limit, if any."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    watchdog.task_starts(request.silent_for)
    try:
        if request.memory is not None:
            limit = request.memory
            if hard != resource.RLIM_INFINITY:
                limit = min(limit, hard)
            resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
        return True, fn(**kwargs)
    except BaseException as exc:  # SystemExit too: the task's failure, not the child's end
        return False, exc
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        watchdog.busy = False


def _reply(returned: bool, value: typing.Any, memory: int | None) -> Reply:
    if returned:
        try:
            return Reply("returned", result=to_json_result(value))
        except (TypeError, ValueError, RecursionError) as exc:
            problem = ResultNotSerializable(
                f"the task returned {type(value).__name__}, which is not JSON: {exc}"
            )
            return Reply("unserializable", error=error_info(problem))
    if isinstance(value, Retry):
        return Reply("retry", error=error_info(value), retry_delay=value.delay)
    info = error_info(value)
    if isinstance(value, MemoryError) and memory is not None:
        detail = f"an allocation would have taken the task past its MEMORY limit of {memory} bytes"
        message = f"{info.message}: {detail}" if info.message else detail
        return Reply("raised", error=attrs.evolve(info, message=message), broke_limit=True)
    return Reply("raised", error=info)
