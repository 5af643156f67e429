"""
The tree: where everything lives under a root, and the moves every step shares.

A root holds ``jobs/<shard>/<id>/`` (a job's journal segments and files),
``queues/<queue>/<state>/...`` (one marker per job, in the directory of its
state), ``unique/``, ``workers/`` and ``tmp/``. `Tree` builds every path, walks
to it safely (`Dirs`), and carries out the moves the protocol steps decide
(`_transitions`): a marker is renamed or created with ``O_EXCL``, exactly one
actor wins, and an acknowledged change is fsynced, file then directory.

Nothing is read or written before the first operation: a write creates the
root and its format file, a read of a missing root finds nothing.
"""

from __future__ import annotations

import datetime as dt
import errno
import logging
import os
import secrets
import threading
import typing
from collections.abc import Iterable, Iterator

from . import _durable, _format, _inotify, _names, journal
from ._clock import SYSTEM_CLOCK, Clock, to_ms
from ._json import JSON
from ._names import Marker
from ._paths import Dirs, Mount, Parts, filesystem_staleness, mount_of
from ._transitions import BY_DAY, Where
from .errors import FormatError, StoreError, StoreFull
from .journal import Record, RecordType

logger = logging.getLogger("fsjobs.store")

#: an empty time bucket is removed only once its time is this far past (see `rmdir_past`)
BUCKET_GRACE_MS = 5_000
#: the state directories touched when a job lands in them, to wake idle workers
DOORBELLS = (Where.WAITING, Where.PENDING)
#: errors that mean a directory (or a name in it) is not there any more
_GONE = (errno.ENOENT, errno.ESTALE)
TOP_DIRS = frozenset(
    {
        _names.JOBS,
        _names.QUEUES,
        _names.UNIQUE,
        _names.WORKERS,
        _names.TMP,
        _names.WORKFLOWS,
        _names.PERIODIC,
    }
)
_STATE_DIRS = frozenset({*(w.value for w in Where), _names.RELEASING})
#: the directories of flow control in a queue (slots and rate tokens): never removed either
FLOW_DIRS = frozenset({_names.SLOTS, _names.RATE})
#: Every entry a queue's directory may hold: its state directories, and the files
#: and folders of flow control (the pause, the settings, slots and rate tokens).
QUEUE_ENTRIES: frozenset[str] = _STATE_DIRS | FLOW_DIRS | {_names.PAUSED, _names.SETTINGS}


def _never_removed(parts: Parts) -> bool:
    """The top directories, each queue's directory, its state and flow directories."""
    if len(parts) == 1:
        return parts[0] in TOP_DIRS
    return parts[0] == _names.QUEUES and (
        len(parts) == 2 or (len(parts) == 3 and parts[2] in _STATE_DIRS | FLOW_DIRS)
    )


def record(kind: RecordType, at: dt.datetime, **data: JSON) -> Record:
    return Record(type=kind, at=at, data=dict(data))


def path(parts: Parts, name: str = "") -> str:
    """A path relative to the root, as records and reports spell it."""
    return "/".join((*parts, name)) if name else "/".join(parts)


