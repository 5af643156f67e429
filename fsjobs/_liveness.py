"""
Liveness: workers prove they are alive, and the jobs of dead ones are rescued.

A worker OFD-locks ``workers/<id>.lock`` for its whole life and rewrites
``workers/<id>.hb`` (a counter, pwrite + fsync) every lease/6. Another process
that can take the lock knows the worker died (the kernel drops an OFD lock with
its last descriptor); one that sees the counter stand still for a whole lease,
on its own monotonic clock, knows the worker or its host froze. Either way its
running markers are renamed back to ``pending/`` in a new epoch: the rescue
fences the old owner, whose late rename then fails.
"""

from __future__ import annotations

import errno
import logging
import os
import re

from . import _durable, _names, _transitions
from ._names import Marker
from ._transitions import Where
from ._tree import Tree, path, record
from .errors import StoreError
from .journal import RecordType

logger = logging.getLogger("fsjobs.store")


def register(tree: Tree, worker: str) -> tuple[int, int]:
    """
    Create and lock ``workers/<worker>.lock`` for the worker's lifetime, and
    create its heartbeat file. Returns the two descriptors (lock, heartbeat).
    Running markers that already carry this worker id belong to a predecessor
    that died under the same id: they are rescued now, before the first claim.
    """
    _names.check_worker_id(worker)
    tree.for_writing()
    wfd = tree.dirs.cached((_names.WORKERS,))
    fd = _durable.open_lock_file(wfd, f"{worker}.lock", create=True)
    assert fd is not None
    if not _durable.try_lock(fd):
        os.close(fd)
        raise StoreError(f"worker id {worker} is already in use by a live worker")
    hb_fd = -1
    try:
        hb_fd = _durable.open_lock_file(wfd, f"{worker}.hb", create=True) or -1
        beat(hb_fd, 0)
        _durable.fsync_dir(wfd)
    except OSError as exc:
        if hb_fd >= 0:
            os.close(hb_fd)
        _durable.unlink_quiet(wfd, f"{worker}.hb")
        _durable.unlink_quiet(wfd, f"{worker}.lock")
        os.close(fd)
        _durable.raise_full(exc, f"starting worker {worker} (its heartbeat file)")
        raise
    for queue in tree.queues():
        for marker, owner in tree.running(queue):
            if owner == worker and rescue_one(tree, queue, marker, worker, worker):
                logger.warning(
                    "job %s was left running by a predecessor of %s", marker.job_id, worker
                )
    return fd, hb_fd


def beat(hb_fd: int, counter: int) -> None:
    """Rewrite the heartbeat counter in place and fsync it, so other hosts see it move."""
    line = b"%020d\n" % counter
    if os.pwrite(hb_fd, line, 0) != len(line):
        raise StoreError("short write to the heartbeat file")
    os.fsync(hb_fd)


def unregister(tree: Tree, worker: str, lock_fd: int, hb_fd: int) -> None:
    wfd = tree.dirs.cached((_names.WORKERS,))
    _durable.unlink_quiet(wfd, f"{worker}.hb")
    _durable.unlink_quiet(wfd, f"{worker}.lock")
    for fd in (hb_fd, lock_fd):
        try:
            os.close(fd)
        except OSError:  # the mount went away under us: the descriptor is gone anyway
            logger.warning("worker %s: closing its lock or heartbeat failed", worker)


def read_heartbeat(tree: Tree, worker: str) -> int | None:
    """A worker's heartbeat counter (opened afresh: NFS revalidates on open)."""
    with tree.open_or_none((_names.WORKERS,)) as wfd:
        if wfd is None:
            return None
        try:
            data = _durable.read_file(wfd, f"{worker}.hb", 64)
        except (OSError, StoreError):
            return None
    if not re.fullmatch(rb"\d{20}\n", data):
        return None  # not a counter this fsjobs wrote (or a write in progress)
    return int(data)


def alive(tree: Tree, worker: str) -> bool | None:
    """True while `worker` holds its lock; False once it can be taken; None without a lock file."""
    with tree.open_or_none((_names.WORKERS,)) as wfd:
        if wfd is None:
            return None
        try:
            fd = _durable.open_lock_file(wfd, f"{worker}.lock", create=False)
        except StoreError as exc:
            logger.warning("worker %s: %s", worker, exc)
            return None
        if fd is None:
            return None
        try:
            return not _durable.try_lock(fd)
        finally:
            os.close(fd)


