"""
What a task prints and logs goes to its attempt's log, not to the worker's output.

The attempt's log is a `Sink` held in a context variable while the task runs
(`capturing`): an asyncio task and the tasks it starts see their own, a sync
task's thread runs in a copy of the attempt's context, and a child process of
the process executor has one task at a time. Three routes lead there:

- ``sys.stdout`` and ``sys.stderr`` are wrapped (`route_streams`): a write made
  in a task's context goes to its sink, any other write to the stream as before;
- ``logging``: a record at INFO or above emitted in a task's context is written
  to its sink whatever the application's logging configuration (levels,
  handlers, disabled loggers); it then reaches the application's handlers only
  if that configuration would have let it through;
- in a child process, descriptors 1 and 2 point at the log while the task runs,
  so a subprocess or C library writing there is captured too (see `_child`).

Outside a task's context nothing changes. No fsjobs imports: this sits below everything.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
import threading
import typing
from collections.abc import Iterator

#: records below this level are not captured (nor forced through)
CAPTURE_LEVEL = logging.INFO
_FORMAT = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")


class Sink(typing.Protocol):
    """Where an attempt's output goes (an `fsjobs._logs.LogFile`); thread-safe."""

    def write(self, data: bytes) -> None: ...


_sink: contextvars.ContextVar[Sink | None] = contextvars.ContextVar("fsjobs_log", default=None)


@contextlib.contextmanager
def capturing(sink: Sink) -> Iterator[None]:
    """Send what this context prints and logs to `sink` until the block ends."""
    token = _sink.set(sink)
    try:
        yield
    finally:
        _sink.reset(token)


def current() -> Sink | None:
    """The sink of the task running in this context, if any."""
    return _sink.get()


# -- print, sys.stdout, sys.stderr -------------------------------------------------------------


class _BufferRouter:
    """``sys.stdout.buffer`` of a routed stream: bytes written in a task go to its sink."""

    def __init__(self, router: _Router) -> None:
        self._router = router

    def write(self, data: bytes) -> int:
        sink = _sink.get()
        if sink is None:
            inner = getattr(self._router.inner, "buffer", None)
            return 0 if inner is None else int(inner.write(data))
        sink.write(bytes(data))
        return len(data)

    def flush(self) -> None:
        inner = getattr(self._router.inner, "buffer", None)
        if inner is not None:
            inner.flush()

    def __getattr__(self, name: str) -> typing.Any:
        return getattr(getattr(self._router.inner, "buffer", None), name)


class _Router:
    """A stream that sends writes made in a task's context to its sink, others to `inner`."""

    def __init__(self, inner: typing.TextIO | None) -> None:
        self.inner = inner

    def write(self, text: str) -> int:
        sink = _sink.get()
        if sink is None:
            return 0 if self.inner is None else self.inner.write(text)
        sink.write(text.encode("utf-8", "backslashreplace"))
        return len(text)

    def writelines(self, lines: typing.Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self.inner is not None:
            self.inner.flush()

    def isatty(self) -> bool:
        if _sink.get() is not None or self.inner is None:
            return False
        return self.inner.isatty()

    def writable(self) -> bool:
        return True

    @property
    def buffer(self) -> _BufferRouter:
        return _BufferRouter(self)

    @property
    def encoding(self) -> str:
        return "utf-8" if self.inner is None else self.inner.encoding

    @property
    def errors(self) -> str | None:
        return None if self.inner is None else self.inner.errors

    def __getattr__(self, name: str) -> typing.Any:
        if self.inner is None:
            raise AttributeError(name)
        return getattr(self.inner, name)


def route_streams() -> None:
    """
    Wrap ``sys.stdout`` and ``sys.stderr`` unless they are wrapped already (the
    application, or a test runner, may have replaced them since the last time).
    """
    if not isinstance(sys.stdout, _Router):
        sys.stdout = typing.cast(typing.TextIO, _Router(sys.stdout))
    if not isinstance(sys.stderr, _Router):
        sys.stderr = typing.cast(typing.TextIO, _Router(sys.stderr))


def _unroute_streams() -> None:
    if isinstance(sys.stdout, _Router):
        sys.stdout = typing.cast(typing.TextIO, sys.stdout.inner)
    if isinstance(sys.stderr, _Router):
        sys.stderr = typing.cast(typing.TextIO, sys.stderr.inner)


# -- logging ------------------------------------------------------------------------------------

_original_is_enabled = logging.Logger.isEnabledFor
_original_handle = logging.Logger.handle


def _is_enabled(self: logging.Logger, level: int) -> bool:
    if level >= CAPTURE_LEVEL and _sink.get() is not None:
        return True  # captured whatever the configuration says; see _handle
    return _original_is_enabled(self, level)


def _handle(self: logging.Logger, record: logging.LogRecord) -> None:
    sink = _sink.get()
    if sink is not None and record.levelno >= CAPTURE_LEVEL:
        try:
            line = _FORMAT.format(record)
        except Exception:  # a bad format string must not fail the task
            line = f"{record.levelname} {record.name}: {record.msg!r} % {record.args!r}"
        sink.write((line + "\n").encode("utf-8", "backslashreplace"))
        if not _original_is_enabled(self, record.levelno):
            return  # only forced through for the log: the application did not want it
    _original_handle(self, record)


# -- installing ---------------------------------------------------------------------------------

_users = 0
_users_lock = threading.Lock()


def install() -> None:
    """Start routing (a worker starting); each call needs one `uninstall`."""
    global _users
    with _users_lock:
        _users += 1
        if _users == 1:
            logging.Logger.isEnabledFor = _is_enabled  # type: ignore[method-assign]
            logging.Logger.handle = _handle  # type: ignore[method-assign]
    route_streams()


def uninstall() -> None:
    """Stop routing once the last worker of this process has stopped."""
    global _users
    with _users_lock:
        _users -= 1
        if _users > 0:
            return
        _users = 0
        logging.Logger.isEnabledFor = _original_is_enabled  # type: ignore[method-assign]
        logging.Logger.handle = _original_handle  # type: ignore[method-assign]
    _unroute_streams()
