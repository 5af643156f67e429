"""
Synchronous file primitives that say exactly what reached the disk.

Every function works relative to a directory file descriptor and never follows
a symlink. Writes check ``os.write``'s return value (a full disk may return a
short write without an error) and undo a partial file or record before raising.
An fsync error is never retried: the data is then of unknown state.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import ctypes.util
import errno
import fcntl
import os
import platform
import stat
import struct
import threading
import time
import typing
from collections.abc import Iterator

from .errors import StoreError, StoreFull

O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
O_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
O_NEW_RW = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
O_APPEND_NEW = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
O_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
FILE_MODE = 0o666  # the umask decides; group-writable roots just set umask 002
DIR_MODE = 0o777


#: filesystems whose syncfs(2) writes back and flushes everything, and reports errors
SYNCFS_FILESYSTEMS = frozenset({"ext4", "xfs", "btrfs", "f2fs"})


def _load_syncfs() -> typing.Callable[[int], int] | None:
    """libc's syncfs, on Linux 5.8 or later (earlier kernels do not report writeback errors)."""
    try:
        major, minor = (int(x) for x in platform.release().split(".")[:2])
        if platform.system() != "Linux" or (major, minor) < (5, 8):
            return None
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.syncfs
    except (ValueError, OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int]
    fn.restype = ctypes.c_int
    return typing.cast(typing.Callable[[int], int], fn)


#: the raw call (None where unusable); the fault tests wrap it like the os functions
_syncfs = _load_syncfs()


def can_syncfs(fstype: str | None) -> bool:
    return _syncfs is not None and fstype in SYNCFS_FILESYSTEMS


def syncfs(fd: int) -> None:
    """
    Make everything written to the filesystem of `fd` durable, files and
    directories alike: one call for a whole batch instead of an fsync per file
    and per directory. Raises OSError as fsync would.
    """
    assert _syncfs is not None
    if _syncfs(fd) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def raise_full(exc: OSError, what: str) -> None:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        raise StoreFull(f"no space left while {what}: {exc}") from exc


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        if n <= 0:  # pragma: no cover - os.write raises instead on Linux
            raise OSError(errno.EIO, "write returned 0")
        view = view[n:]


def write_new(
    dir_fd: int, name: str, data: bytes, *, mode: int = FILE_MODE, sync: bool = True
) -> None:
    """Create `name` (must not exist), write `data`, fsync. On any error, remove it."""
    fd = os.open(name, O_NEW, mode, dir_fd=dir_fd)
    try:
        write_all(fd, data)
        if sync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        unlink_quiet(dir_fd, name)
        raise
    os.close(fd)


def create_empty(dir_fd: int, name: str, *, mode: int = FILE_MODE) -> None:
    """Create an empty file with O_EXCL: exactly one creator wins (FileExistsError otherwise)."""
    os.close(os.open(name, O_NEW, mode, dir_fd=dir_fd))


def append(fd: int, data: bytes, *, sync: bool = True) -> None:
    """
    Append one record at the end of `fd`, then fsync. On failure the file is cut
    back to where it was, so a torn record never stays behind a good one.
    """
    start = os.lseek(fd, 0, os.SEEK_END)
    try:
        write_all(fd, data)
        if sync:
            os.fsync(fd)
    except OSError:
        try:
            os.ftruncate(fd, start)
        except OSError:
            pass  # the reader ignores a bad tail; the next append truncates it
        raise


def fsync_dir(fd: int) -> None:
    os.fsync(fd)


_fsync_pool: concurrent.futures.ThreadPoolExecutor | None = None
_fsync_pool_lock = threading.Lock()
#: at most this many fsyncs run at once for one batch
FSYNC_THREADS = 8


def fsync_all(fds: typing.Sequence[int]) -> None:
    """
    fsync several files or directories, in parallel when there are more than
    two: the filesystem folds concurrent fsyncs into one journal commit, so a
    batch costs about one flush instead of one per file, and unlike syncfs it
    flushes only these files. Raises the first error (every fsync is waited for).
    """
    if len(fds) <= 2:
        for fd in fds:
            os.fsync(fd)
        return
    global _fsync_pool
    with _fsync_pool_lock:
        if _fsync_pool is None:
            _fsync_pool = concurrent.futures.ThreadPoolExecutor(
                FSYNC_THREADS, thread_name_prefix="fsjobs-fsync"
            )
        pool = _fsync_pool
    futures = [pool.submit(os.fsync, fd) for fd in fds]
    errors = [exc for f in futures if (exc := f.exception()) is not None]
    if errors:
        raise errors[0]