class Leases:
    """What this process has seen of other workers' heartbeats, on its own monotonic clock."""

    def __init__(self) -> None:
        #: worker -> (heartbeat value, when this process first saw that value)
        self._seen: dict[str, tuple[int | None, float]] = {}

    def expired(self, tree: Tree, worker: str, lease: float) -> bool:
        """True once `worker`'s heartbeat has not changed for `lease` s, as observed here."""
        value = read_heartbeat(tree, worker)
        now = tree.clock.monotonic()
        seen = self._seen.get(worker)
        if seen is None or seen[0] != value:
            self._seen[worker] = (value, now)
            return False
        return now - seen[1] >= lease


def rescue(
    tree: Tree, leases: Leases, queue: str, me: str, lease: float | None = None
) -> list[str]:
    """
    Put back into pending the running jobs of workers that are gone. Returns
    the job ids. A worker is gone when its lock file can be locked (its
    process died: the kernel dropped the lock), or, with a `lease`, when its
    heartbeat counter has not moved for `lease` seconds of *this* process's
    monotonic clock (a frozen process or host keeps its lock). Rescue bumps
    the epoch, which fences the old owner out of the job.
    """
    if not tree.for_reading() or not tree.writable:
        return []
    by_worker: dict[str, list[Marker]] = {}
    for marker, worker in tree.running(queue):
        if worker != me:
            by_worker.setdefault(worker, []).append(marker)
    rescued: list[str] = []
    wfd = tree.dirs.cached((_names.WORKERS,))
    for worker, markers in by_worker.items():
        try:
            fd = _durable.open_lock_file(wfd, f"{worker}.lock", create=True)
        except StoreError as exc:  # something planted under its name: no lock can prove it alive
            logger.warning("worker %s: %s; its jobs are rescued", worker, exc)
            fd = None
            dead = True
        else:
            assert fd is not None
            try:
                dead = _durable.try_lock(fd)
            except OSError as exc:
                try:
                    os.close(fd)
                except OSError:
                    pass  # GlusterFS may refuse to flush a file another host removed
                if exc.errno not in (errno.ESTALE, errno.ENOENT):
                    raise
                continue  # removed by another host's rescue meanwhile: look again next time
        try:
            if not dead and not (lease is not None and leases.expired(tree, worker, lease)):
                continue  # alive
            logger.warning(
                "worker %s is %s: rescuing %d jobs",
                worker,
                "dead" if dead else f"silent for {lease} s",
                len(markers),
            )
            for marker in markers:
                if rescue_one(tree, queue, marker, worker, me):
                    rescued.append(marker.job_id)
            if dead and fd is not None:
                _durable.unlink_quiet(wfd, f"{worker}.hb")
                _durable.unlink_quiet(wfd, f"{worker}.lock")
        finally:
            if fd is not None:
                os.close(fd)
    return rescued


def rescue_one(tree: Tree, queue: str, marker: Marker, worker: str, me: str) -> bool:
    """Rename one running marker back to pending in a new epoch; True if this call won."""
    new = _transitions.rescued(marker)
    dst = tree.live_dir(queue, Where.PENDING, new)
    if not tree.move(
        tree.running_dir(queue), marker.running_name(worker), dst, new.name, sync=False
    ):
        return False
    logger.warning("rescued job %s from dead worker %s", marker.job_id, worker)
    rec = record(
        RecordType.RESCUED,
        tree.clock.now(),
        worker=worker,
        by=me,
        attempt=new.attempt,
        marker=path(dst, new.name),
    )
    try:
        tree.open_epoch(new.job_id, new.epoch, rec)
    except OSError:
        pass  # the marker moved; the record is history only
    return True


def workers_alive(tree: Tree) -> int:
    """How many workers hold their lock file now."""
    count = 0
    for name in tree.names((_names.WORKERS,)):
        worker, dot, kind = name.rpartition(".")
        if dot and kind == "lock" and alive(tree, worker):
            count += 1
    return count
