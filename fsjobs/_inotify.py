"""
Linux inotify through ctypes: a descriptor that becomes readable when a watched
directory changes. Wake-ups only: a missed or spurious event costs one listing,
never correctness, so anything that goes wrong here means "no watcher".
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from collections.abc import Iterable

IN_ATTRIB = 0x00000004
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000

#: Someone rang the doorbell (touched the directory), or a name appeared in it.
MASK = IN_ATTRIB | IN_CREATE | IN_MOVED_TO


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.inotify_init1.argtypes = [ctypes.c_int]
        libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _libc()


class Watcher:
    """A non-blocking inotify descriptor; `fd` becomes readable when a watched directory changes."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def drain(self) -> None:
        """Read and drop every pending event (their content does not matter)."""
        try:
            while os.read(self.fd, 65536):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        os.close(self.fd)


def watch(dir_fds: Iterable[int]) -> Watcher | None:
    """
    A watcher of the directories behind `dir_fds` (through /proc/self/fd, so no
    path is looked up again); None where inotify is not available or a watch
    cannot be added.
    """
    if _LIBC is None:
        return None
    fd = _LIBC.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
    if fd < 0:
        return None
    for dir_fd in dir_fds:
        if _LIBC.inotify_add_watch(fd, f"/proc/self/fd/{dir_fd}".encode(), MASK) < 0:
            os.close(fd)
            return None
    return Watcher(fd)