def open_regular(dir_fd: int, name: str) -> tuple[int, int]:
    """
    Open a regular file for reading: never a symlink (StoreError), never a FIFO
    or device (opened without blocking, then refused). Returns the descriptor
    (the caller closes it) and the file's size.
    """
    try:
        fd = os.open(name, O_READ, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise StoreError(f"{name!r} is a symlink: refused") from exc
        if exc.errno in (errno.EISDIR, errno.ENXIO):
            raise StoreError(f"{name!r} is not a regular file") from exc
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise StoreError(f"{name!r} is not a regular file")
    return fd, st.st_size


def read_all(fd: int, size: int, limit: int, name: str = "file") -> bytes:
    """
    Read an open file of `size` bytes to its end, at most `limit` bytes
    (StoreError past it). One ``read`` when the size is right: a short read of a
    regular file is its end.
    """
    if size > limit:
        raise StoreError(f"{name!r} is {size} bytes, over the limit of {limit}")
    chunks = []
    total = 0
    want = min(size + 1, limit + 1)
    while chunk := os.read(fd, min(max(want, 1 << 16), limit + 1 - total)):
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            raise StoreError(f"{name!r} grew over the limit of {limit} bytes")
        if len(chunk) < want:
            break  # a short read: the end of the file
        want = 1 << 20
    return b"".join(chunks)


def read_file(dir_fd: int, name: str, limit: int) -> bytes:
    """Read a regular file (no symlink, no fifo), at most `limit` bytes or StoreError."""
    fd, size = open_regular(dir_fd, name)
    try:
        return read_all(fd, size, limit, name)
    finally:
        os.close(fd)


def kind_of(mode: int) -> str:
    """What an ``st_mode`` is, in words: file, directory, symlink, FIFO, socket or device."""
    kinds = (
        (stat.S_ISREG, "file"),
        (stat.S_ISDIR, "directory"),
        (stat.S_ISLNK, "symlink"),
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISSOCK, "socket"),
    )
    return next((name for test, name in kinds if test(mode)), "device")


def unlink_quiet(dir_fd: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except OSError:
        pass


def exists(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    except OSError as exc:
        if exc.errno == errno.ESTALE:
            return exists_after_estale(dir_fd, name)
        raise
    return True


def exists_after_estale(dir_fd: int, name: str, tries: int = 5) -> bool:
    for i in range(tries):
        time.sleep(0.001 * 2**i)
        try:
            os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        except OSError as exc:
            if exc.errno != errno.ESTALE:
                raise
        else:
            return True
    raise StoreError(f"{name!r} stayed ESTALE")


def retry_for(staleness: float) -> Iterator[int]:
    """
    Tries of a lookup that may miss for a while on a network filesystem (content
    lags names): at least three, and until `staleness` seconds have passed.
    """
    deadline = time.monotonic() + staleness  # real time: the lag is real
    tries = 0
    while True:
        yield tries
        tries += 1
        if tries > 2 and time.monotonic() >= deadline:
            return
        time.sleep(min(0.05, 0.002 * 2**tries))


def listdir(dir_fd: int) -> list[str]:
    """
    Names in a directory, without NFS silly-rename leftovers. The listing reads
    through a descriptor of its own: ``os.listdir(fd)`` reads through a ``dup``,
    which shares its position with every other copy of `dir_fd`, so two threads
    listing one cached directory at once would skip or repeat names.

    A directory removed since `dir_fd` was opened has no entries: a local
    filesystem lists it as empty, and so does this where NFS or GlusterFS
    answer ENOENT or ESTALE (another host emptied and removed a time bucket).
    """
    try:
        own = os.open(".", O_DIR, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ESTALE):
            return []
        raise
    try:
        return [n for n in os.listdir(own) if not n.startswith(".nfs")]
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ESTALE):
            return []
        raise
    finally:
        os.close(own)


# OFD locks: owned by the open file description, so closing another descriptor
# of the same file in this process does not drop them (POSIX locks would).
_F_OFD_SETLK = getattr(fcntl, "F_OFD_SETLK", 37)
_F_OFD_GETLK = getattr(fcntl, "F_OFD_GETLK", 36)
_F_OFD_SETLKW = getattr(fcntl, "F_OFD_SETLKW", 38)


def _flock_struct(kind: int) -> bytes:
    return struct.pack("hhqqi4x", kind, os.SEEK_SET, 0, 0, 0)


def try_lock(fd: int) -> bool:
    """Take an exclusive OFD lock on the whole file without waiting; False if held elsewhere."""
    try:
        fcntl.fcntl(fd, _F_OFD_SETLK, _flock_struct(fcntl.F_WRLCK))
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def wait_lock(fd: int) -> None:
    """Take an exclusive OFD lock on the whole file, waiting for it (short sections only)."""
    fcntl.fcntl(fd, _F_OFD_SETLKW, _flock_struct(fcntl.F_WRLCK))


def unlock(fd: int) -> None:
    fcntl.fcntl(fd, _F_OFD_SETLK, _flock_struct(fcntl.F_UNLCK))


def open_lock_file(dir_fd: int, name: str, *, create: bool, mode: int = FILE_MODE) -> int | None:
    """
    Open a lock file read-write (creating it if asked); None if it does not
    exist. StoreError if something else sits under its name (a symlink, a
    directory, a FIFO): a lock file is never followed or waited on.
    """
    flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | (os.O_CREAT if create else 0)
    try:
        fd = os.open(name, flags, mode, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO, errno.EACCES, errno.EPERM):
            raise StoreError(f"{name!r} is not a usable lock file: {exc}") from exc
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise StoreError(f"{name!r} is not a regular file")
    return fd


def rmtree_at(parent_fd: int, name: str) -> None:
    """Remove `name` under `parent_fd` recursively without following symlinks."""
    try:
        fd = os.open(name, O_DIR, dir_fd=parent_fd)
    except OSError as exc:
        if exc.errno in (errno.ENOTDIR, errno.ELOOP):
            os.unlink(name, dir_fd=parent_fd)
            return
        if exc.errno == errno.ENOENT:
            return
        raise
    try:
        for child in os.listdir(fd):
            st = os.stat(child, dir_fd=fd, follow_symlinks=False)
            if st.st_mode & 0o170000 == 0o040000:
                rmtree_at(fd, child)
            else:
                os.unlink(child, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=parent_fd)
