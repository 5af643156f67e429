"""
Logs: what an attempt printed and logged, in ``jobs/<shard>/<id>/attempts/<epoch>/log``.

The store opens an attempt's log for its claimer and hands the descriptor out:
the worker writes through it (a `LogFile`) for async and thread tasks, a child
process of the process executor for its task. A log keeps its last `LOG_KEEP`
bytes: past twice that it is cut back to its tail while the task runs, and to
at most `LOG_KEEP` bytes when the attempt ends, with a first line saying how
much was dropped. Logs are advisory: never fsynced, and a log that cannot be
written is given up without failing the task.

An attempt may run in several epochs (a worker that stops gives its job back
with the attempt restored; the next claim runs the same attempt again), so
reading an attempt's log joins the logs of every epoch that ran it.
"""

from __future__ import annotations

import logging
import os
import threading
import typing

from . import _durable, _names, journal
from ._claim import Claim, attempt_dir
from ._paths import Parts
from ._read import find
from ._tree import Tree
from .states import JobState

logger = logging.getLogger("fsjobs.store")

LOG_FILE = "log"
#: each attempt's log keeps this many bytes, its tail
LOG_KEEP = 1024 * 1024
#: a log is cut back to its tail once it holds this many bytes more than it keeps
_SLACK = LOG_KEEP
_O_LOG = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC


def open_for_attempt(tree: Tree, won: Claim) -> int:
    """Create (or open) the claimed attempt's log for appending; the caller closes it."""
    with tree.dirs.open(attempt_dir(won), create=True) as fd:
        return os.open(LOG_FILE, _O_LOG, _durable.FILE_MODE, dir_fd=fd)


class LogFile:
    """
    An attempt's log, written from any thread through a descriptor the store
    opened (given, or opened by `opener` on the first write). Keeps its tail.
    """

    def __init__(
        self,
        fd: int = -1,
        opener: typing.Callable[[], int] | None = None,
        keep: int = LOG_KEEP,
    ) -> None:
        self._fd = fd
        self._opener = opener
        self.keep = keep
        self._lock = threading.Lock()
        self._written = 0
        self._broken = False

    @property
    def fd(self) -> int:
        return self._fd

    def write(self, data: bytes) -> None:
        if not data:
            return
        with self._lock:
            if self._broken or not self._open():
                return
            try:
                _durable.write_all(self._fd, data)
                self._written += len(data)
                if self._written > self.keep + _SLACK:
                    self._cut(self.keep)
            except OSError as exc:  # a full disk, say: the task goes on without its log
                self._broken = True
                logger.warning("an attempt's log could not be written: %s", exc)

    def _open(self) -> bool:
        if self._fd >= 0:
            return True
        if self._opener is None:
            return False
        try:
            self._fd = self._opener()
        except OSError as exc:
            self._broken = True
            logger.warning("an attempt's log could not be created: %s", exc)
            return False
        return True

    def _cut(self, keep: int) -> None:
        """Keep the last `keep` bytes (whole lines where it can), after a line saying so."""
        size = os.fstat(self._fd).st_size
        if size <= keep:
            self._written = size
            return
        room = max(0, keep - 80)  # what the note line leaves
        tail = os.pread(self._fd, room, size - room) if room else b""
        newline = tail.find(b"\n", 0, 4096)
        if newline >= 0:
            tail = tail[newline + 1 :]
        note = f"[fsjobs: the first {size - len(tail)} bytes of this log were dropped]\n"
        os.ftruncate(self._fd, 0)
        _durable.write_all(self._fd, note.encode() + tail)
        self._written = len(note) + len(tail)

    def close(self) -> None:
        """
        Cut the log to its last `keep` bytes and close it (the attempt is over).
        Later writes (a thread or an asyncio task the task left behind) are dropped.
        """
        with self._lock:
            self._opener = None
            if self._fd < 0:
                return
            try:
                if not self._broken:
                    self._cut(self.keep)
            except OSError as exc:
                logger.warning("an attempt's log could not be trimmed: %s", exc)
            finally:
                os.close(self._fd)
                self._fd = -1


# -- reading ----------------------------------------------------------------------------------


def attempt_epochs(tree: Tree, job_id: str) -> list[tuple[int, int]]:
    """
    (epoch, attempt number) of every epoch in which the job was claimed to run,
    oldest first. JobNotFound if there is no such job.
    """
    found = find(tree, job_id)
    if isinstance(found, JobState):
        return []  # its journal is unreadable: nothing says which epoch ran which attempt
    out = []
    for epoch, seg in found.segments:
        for rec in seg.records:
            if rec.type is journal.RecordType.CLAIMED:
                attempt = rec.data.get("attempt")
                if isinstance(attempt, int) and not isinstance(attempt, bool):
                    out.append((epoch, attempt))
                break
    return out


def _log_dir(job_id: str, epoch: int) -> Parts:
    return Tree.job_dir(job_id, _names.ATTEMPTS, _names.attempt_dir(epoch))


def open_epoch_log(tree: Tree, job_id: str, epoch: int) -> int | None:
    """A read-only descriptor of one epoch's log (the caller closes it); None if it has none."""
    with tree.open_or_none(_log_dir(job_id, epoch)) as fd:
        if fd is None:
            return None
        try:
            return _durable.open_regular(fd, LOG_FILE)[0]
        except FileNotFoundError:
            return None


def read_tail(fd: int, keep: int = LOG_KEEP) -> bytes:
    """At most the last `keep` bytes of an open log (a running child may have written more)."""
    size = os.fstat(fd).st_size
    start = max(0, size - keep)
    chunks, offset = [], start
    while offset < size:
        chunk = os.pread(fd, min(1 << 20, size - offset), offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def read(tree: Tree, job_id: str, attempt: int | None = None) -> str:
    """
    The log of attempt number `attempt` (1-based; None: the newest that ran),
    joining every epoch that ran it; "" if it wrote nothing or has not run.
    JobNotFound if there is no such job.
    """
    if attempt is not None and (isinstance(attempt, bool) or attempt < 1):
        raise ValueError(f"attempt must be a number from 1, not {attempt!r}")
    ran = attempt_epochs(tree, job_id)
    if not ran:
        return ""
    wanted = max(a for _, a in ran) if attempt is None else attempt
    parts = []
    for epoch, number in ran:
        if number != wanted:
            continue
        fd = open_epoch_log(tree, job_id, epoch)
        if fd is None:
            continue
        try:
            parts.append(read_tail(fd))
        finally:
            os.close(fd)
    return b"".join(parts).decode("utf-8", "replace")
