"""
The safe path walk: every file under ROOT is reached one component at a time
with ``O_DIRECTORY|O_NOFOLLOW`` from the root's own descriptor, so neither a
planted symlink nor a hostile name can lead outside the tree.

Descriptors of the few directories that are never removed (the root, ``jobs``,
``tmp``, each queue's state directories) are cached; everything else is opened
per operation and closed by the caller (use `Dirs.open` as a context manager).
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time
import typing
import weakref
from collections.abc import Iterator

import attrs

from . import _durable
from .errors import StoreError

Parts = tuple[str, ...]
#: at most this many directory descriptors are kept open
MAX_CACHED = 256
#: each thread keeps the descriptors of this many recently used buckets (see `Dirs.borrow`)
RECENT = 8
#: how long creating a directory retries a miss after EEXIST (see `Dirs._open_or_make`)
MAKE_DIR_TIMEOUT = 5.0
#: filesystems where file content may lag names across hosts
NETWORK_FS = frozenset({"nfs", "nfs4", "cifs", "smb3", "ceph", "glusterfs", "lustre", "9p"})


def _check_component(part: str) -> None:
    if not part or part in (".", "..") or "/" in part or "\0" in part:
        raise StoreError(f"unsafe path component {part!r}")


def _close_all(cache: dict[Parts, int], recents: list[dict[Parts, int]]) -> None:
    """Close every descriptor in `cache` and in each of `recents`, and empty them."""
    for held in (cache, *recents):
        for fd in held.values():
            os.close(fd)
        held.clear()


class Dirs:
    """
    Directory descriptors under one root, reached by the safe walk. Nothing
    touches the disk until `open_root` (so a constructor stays cheap and a read
    of a missing root creates nothing).
    """

    def __init__(
        self,
        root: str,
        *,
        dir_mode: int = _durable.DIR_MODE,
        static: typing.Callable[[Parts], bool] = lambda parts: False,
    ) -> None:
        """`static` says which directories are never removed: their descriptors are kept."""
        self.root_path = os.path.abspath(root)
        self.dir_mode = dir_mode
        self._static = static
        self._cache: dict[Parts, int] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._local = threading.local()
        self._recents: list[dict[Parts, int]] = []
        # A store dropped without close() still gives its descriptors back.
        weakref.finalize(self, _close_all, self._cache, self._recents)

    def open_root(self, *, create: bool) -> bool:
        """
        Open the root (creating it and its parents if `create`); False if it does
        not exist and `create` is false. Safe to call from several threads.
        """
        with self._lock:
            if () in self._cache:
                return True
            if self._closed:
                raise StoreError(f"the store of {self.root_path} is closed")
            try:
                if create:
                    os.makedirs(self.root_path, mode=self.dir_mode, exist_ok=True)
                fd = os.open(self.root_path, _durable.O_DIR)
            except FileNotFoundError:
                if create:
                    raise
                return False
            except NotADirectoryError as exc:
                raise StoreError(f"queue root {self.root_path!r} is not a directory") from exc
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise StoreError(
                        f"queue root {self.root_path!r} is a symlink; use the real path"
                    ) from exc
                raise StoreError(f"cannot open queue root {self.root_path!r}: {exc}") from exc
            self._cache[()] = fd
            return True

    @property
    def root_fd(self) -> int:
        fd = self._cache.get(())
        if fd is None:
            raise StoreError(f"the root {self.root_path} is not open")
        return fd

    def close(self) -> None:
        with self._lock:
            self._closed = True
            _close_all(self._cache, self._recents)

    def borrow(self, parts: Parts, *, create: bool = False) -> int:
        """
        A descriptor of `parts` to use now and not close: a directory that is
        never removed comes from the long-lived cache; any other (a time bucket,
        a day shard) from this thread's few most recently used ones, valid until
        this thread borrows `RECENT` others. Such a directory may have been
        removed since it was opened: on ENOENT or ESTALE through it, `forget` it
        and borrow again.
        """
        fd = self._cache.get(parts)
        if fd is not None:
            return fd
        if self._static(parts):
            return self.cached(parts, create=create)
        recent = self._recent()
        fd = recent.pop(parts, None)
        if fd is None:
            fd = self.open_fd(parts, create=create)
            while len(recent) >= RECENT:
                os.close(recent.pop(next(iter(recent))))
        recent[parts] = fd  # the most recently used go last
        return fd

    def forget(self, parts: Parts) -> None:
        """Drop this thread's borrowed descriptor of `parts` (its directory went away)."""
        fd = self._recent().pop(parts, None)
        if fd is not None:
            os.close(fd)

    def _recent(self) -> dict[Parts, int]:
        recent: dict[Parts, int] | None = getattr(self._local, "recent", None)
        if recent is None:
            recent = self._local.recent = {}
            with self._lock:
                self._recents.append(recent)
        return recent

    def cached(self, parts: Parts, *, create: bool = True) -> int:
        """
        A long-lived descriptor of a directory that is never removed (do not close
        it); created if missing and `create`, else FileNotFoundError.
        """
        fd = self._cache.get(parts)
        if fd is not None:
            return fd
        fd = self.open_fd(parts, create=create)
        with self._lock:
            old = self._cache.setdefault(parts, fd) if not self._closed else fd
        if old != fd:
            os.close(fd)
        return old

    @contextlib.contextmanager
    def open(self, parts: Parts, *, create: bool = False) -> Iterator[int]:
        """A descriptor of `parts` for a with-block; FileNotFoundError if absent."""
        fd = self.open_fd(parts, create=create)
        try:
            yield fd
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def child(self, parent_fd: int, name: str) -> Iterator[int]:
        """A descriptor of the directory `name` under an open one, for a with-block."""
        fd = self.open_child(parent_fd, name)
        try:
            yield fd
        finally:
            os.close(fd)

    def open_child(self, parent_fd: int, name: str, *, create: bool = False) -> int:
        """Open (or create) the directory `name` under `parent_fd`; the caller closes it."""
        _check_component(name)
        return self._step(parent_fd, name, create=create)

    def open_fd(self, parts: Parts, *, create: bool = False) -> int:
        """
        Walk to `parts` one component at a time from the nearest cached ancestor;
        the caller closes the descriptor. FileNotFoundError if a component is
        missing (and not `create`), StoreError if one is not a real directory.
        """
        for part in parts:
            _check_component(part)
        base = len(parts)
        while base and parts[:base] not in self._cache:
            base -= 1
        if not base and () not in self._cache and not self.open_root(create=create):
            raise FileNotFoundError(errno.ENOENT, f"no queue root at {self.root_path}")
        cached = self._cache[parts[:base]]
        if base == len(parts):
            return os.dup(cached)
        fd = self._step(cached, parts[base], create=create)
        self._keep(parts[: base + 1], fd)
        for i in range(base + 1, len(parts)):
            try:
                child = self._step(fd, parts[i], create=create)
            finally:
                os.close(fd)
            fd = child
            self._keep(parts[: i + 1], fd)
        return fd

    def _keep(self, parts: Parts, fd: int) -> None:
        """Keep a copy of `fd` if `parts` is a directory that is never removed."""
        if not self._static(parts) or len(self._cache) >= MAX_CACHED:
            return
        with self._lock:
            if parts not in self._cache and not self._closed:
                self._cache[parts] = os.dup(fd)

    def _step(self, parent: int, part: str, *, create: bool) -> int:
        """Open the directory `part` under `parent` (which stays open)."""
        try:
            try:
                return os.open(part, _durable.O_DIR, dir_fd=parent)
            except FileNotFoundError:
                if not create:
                    raise
                return self._open_or_make(parent, part)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise StoreError(f"refusing to follow {part!r}: not a real directory") from exc
            raise

    def _open_or_make(self, parent: int, part: str) -> int:
        """
        Create `part` unless it exists, and open it. Two GlusterFS clients that
        mkdir one name at the same moment can both get EEXIST with no directory
        left (about 1 round in 250), and after another host's mkdir a lookup can
        still miss: so a miss after EEXIST means "try again", for a bounded
        time, never "someone else made it".
        """
        give_up = time.monotonic() + MAKE_DIR_TIMEOUT
        while True:
            try:
                os.mkdir(part, self.dir_mode, dir_fd=parent)
                _durable.fsync_dir(parent)
            except FileExistsError:
                pass
            except OSError as exc:
                if exc.errno != errno.ESTALE:
                    raise
                # NFS: another host removed `parent` (an emptied bucket) meanwhile;
                # the caller walks again from a directory that is never removed.
                raise FileNotFoundError(errno.ENOENT, f"{part}: its directory is gone") from exc
            try:
                return os.open(part, _durable.O_DIR, dir_fd=parent)
            except FileNotFoundError:
                if time.monotonic() > give_up:
                    raise
                time.sleep(0.005)  # a retry with a deadline, not a wait for someone

    def mkdir_new(self, parent_fd: int, name: str) -> None:
        """Create a directory that must not exist yet (no fsync: the caller batches them)."""
        _check_component(name)
        os.mkdir(name, self.dir_mode, dir_fd=parent_fd)

    def open_or_none(self, parts: Parts) -> typing.ContextManager[int | None]:
        """Like `open`, but None when the directory is not there (any more) or not real."""
        return _OpenOrNone(self, parts)