class Tree:
    """One root: its paths, its safe walk, its format, and the shared moves."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        clock: Clock = SYSTEM_CLOCK,
        staleness: float | None = None,
        reserve_bytes: int = 64 * 1024 * 1024,
        unique_wait: float = 3.0,
        durable: bool = True,
    ) -> None:
        self.dirs = Dirs(os.fspath(root), static=_never_removed)
        self.root = self.dirs.root_path
        self.clock = clock
        self.reserve_bytes = reserve_bytes
        #: how long a push waits for another push of the same unique key to commit
        self.unique_wait = unique_wait
        self.durable = durable
        self._staleness = staleness
        self._mount: Mount | None = None
        self._format: _format.RootFormat | None = None
        self._refusal: str | None = None
        self._setup = threading.Lock()

    # -- opening ------------------------------------------------------------------

    def for_reading(self) -> bool:
        """Open the root for a read; False when there is no root (nothing to read)."""
        if self._format is not None:
            return True
        with self._setup:
            return self._open_for_reading()

    def _open_for_reading(self) -> bool:
        if self._format is not None:  # opened by another thread while we waited
            return True
        if not self.dirs.open_root(create=False):
            return False
        self._read_mount()
        found = _format.read(self.dirs)
        if found is not None:  # else a root being created: nothing is in it yet
            self._adopt(found)
        return True

    def for_writing(self) -> None:
        """Open the root for a write: create it and its format file if needed, or refuse."""
        if self._format is None:
            with self._setup:
                if self._format is None:
                    self.dirs.open_root(create=True)
                    self._read_mount()
                    self._adopt(_format.ensure(self.dirs, durable=self.durable))
        if self._refusal is not None:
            raise FormatError(self._refusal)

    def refresh_format(self) -> _format.RootFormat | None:
        """Read ``fsjobs.json`` again (at every heartbeat): someone may have added a feature."""
        if not self.for_reading():
            return None
        found = _format.read(self.dirs)
        if found is not None:
            self._adopt(found)
        return found

    def add_feature(self, name: str) -> None:
        """Record that the root uses `name` before the first file that needs it is written."""
        self.for_writing()
        assert self._format is not None
        if name not in self._format.names:
            self._adopt(_format.rewrite(self.dirs, _format.with_feature(name)))

    def _adopt(self, found: _format.RootFormat) -> None:
        self._refusal = found.refusal(self.root)
        self._format = found

    @property
    def format(self) -> _format.RootFormat | None:
        return self._format

    @property
    def writable(self) -> bool:
        """False while the root uses a feature this fsjobs does not know (or is migrating)."""
        return self._refusal is None

    def _read_mount(self) -> None:
        if self._mount is None:
            self._mount = mount_of(self.root)
            if self._staleness is None:
                self._staleness = filesystem_staleness(self._mount)

    @property
    def mount(self) -> Mount | None:
        self._read_mount()
        return self._mount

    @property
    def batch_sync(self) -> bool:
        """Whether a batch of pushes may be made durable with syncfs (a local filesystem)."""
        mount = self.mount
        return self.durable and _durable.can_syncfs(mount.fstype if mount else None)

    @property
    def staleness(self) -> float:
        """How long content may lag names here: 0 s locally, 2 s on a network filesystem."""
        self._read_mount()
        assert self._staleness is not None
        return self._staleness

    def close(self) -> None:
        self.dirs.close()

    # -- paths --------------------------------------------------------------------------

    @staticmethod
    def queue_dir(queue: str, *rest: str) -> Parts:
        return (_names.QUEUES, queue, *rest)

    @staticmethod
    def job_dir(job_id: str, *rest: str) -> Parts:
        return (_names.JOBS, _names.shard_of(job_id), job_id, *rest)

    def live_dir(self, queue: str, where: Where, marker: Marker) -> Parts:
        """The time bucket a waiting or pending marker sits in."""
        if where is Where.WAITING:
            return self.queue_dir(queue, Where.WAITING, *marker.bucket)
        assert where is Where.PENDING
        return self.queue_dir(queue, Where.PENDING, marker.prio_dir, *marker.bucket)

    def day_dir(self, queue: str, where: Where, job_id: str) -> Parts:
        """The day shard of a final (or held) marker, named by the job id."""
        assert where in BY_DAY
        return self.queue_dir(queue, where, _names.day_of(job_id))

    def running_dir(self, queue: str) -> Parts:
        return self.queue_dir(queue, Where.RUNNING)

    def place(
        self, queue: str, where: Where, marker: Marker | None, job_id: str
    ) -> tuple[Parts, str]:
        """The directory and name of a job's marker at `where` (not for running)."""
        if where in (Where.WAITING, Where.PENDING):
            assert marker is not None
            return self.live_dir(queue, where, marker), marker.name
        return self.day_dir(queue, where, job_id), job_id

    # -- reading directories -----------------------------------------------------------

    def open_or_none(self, parts: Parts) -> typing.ContextManager[int | None]:
        return self.dirs.open_or_none(parts)

    def names(self, parts: Parts) -> list[str]:
        """The entries of a directory (no NFS silly-renames); empty if it is not there."""
        with self.dirs.open_or_none(parts) as fd:
            return [] if fd is None else _durable.listdir(fd)

    def exists(self, parts: Parts, name: str) -> bool:
        try:
            with self.dirs.open(parts) as fd:
                return _durable.exists(fd, name)
        except (FileNotFoundError, StoreError):
            return False

    def queues(self) -> list[str]:
        """The queues under the root (directories under ``queues/`` with a valid name)."""
        return sorted(n for n in self.names((_names.QUEUES,)) if _names.NAME_RE.fullmatch(n))

    def leaf_buckets(self, top: Parts, levels: int, *, prune: bool = False) -> Iterator[Parts]:
        """
        Depth-first, in byte order, the directories `levels` below `top`. Listings
        are closed before yielding. With `prune`, empty buckets met on the way
        are removed once their time is past (not `top`): another process that
        needs one again simply recreates it.
        """
        names = sorted(self.names(top))
        if not names and prune:
            self.rmdir_past(top)
        for name in names:
            if levels == 1:
                yield (*top, name)
            else:
                yield from self.leaf_buckets((*top, name), levels - 1, prune=True)

    def rmdir_past(self, parts: Parts) -> None:
        """
        Remove an empty bucket once its time is well past. A current one may be
        empty only because a pusher has just made it and is about to create its
        marker there: removing it would make that push start over (and, with
        workers woken by every push, lose that race again and again).
        """
        end = _names.bucket_end_ms(parts)
        past = to_ms(self.clock.now()) - BUCKET_GRACE_MS
        if end is not None and end >= past:
            return
        try:
            with self.dirs.open(parts[:-1]) as fd:
                if end is None:
                    # A priority directory (or junk) has no time of its own: its last
                    # change stands in, so that a worker a pusher's mkdir woke does not
                    # remove it before the bucket inside is made (a push lost that race
                    # ten times in a row).
                    st = os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)
                    if st.st_mtime_ns // 1_000_000 >= past:
                        return
                os.rmdir(parts[-1], dir_fd=fd)
        except OSError:
            pass  # not empty, or already gone

    def rmdir_empty(self, parts: Parts) -> None:
        try:
            with self.dirs.open(parts[:-1]) as fd:
                os.rmdir(parts[-1], dir_fd=fd)
        except OSError:
            pass  # not empty, or already gone

    def running(self, queue: str) -> list[tuple[Marker, str]]:
        """The running markers of `queue` as (marker, worker); other names are skipped."""
        out = []
        for name in self.names(self.running_dir(queue)):
            try:
                out.append(Marker.parse_running(name))
            except ValueError:
                continue
        return out

    # -- moves ------------------------------------------------------------------------------

    def move(
        self,
        src_parts: Parts,
        src: str,
        dst_parts: Parts,
        dst: str,
        *,
        mine: bool = False,
        sync: bool = True,
    ) -> bool:
        """
        ``rename`` one marker; True if this call won. Missing target directories
        are created (another process may remove an empty bucket at any time). A
        vanished source means someone else won, unless an NFS retransmission
        reports our own success: when the target name is `mine` (it carries this
        actor's token, so no one else can create it) its existence proves that.
        `sync` fsyncs the target directory: needed for acknowledged transitions
        only (a claim, promotion or rescue lost in a crash is simply redone).
        """
        fresh_source = False
        for _ in range(10):
            try:
                src_fd = self.dirs.borrow(src_parts)
            except FileNotFoundError:
                return mine and self.exists(dst_parts, dst)
            try:
                dst_fd = self.dirs.borrow(dst_parts, create=True)
                os.rename(src, dst, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
            except OSError as exc:
                if exc.errno not in _GONE:
                    raise
                if _durable.exists(src_fd, src):
                    self.dirs.forget(dst_parts)
                    continue  # the target bucket vanished under us: recreate it
                if not fresh_source:
                    # Our descriptor may be of a bucket that was removed and made
                    # again since: look once more through a fresh one.
                    self.dirs.forget(src_parts)
                    fresh_source = True
                    continue
                return mine and self.exists(dst_parts, dst)
            if sync and self.durable:
                _durable.fsync_dir(dst_fd)
            if len(dst_parts) > 2 and dst_parts[2] in DOORBELLS:
                self.ring(dst_parts[1], Where(dst_parts[2]))
            return True
        raise StoreError(f"could not move {src} into {path(dst_parts)}")

    def link_marker(self, job_fd: int, parts: Parts, name: str) -> int:
        """
        Publish a job: its marker, a hard link of its segment 0, in `parts`. A
        name that exists already is refused, as ``O_EXCL`` would; except our own
        link, which an NFS client may report as EEXIST when it retransmits a
        ``link`` that succeeded. Returns the directory's descriptor, borrowed
        (`Dirs.borrow`): fsync it now, or ``os.dup`` it to keep it.
        """
        segment = _names.segment_name(0)
        for _ in range(10):
            try:
                fd = self.dirs.borrow(parts, create=True)
                os.link(segment, name, src_dir_fd=job_fd, dst_dir_fd=fd, follow_symlinks=False)
            except FileExistsError:
                mine = os.stat(segment, dir_fd=job_fd, follow_symlinks=False)
                there = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if (mine.st_dev, mine.st_ino) != (there.st_dev, there.st_ino):
                    raise
            except OSError as exc:
                if exc.errno in _GONE and not _durable.exists(job_fd, segment):
                    raise
                if exc.errno in _GONE:
                    self.dirs.forget(parts)
                    continue  # a worker removed the empty bucket since we opened it
                _durable.raise_full(exc, "publishing a job")
                raise
            return fd
        raise StoreError(f"could not create {path(parts, name)}: bucket keeps vanishing")

    def link_staging(self, job_fd: int, name: str) -> tuple[str, int]:
        """
        A staging marker: a hard link of the job's segment 0 as ``tmp/<name>.<token>``,
        OFD-locked while its push is alive (see `create_staging`). Committed by a
        rename into place.
        """
        tmp_fd = self.dirs.cached((_names.TMP,))
        staging = f"{name}.{secrets.token_hex(6)}"
        os.link(
            _names.segment_name(0),
            staging,
            src_dir_fd=job_fd,
            dst_dir_fd=tmp_fd,
            follow_symlinks=False,
        )
        return staging, self._lock_staging(tmp_fd, staging)

    def create_staging(self, prefix: str) -> tuple[str, int]:
        """
        A staging marker ``tmp/<prefix>.<token>``, created and OFD-locked: while the
        lock is held, anyone can tell that its process is alive. Returns its name
        and the locked descriptor (closing it drops the lock).
        """
        tmp_fd = self.dirs.cached((_names.TMP,))
        name = f"{prefix}.{secrets.token_hex(6)}"
        os.close(os.open(name, _durable.O_NEW, _durable.FILE_MODE, dir_fd=tmp_fd))
        return name, self._lock_staging(tmp_fd, name)

    @staticmethod
    def _lock_staging(tmp_fd: int, name: str) -> int:
        fd = os.open(name, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=tmp_fd)
        if not _durable.try_lock(fd):  # a fresh random name: nobody else has it
            os.close(fd)
            raise StoreError(f"staging marker {name} is locked by someone else")
        return fd

    def check_space(self) -> None:
        """StoreFull below the free-space reserve: a full disk must not fail mid-push."""
        st = os.statvfs(self.dirs.root_fd)
        free = st.f_bavail * st.f_frsize
        if free < self.reserve_bytes:
            raise StoreFull(
                f"only {free // 1024} KiB free under {self.root}, below the reserve of "
                f"{self.reserve_bytes // 1024} KiB: free space or lower reserve_bytes"
            )

    # -- journal segments -----------------------------------------------------------------

    def open_job(self, job_id: str) -> int:
        """A descriptor of the job's folder (the caller closes it); FileNotFoundError if none."""
        return self.dirs.open_fd(self.job_dir(job_id))

    def open_segment(self, job_fd: int, epoch: int) -> int:
        """
        Create the segment of a new epoch for appending. Only the winner of the
        rename that opened the epoch calls this, so a segment already there is a
        leftover of a change of hands that a crash undid: it is moved aside (kept
        for inspection), never appended to.
        """
        name = _names.segment_name(epoch)
        try:
            return os.open(name, _durable.O_APPEND_NEW, _durable.FILE_MODE, dir_fd=job_fd)
        except FileExistsError:
            aside = f"{name}.undone.{secrets.token_hex(4)}"
            os.rename(name, aside, src_dir_fd=job_fd, dst_dir_fd=job_fd)
            logger.warning("moved a leftover journal segment aside as %s", aside)
            return os.open(name, _durable.O_APPEND_NEW, _durable.FILE_MODE, dir_fd=job_fd)

    def append(self, fd: int, rec: Record, *, sync: bool = True) -> None:
        """Append one record to an open segment (fsynced unless told otherwise)."""
        _durable.append(fd, journal.encode(rec), sync=sync and self.durable)

    def open_epoch(self, job_id: str, epoch: int, rec: Record) -> None:
        """As the winner of the rename that opened `epoch`, write its first record, durably."""
        job_fd = self.open_job(job_id)
        try:
            fd = self.open_segment(job_fd, epoch)
            try:
                self.append(fd, rec)
            finally:
                os.close(fd)
            if self.durable:
                _durable.fsync_dir(job_fd)
        finally:
            os.close(job_fd)

    def discard_job(self, job_id: str) -> None:
        """Remove a job's folder (unpublished or pruned; best effort: fsck collects leftovers)."""
        try:
            with self.dirs.open((_names.JOBS, _names.shard_of(job_id))) as shard_fd:
                _durable.rmtree_at(shard_fd, job_id)
        except OSError:
            logger.warning("could not remove the folder of job %s", job_id)

    # -- wake-ups -----------------------------------------------------------------------------

    def ring(self, queue: str, where: Where) -> None:
        """
        Touch ``queues/<queue>/<where>/`` so that idle workers watching it with
        inotify wake at once (same host), and pollers on other hosts see its
        times change. Best effort: a wake-up lost here is found by the next poll.
        """
        try:
            os.utime(self.dirs.cached(self.queue_dir(queue, where)))
        except OSError:
            pass

    def watch(self, queues: Iterable[str]) -> _inotify.Watcher | None:
        """An inotify descriptor that wakes on `ring` (and new buckets); None if unavailable."""
        self.for_writing()
        return _inotify.watch(
            self.dirs.cached(self.queue_dir(q, where)) for q in queues for where in DOORBELLS
        )