class _OpenOrNone:
    """``with`` a directory descriptor, or None if the directory is not there (any more)."""

    def __init__(self, dirs: Dirs, parts: Parts) -> None:
        self._cm = dirs.open(parts)
        self._entered = False

    def __enter__(self) -> int | None:
        try:
            fd = self._cm.__enter__()
        except (FileNotFoundError, NotADirectoryError, StoreError):
            return None
        self._entered = True
        return fd

    def __exit__(self, *exc: object) -> None:
        if self._entered:
            self._cm.__exit__(None, None, None)


@attrs.frozen
class Mount:
    """The mount a path is on, from /proc/self/mountinfo."""

    point: str
    fstype: str
    options: tuple[str, ...]  # per-mount and superblock options, as the kernel lists them

    @property
    def is_network(self) -> bool:
        base = self.fstype.split(".")[0]
        return base in NETWORK_FS or base.startswith("fuse")

    def option(self, name: str) -> str | None:
        """The value of ``name=value``, ``""`` for a bare flag, None if absent."""
        for opt in self.options:
            key, _, value = opt.partition("=")
            if key == name:
                return value
        return None


def mount_of(path: str) -> Mount | None:
    """The mount that holds `path` (the longest mount point that is a prefix), if readable."""
    best: Mount | None = None
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.split()
                sep = fields.index("-")
                point = fields[4].replace("\\040", " ")
                if path != point and not path.startswith(point.rstrip("/") + "/"):
                    continue
                if best is None or len(point) >= len(best.point):
                    options = (*fields[5].split(","), *fields[sep + 3].split(","))
                    best = Mount(point, fields[sep + 1], options)
    except (OSError, ValueError, IndexError):
        return None
    return best


def address_space_bytes() -> int | None:
    """This process's address space (VmSize, what RLIMIT_AS limits); None if unreadable."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            pages = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


def filesystem_staleness(mount: Mount | None) -> float:
    """0 s on a local filesystem, 2 s on a network one or an unknown one (content may lag names)."""
    return 2.0 if mount is None or mount.is_network else 0.0
