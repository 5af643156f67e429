"""
The store: the only module that touches files.

Each public method is one synchronous, durable step of the protocol in
``docs/format.md`` (push, claim, finish, promote, rescue, read). The async API
runs each of them in a thread, one hop per operation.

The rules that make it safe with many processes and many hosts:

* State lives in names. A job's status is the directory its marker is in; a
  transition is one ``rename`` (or one ``O_EXCL`` create) that exactly one actor
  wins. Nothing is ever decided by renaming onto an existing name.
* Each change of hands (claim, rescue) bumps the epoch in the marker's name, and
  only the winner of that rename writes the journal segment of that epoch. An
  owner records its outcome in its own segment *before* the rename that
  publishes it, so a rescued ("fenced") owner's late rename fails with ENOENT and
  its writes land in a segment nobody reads as current.
* Everything acknowledged is fsynced: file, then directory.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import logging
import os
import pathlib
import secrets
import stat
import time
import typing
from collections.abc import Iterable, Iterator, Sequence

import attrs

from . import _durable, _ids, _inotify, _names, journal
from ._clock import SYSTEM_CLOCK, Clock, from_ms, to_ms
from ._names import Marker
from ._paths import Dirs, Parts, filesystem_staleness, mount_of
from ._state import Location, Segments, build_state, events_of, spec_in, unreadable_state
from .errors import (
    CorruptRecord,
    FormatError,
    InvalidJob,
    JobNotFound,
    StoreError,
    StoreFull,
    UniqueKeyBusy,
    UniqueKeyConflict,
)
from .journal import JSON, Record, RecordType
from .model import (
    FINAL_DIRS,
    MAX_RESULT_BYTES,
    ErrorInfo,
    Event,
    Job,
    JobState,
    JobStatus,
    job_from_spec,
    spec_of,
)

logger = logging.getLogger(__name__)

INLINE_RESULT_BYTES = 64 * 1024  # larger results go to attempts/<epoch>/result.json
_LIVE_DIRS = (_names.WAITING, _names.PENDING, _names.RUNNING)
#: an empty bucket is removed only once its time is this far past (see `_rmdir_past`)
BUCKET_GRACE_MS = 5_000
#: The state directories that are touched when a job lands in them, to wake idle workers.
_DOORBELLS = (_names.WAITING, _names.PENDING)


def _segment_name(epoch: int) -> str:
    return f"{epoch:06d}.jsonl"


def _now_record(kind: RecordType, at: dt.datetime, **data: JSON) -> Record:
    return Record(type=kind, at=at, data=dict(data))


@attrs.frozen
class Outcome:
    """How an attempt ended, as the worker tells the store."""

    status: JobStatus  # COMPLETED, FAILED, TIMED_OUT, CANCELLED, RETRYING or PENDING (released)
    result: JSON = None
    error: ErrorInfo | None = None
    retry_at_ms: int | None = None


@attrs.define
class Claim:
    """A job this worker won: its marker, its spec and its open journal segment."""

    queue: str
    marker: Marker
    worker: str
    job: Job | None  # None only until the spec is read
    segment_fd: int
    started_at: dt.datetime
    #: False when the job is not to run (its last attempt was lost with a worker)
    runnable: bool = True
    uploads: tuple[str, ...] = ()
    #: the job's journal directory, fsynced once before the outcome is published
    journal_fd: int = -1
    #: someone asked to cancel the job before this claim
    cancel_requested: bool = False
    closed: bool = False

    @property
    def job_id(self) -> str:
        return self.marker.job_id


class Store:
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
        mount = mount_of(self.root)
        self.staleness = filesystem_staleness(mount) if staleness is None else staleness
        self.reserve_bytes = reserve_bytes
        self.unique_wait = unique_wait
        self.durable = durable
        #: push_many makes a batch durable with two syncfs calls, where syncfs is trustworthy
        self.batch_sync = durable and _durable.can_syncfs(mount.fstype if mount else None)
        #: worker -> (heartbeat value, when this process first saw that value)
        self._heartbeats: dict[str, tuple[int | None, float]] = {}
        self._check_format()

    # -- layout -------------------------------------------------------------

    def _qdir(self, queue: str, *rest: str) -> Parts:
        return (_names.QUEUES, queue, *rest)

    def _job_parts(self, job_id: str, *rest: str) -> Parts:
        return (_names.JOBS, _names.shard_of(job_id), job_id, *rest)

    def _marker_parts(self, queue: str, where: str, marker: Marker) -> Parts:
        if where == _names.WAITING:
            return self._qdir(queue, _names.WAITING, *marker.bucket)
        return self._qdir(queue, _names.PENDING, marker.prio_dir, *marker.bucket)

    def _final_parts(self, queue: str, status: JobStatus, job_id: str) -> Parts:
        return self._qdir(queue, status.value, _names.day_of(job_id))

    @staticmethod
    def _path(parts: Parts, name: str) -> str:
        return "/".join((*parts, name))

    def _check_format(self) -> None:
        root = self.dirs.root_fd
        want = journal.dumps({"format": _names.FORMAT_VERSION}).encode() + b"\n"
        try:
            data = self._read_format_file()
        except FileNotFoundError:
            tmp = f"{_names.FORMAT_FILE}.{secrets.token_hex(8)}"
            _durable.write_new(root, tmp, want)
            try:
                os.link(tmp, _names.FORMAT_FILE, src_dir_fd=root, dst_dir_fd=root)
                _durable.fsync_dir(root)
            except FileExistsError:
                pass
            finally:
                _durable.unlink_quiet(root, tmp)
            data = self._read_format_file()
        try:
            marker = journal.loads(data)
            version = marker["format"] if isinstance(marker, dict) else None
        except (ValueError, KeyError) as exc:
            raise FormatError(f"{self.root}/{_names.FORMAT_FILE} is damaged: {exc}") from exc
        if version != _names.FORMAT_VERSION:
            raise FormatError(
                f"{self.root} holds fsjobs format {version!r}; this fsjobs reads format "
                f"{_names.FORMAT_VERSION}: upgrade fsjobs"
            )

    def _read_format_file(self) -> bytes:
        try:
            return _durable.read_file(self.dirs.root_fd, _names.FORMAT_FILE, 4096)
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise FormatError(
                f"{self.root}/{_names.FORMAT_FILE} is not a readable regular file: {exc}"
            ) from exc

    def close(self) -> None:
        self.dirs.close()

    # -- probes (fsjobs doctor) ------------------------------------------------

    def free_bytes(self) -> int:
        st = os.statvfs(self.dirs.root_fd)
        return st.f_bavail * st.f_frsize

    def probe_locks(self) -> bool:
        """
        Whether OFD locks exclude: a lock held through one open file description
        must keep a second one out. Rescue and unique keys rely on it.
        """
        tmp = self.dirs.cached((_names.TMP,))
        name = f"probe-{secrets.token_hex(8)}.lock"
        new_rw = (_durable.O_NEW & ~os.O_WRONLY) | os.O_RDWR
        first = os.open(name, new_rw, _durable.FILE_MODE, dir_fd=tmp)
        try:
            second = os.open(name, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=tmp)
            try:
                return _durable.try_lock(first) and not _durable.try_lock(second)
            finally:
                os.close(second)
        finally:
            os.close(first)
            _durable.unlink_quiet(tmp, name)

    def probe_clock_skew(self) -> float:
        """
        Seconds by which the filesystem's clock (a new file's mtime, set by the
        NFS server) is ahead of this host's; 0 when it falls inside our own window.
        """
        tmp = self.dirs.cached((_names.TMP,))
        name = f"probe-{secrets.token_hex(8)}.clock"
        before = time.time()
        fd = os.open(name, _durable.O_NEW, _durable.FILE_MODE, dir_fd=tmp)
        try:
            os.fsync(fd)
            mtime = os.fstat(fd).st_mtime
        finally:
            os.close(fd)
            _durable.unlink_quiet(tmp, name)
        after = time.time()
        # The kernel stamps files with a coarse clock, up to a tick behind time.time().
        if before - 0.02 <= mtime <= after:
            return 0.0
        return mtime - (before + after) / 2

    # -- push ---------------------------------------------------------------

    def check_space(self) -> None:
        free = self.free_bytes()
        if free < self.reserve_bytes:
            raise StoreFull(
                f"only {free // 1024} KiB free under {self.root}, below the reserve of "
                f"{self.reserve_bytes // 1024} KiB: free space or lower reserve_bytes"
            )

    def push_many(
        self, items: Sequence[tuple[Job, str]], published: list[str] | None = None
    ) -> list[str]:
        """
        Push jobs durably; return their ids (an existing job's id for a unique key
        that is taken). Ids are appended to `published` as each commit lands, so a
        caller can tell what was pushed if this raises part-way.
        """
        published = [] if published is None else published
        self.check_space()
        now = self.clock.now()
        now_ms = to_ms(now)
        staged: list[tuple[Job, str, Marker, str]] = []
        for job, queue in items:
            _names.check_name("queue", queue)
            job_id = _ids.new_job_id(now_ms)
            sched_ms = None if job.scheduled_at is None else to_ms(job.scheduled_at)
            ready_ms = max(now_ms, sched_ms or 0)
            where = _names.WAITING if sched_ms is not None and sched_ms > now_ms else _names.PENDING
            marker = Marker(job.priority, ready_ms, job_id, 0, 0, job.max_attempts)
            staged.append((job, queue, marker, where))
        # 1. Every job folder is durable before any job becomes visible. A batch
        # on a local disk does it with one syncfs instead of four fsyncs per job.
        group = self.batch_sync and len(staged) > 1
        for i, (job, queue, marker, where) in enumerate(staged):
            try:
                self._write_job_folder(job, queue, marker, where, now, sync=not group)
            except BaseException:
                for _job, _queue, written, _where in staged[:i]:
                    self._discard_folder(written.job_id)
                raise
        if group:
            try:
                _durable.syncfs(self.dirs.root_fd)
            except OSError as exc:
                for _job, _queue, marker, _where in staged:
                    self._discard_folder(marker.job_id)
                _durable.raise_full(exc, "pushing jobs")
                raise
        # 2. Commit: one marker per job; directory fsyncs shared per directory. The
        # fsyncs go through the descriptors that created the markers: a worker may
        # claim a job and remove its emptied bucket before we get to them.
        ids: list[str] = []
        by_key: dict[str, str] = {}
        to_sync: dict[Parts, int] = {}
        try:
            for job, queue, marker, where in staged:
                parts = self._marker_parts(queue, where, marker)
                if job.unique_key is not None:
                    if job.unique_key in by_key:
                        ids.append(by_key[job.unique_key])
                        self._discard_folder(marker.job_id)
                        continue
                    job_id = self._push_unique(job.unique_key, queue, parts, marker)
                    by_key[job.unique_key] = job_id
                else:
                    fd = self._create_marker(parts, marker.name)
                    if parts in to_sync or group:
                        os.close(fd)
                    else:
                        to_sync[parts] = fd
                    job_id = marker.job_id
                ids.append(job_id)
                if job_id == marker.job_id:
                    published.append(job_id)
            if group:
                _durable.syncfs(self.dirs.root_fd)
            elif self.durable:
                for fd in to_sync.values():
                    _durable.fsync_dir(fd)
            for queue, where in {(queue, where) for _job, queue, _marker, where in staged}:
                self.ring(queue, where)
        except OSError as exc:
            # A job whose marker exists was published, even if a step after its
            # commit (a directory fsync) failed; only the others are cleaned up.
            for _job, queue, marker, where in staged:
                if marker.job_id in published or marker.job_id in ids:
                    continue
                if self._exists(self._marker_parts(queue, where, marker), marker.name):
                    published.append(marker.job_id)
                else:
                    self._discard_folder(marker.job_id)
            _durable.raise_full(exc, "publishing jobs")
            raise
        finally:
            for fd in to_sync.values():
                os.close(fd)
        return ids

    def _write_job_folder(
        self, job: Job, queue: str, marker: Marker, where: str, now: dt.datetime, *, sync: bool
    ) -> None:
        job_id = marker.job_id
        shard = _names.shard_of(job_id)
        record = _now_record(
            RecordType.PUSHED,
            now,
            id=job_id,
            spec=spec_of(job, queue, now),
            marker=self._path(self._marker_parts(queue, where, marker), marker.name),
        )
        line = journal.encode(record)
        sync = sync and self.durable
        try:
            with self.dirs.open((_names.JOBS, shard), create=True) as shard_fd:
                self.dirs.mkdir_new(shard_fd, job_id)
                with self.dirs.child(shard_fd, job_id) as job_fd:
                    if job.uploads:
                        self._write_uploads(job_fd, job.uploads, sync=sync)
                    self.dirs.mkdir_new(job_fd, _names.JOURNAL)
                    with self.dirs.child(job_fd, _names.JOURNAL) as jfd:
                        _durable.write_new(jfd, _segment_name(0), line, sync=sync)
                        if sync:
                            _durable.fsync_dir(jfd)
                    if sync:
                        _durable.fsync_dir(job_fd)
                if sync:
                    _durable.fsync_dir(shard_fd)
        except OSError as exc:
            self._discard_folder(job_id)
            _durable.raise_full(exc, f"pushing job {job_id}")
            raise

    def _write_uploads(
        self, job_fd: int, uploads: dict[str, bytes | pathlib.Path], *, sync: bool
    ) -> None:
        self.dirs.mkdir_new(job_fd, _names.UPLOADS)
        up_fd = os.open(_names.UPLOADS, _durable.O_DIR, dir_fd=job_fd)
        try:
            for name, blob in uploads.items():
                if isinstance(blob, pathlib.Path):
                    self._copy_upload(up_fd, name, blob, sync=sync)
                else:
                    _durable.write_new(up_fd, name, bytes(blob), sync=sync)
            if sync:
                _durable.fsync_dir(up_fd)
        finally:
            os.close(up_fd)

    def _copy_upload(self, up_fd: int, name: str, source: pathlib.Path, *, sync: bool) -> None:
        fd = os.open(name, _durable.O_NEW, _durable.FILE_MODE, dir_fd=up_fd)
        try:
            with source.open("rb") as src:
                while chunk := src.read(1 << 20):
                    _durable.write_all(fd, chunk)
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)

    def _discard_folder(self, job_id: str) -> None:
        """Remove an unpublished job folder (best effort: fsck collects what remains)."""
        try:
            with self.dirs.open((_names.JOBS, _names.shard_of(job_id))) as shard_fd:
                _durable.rmtree_at(shard_fd, job_id)
        except OSError:
            logger.warning("could not remove unpublished job folder %s", job_id)

    def _create_marker(self, parts: Parts, name: str) -> int:
        """Create a marker with O_EXCL; return a descriptor of its directory (to fsync)."""
        for _ in range(10):
            try:
                with self.dirs.open(parts, create=True) as fd:
                    _durable.create_empty(fd, name)
                    return os.dup(fd)
            except FileNotFoundError:
                continue  # a worker removed the empty bucket between walk and create
            except OSError as exc:
                _durable.raise_full(exc, "publishing a job")
                raise
        raise StoreError(f"could not create {self._path(parts, name)}: bucket keeps vanishing")

    # -- unique keys ----------------------------------------------------------

    def _push_unique(self, key: str, queue: str, parts: Parts, marker: Marker) -> str:
        """
        Publish `marker` unless an unfinished job owns `key`; return the owner's id.

        The push first stages its marker in tmp/ under an OFD lock, then becomes
        the key's newest generation with ``link`` (one winner), then commits by
        renaming the staging marker into place. A rival that finds the newest
        generation's staging marker still locked waits; one that can take the
        lock knows the pusher died, and fences the staging marker by renaming it
        to ``tmp/dead.*`` (one winner against the commit rename).
        """
        tmp_fd = self.dirs.cached((_names.TMP,))
        staging = f"{marker.name}.{secrets.token_hex(6)}"
        _durable.create_empty(tmp_fd, staging)
        lock_fd = os.open(staging, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=tmp_fd)
        try:
            if not _durable.try_lock(lock_fd):  # a fresh random name: nobody else has it
                raise StoreError(f"staging marker {staging} is locked by someone else")
            owner = self._take_key(key, marker.job_id, queue, staging)
            if owner != marker.job_id:
                _durable.unlink_quiet(tmp_fd, staging)
                self._discard_folder(marker.job_id)
                return owner
            if not self._move((_names.TMP,), staging, parts, marker.name, mine=True):
                raise StoreError(f"push of {marker.job_id} was fenced as dead while staging")
            if self.durable:
                _durable.fsync_dir(tmp_fd)
        finally:
            os.close(lock_fd)
        return marker.job_id

    def _take_key(self, key: str, job_id: str, queue: str, staging: str) -> str:
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
        # Real time, not the injected clock: this bounds how long we actually wait.
        deadline = time.monotonic() + self.unique_wait
        with self.dirs.open((_names.UNIQUE, digest), create=True) as key_fd:
            delay = 0.002
            while True:
                gens = sorted(n for n in _durable.listdir(key_fd) if n.isdigit() and len(n) == 10)
                if gens:
                    owner = self._read_generation(key_fd, gens[-1])
                    if owner is not None:
                        owner_id, owner_staging = owner
                        if owner == (job_id, staging):  # our own link (or its retransmission)
                            return job_id
                        state = self._owner_state(owner_id, owner_staging)
                        if state == "live":
                            return owner_id
                        if state == "staging":
                            if time.monotonic() > deadline:
                                raise UniqueKeyBusy(
                                    f"unique key {key!r} is being pushed by another process "
                                    f"(job {owner_id}); try again"
                                )
                            time.sleep(delay)
                            delay = min(delay * 2, 0.1)
                            continue
                gen = f"{int(gens[-1]) + 1 if gens else 1:010d}"
                if self._link_generation(key_fd, gen, key, job_id, queue, staging):
                    return job_id

    def _read_generation(self, key_fd: int, gen: str) -> tuple[str, str] | None:
        for _ in range(50):
            try:
                data = journal.loads(_durable.read_file(key_fd, gen, 64 * 1024))
                if isinstance(data, dict):
                    owner, staging = data.get("id"), data.get("staging")
                    if (
                        isinstance(owner, str)
                        and _ids.is_job_id(owner)
                        and isinstance(staging, str)
                    ):
                        return owner, staging
                logger.warning("unique-key generation %s is malformed; treating it as free", gen)
                return None
            except (ValueError, UnicodeDecodeError):
                time.sleep(0.01)  # content lags the name on network filesystems
            except FileNotFoundError:
                return None
        return None

    def _link_generation(
        self, key_fd: int, gen: str, key: str, job_id: str, queue: str, staging: str
    ) -> bool:
        tmp_fd = self.dirs.cached((_names.TMP,))
        tmp = f"gen.{job_id}.{secrets.token_hex(4)}"
        body = journal.dumps({"id": job_id, "staging": staging, "queue": queue, "key": key})
        _durable.write_new(tmp_fd, tmp, body.encode() + b"\n", sync=self.durable)
        try:
            os.link(tmp, gen, src_dir_fd=tmp_fd, dst_dir_fd=key_fd)
        except FileExistsError:
            # lost the race, unless an NFS retransmission reports our own success
            return self._read_generation(key_fd, gen) == (job_id, staging)
        finally:
            _durable.unlink_quiet(tmp_fd, tmp)
        if self.durable:
            _durable.fsync_dir(key_fd)
        return True

    def _owner_state(self, owner_id: str, staging: str) -> str:
        """'staging' (its push is alive and not committed), 'live' (unfinished) or 'gone'."""
        tmp_fd = self.dirs.cached((_names.TMP,))
        fd = _durable.open_lock_file(tmp_fd, staging, create=False)
        if fd is not None:
            try:
                if not _durable.try_lock(fd):
                    return "staging"
                # The pusher is dead (or has just committed and closed): fence its staging.
                try:
                    os.rename(staging, f"dead.{staging}", src_dir_fd=tmp_fd, dst_dir_fd=tmp_fd)
                except FileNotFoundError:
                    pass
            finally:
                os.close(fd)
        location = self._locate_with_retry(owner_id)
        if location is None or location.where in {s.value for s in JobStatus if s.is_final}:
            return "gone"
        return "live"

    # -- claim ----------------------------------------------------------------

    def ready(self, queue: str, limit: int = 1000) -> list[str]:
        """
        Names at the head of the queue, in run order (at most `limit`). Only the
        head bucket is listed, so the cost does not grow with the backlog; empty
        buckets met on the way are removed.
        """
        names: list[str] = []
        for parts in self._leaf_buckets(self._qdir(queue, _names.PENDING), levels=3):
            with self._open_or_none(parts) as fd:
                if fd is None:
                    continue
                found = sorted(_durable.listdir(fd))
            if found:
                names.extend(self._path(parts, n) for n in found)
                if len(names) >= limit:
                    break
            else:
                self._rmdir_past(parts)
        return names[:limit]

    def head(self, queue: str, limit: int) -> list[str]:
        """`promote` the due waiting jobs, then `ready`: a worker's look at a queue, in one call."""
        self.promote(queue)
        return self.ready(queue, limit)

    def _leaf_buckets(self, top: Parts, levels: int, *, prune: bool = False) -> Iterator[Parts]:
        """
        Depth-first, in byte order, the directories `levels` below `top`. Listings
        are closed before yielding. Empty directories met on the way are removed
        (not `top`): another process that needs one again simply recreates it.
        """
        with self._open_or_none(top) as fd:
            names = [] if fd is None else sorted(_durable.listdir(fd))
        if not names and prune:
            self._rmdir_past(top)
        for name in names:
            if levels == 1:
                yield (*top, name)
            else:
                yield from self._leaf_buckets((*top, name), levels - 1, prune=True)

    def _open_or_none(self, parts: Parts) -> typing.ContextManager[int | None]:
        return self.dirs.open_or_none(parts)

    def _rmdir_past(self, parts: Parts) -> None:
        """
        Remove an empty bucket once its time is well past. A current one may be
        empty only because a pusher has just made it and is about to create its
        marker there: removing it would make that push start over (and, with
        workers woken by every push, lose that race again and again).
        """
        end = _names.bucket_end_ms(parts)
        if end is None or end < to_ms(self.clock.now()) - BUCKET_GRACE_MS:
            self._rmdir_empty(parts)

    def _rmdir_empty(self, parts: Parts) -> None:
        try:
            with self.dirs.open(parts[:-1]) as fd:
                os.rmdir(parts[-1], dir_fd=fd)
        except OSError:
            pass  # not empty, or already gone

    def claim(self, queue: str, path: str, worker: str) -> Claim | None:
        """
        Try to take the job whose pending marker is at `path` (from `ready`).
        None if someone else took it first (or the name is not a job).
        """
        parts = tuple(path.split("/"))
        try:
            marker = Marker.parse(parts[-1])
        except ValueError:
            logger.warning("ignoring a foreign file in the pending tree: %s", path)
            return None
        runnable = marker.attempt < marker.max_attempts
        new = attrs.evolve(
            marker, epoch=marker.epoch + 1, attempt=min(marker.attempt + 1, marker.max_attempts)
        )
        run_parts = self._qdir(queue, _names.RUNNING)
        run_name = new.running_name(worker)
        if not self._move(parts[:-1], parts[-1], run_parts, run_name, mine=True, sync=False):
            return None
        claim = Claim(queue, new, worker, None, -1, self.clock.now(), runnable)
        try:
            with (
                self.dirs.open(self._job_parts(new.job_id)) as job_fd,
                self.dirs.child(job_fd, _names.JOURNAL) as jfd,
            ):
                claim.segment_fd = _open_segment_at(jfd, new.epoch)
                claim.journal_fd = os.dup(jfd)
                record = _now_record(
                    RecordType.CLAIMED,
                    claim.started_at,
                    worker=worker,
                    attempt=new.attempt,
                    marker=self._path(run_parts, run_name),
                )
                self._append(claim, record, sync=False)
                claim.job, claim.uploads = _read_spec(jfd, new.job_id)
                claim.cancel_requested = _durable.exists(job_fd, _names.CANCEL)
        except _CORRUPTION as exc:
            self._abandon(claim, JobStatus.CORRUPT, f"job files unusable: {exc}")
            return None
        except OSError as exc:
            self._abandon(claim, JobStatus.PENDING, f"I/O error after claiming: {exc}")
            _durable.raise_full(exc, f"claiming job {new.job_id}")
            raise
        return claim

    def claim_many(
        self, queue: str, paths: Sequence[str], worker: str, want: int
    ) -> tuple[list[Claim], int, Exception | None]:
        """
        `claim` the listed names in order until `want` are won: the claims, how
        many names were tried, and the error that stopped it early, if any (that
        name's job is back in pending, as `claim` leaves it).
        """
        claims: list[Claim] = []
        for tried, path in enumerate(paths, 1):
            try:
                claim = self.claim(queue, path, worker)
            except OSError as exc:
                return claims, tried, exc
            if claim is not None:
                claims.append(claim)
                if len(claims) >= want:
                    return claims, tried, None
        return claims, len(paths), None

    def _abandon(self, claim: Claim, status: JobStatus, reason: str) -> None:
        """
        After a won claim went wrong: quarantine the job (its files are bad), or,
        after an I/O error, give it back without writing more (the write would
        likely fail again) and without leaving an empty segment behind.
        """
        logger.error("job %s: %s", claim.job_id, reason)
        if status is JobStatus.CORRUPT and claim.segment_fd >= 0:
            self.finish(claim, Outcome(status, error=ErrorInfo("CorruptJob", reason)))
        elif status is JobStatus.CORRUPT:  # no segment of ours to record in: move only
            claim.closed = True
            self._move(
                self._qdir(claim.queue, _names.RUNNING),
                claim.marker.running_name(claim.worker),
                self._final_parts(claim.queue, status, claim.job_id),
                claim.job_id,
            )
        else:
            empty = claim.segment_fd >= 0 and os.fstat(claim.segment_fd).st_size == 0
            self.release(claim)
            if empty:
                with self._open_or_none(self._job_parts(claim.job_id, _names.JOURNAL)) as jfd:
                    if jfd is not None:
                        _durable.unlink_quiet(jfd, _segment_name(claim.marker.epoch))
            self._put_back(claim)

    def _append(self, claim: Claim, record: Record, *, sync: bool = True) -> int:
        line = journal.encode(record)
        _durable.append(claim.segment_fd, line, sync=sync and self.durable)
        return len(line)

    def upload_paths(self, claim: Claim) -> dict[str, pathlib.Path]:
        """Paths of the claimed job's upload blobs (checked to be regular files)."""
        if not claim.uploads:
            return {}
        parts = self._job_parts(claim.job_id, _names.UPLOADS)
        base = pathlib.Path(self.root, *parts)
        with self.dirs.open(parts) as fd:
            for name in claim.uploads:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if not stat.S_ISREG(st.st_mode):
                    raise StoreError(f"upload {name!r} of job {claim.job_id} is not a regular file")
        return {name: base / name for name in claim.uploads}

    def read_upload(self, claim: Claim, name: str) -> bytes:
        """The bytes of one of the claimed job's uploads."""
        if name not in claim.uploads:
            raise KeyError(name)
        with self.dirs.open(self._job_parts(claim.job_id, _names.UPLOADS)) as fd:
            return _durable.read_file(fd, name, 1 << 62)

    def output_dir(self, claim: Claim) -> pathlib.Path:
        """This attempt's own output directory, created on first use."""
        parts = self._outputs_parts(claim.job_id, claim.marker.epoch)
        with self.dirs.open(parts, create=True):
            pass
        return pathlib.Path(self.root, *parts)

    def progress(self, claim: Claim, percent: float | None, message: str | None) -> None:
        if claim.closed:
            return
        self._append(
            claim,
            _now_record(RecordType.PROGRESS, self.clock.now(), percent=percent, message=message),
            sync=False,
        )

    def finish(self, claim: Claim, outcome: Outcome) -> bool:
        """
        Record the outcome in the claim's own segment, then publish it with one
        rename. False if the claim was fenced (rescued while we ran): then nothing
        is published and the result is discarded. If the outcome cannot be
        recorded (a full disk, an I/O error), the job goes back to pending, its
        attempt given back, and the error is raised.
        """
        (result,) = self.finish_many([(claim, outcome)])
        if isinstance(result, BaseException):
            raise result
        return result

    def finish_many(self, items: Sequence[tuple[Claim, Outcome]]) -> list[bool | Exception]:
        """
        `finish` for several claims at once, as a group commit: every outcome is
        recorded durably in its own segment, then every marker is renamed, then
        the renames are made durable: one fsync per target directory, or on a
        local disk one syncfs for the records and one for the renames.
        One result per item, in order: won, fenced (False), or the error.
        """
        group = self.batch_sync and len(items) > 1
        results: list[bool | Exception | None] = [None] * len(items)
        recorded: list[tuple[int, Parts, str]] = []
        for i, (claim, outcome) in enumerate(items):
            if claim.closed:
                results[i] = False
                continue
            try:
                dst_parts, dst_name, record = self._finish_record(claim, outcome)
                self._append(claim, record, sync=not group)
                if self.durable and not group and claim.journal_fd >= 0:
                    _durable.fsync_dir(claim.journal_fd)  # the segment's own name, made at claim
            except Exception as exc:
                results[i] = self._finish_failed(claim, exc)
                continue
            recorded.append((i, dst_parts, dst_name))
        if group and recorded:
            try:
                _durable.syncfs(self.dirs.root_fd)
            except OSError as exc:
                for i, _, _ in recorded:
                    results[i] = self._finish_failed(items[i][0], exc)
                recorded = []
        moved: dict[Parts, list[int]] = {}
        for i, dst_parts, dst_name in recorded:
            claim = items[i][0]
            try:
                running = self._qdir(claim.queue, _names.RUNNING)
                src = claim.marker.running_name(claim.worker)
                won = self._move(running, src, dst_parts, dst_name, sync=False)
            except Exception as exc:
                results[i] = self._finish_failed(claim, exc)
                continue
            self.release(claim)
            if won:
                moved.setdefault(dst_parts, []).append(i)
            else:
                logger.warning(
                    "job %s was rescued while it ran (fenced): its outcome is discarded",
                    claim.job_id,
                )
            results[i] = won
        self._sync_moved(moved, results, group)
        return [False if r is None else r for r in results]

    def _finish_failed(self, claim: Claim, exc: Exception) -> Exception:
        """The outcome could not be recorded: the job goes back to pending."""
        self.release(claim)
        self._put_back(claim)
        return exc

    def _sync_moved(
        self, moved: dict[Parts, list[int]], results: list[bool | Exception | None], group: bool
    ) -> None:
        """Make the finishing renames durable; an error is the result of each job it covers."""
        if not self.durable or not moved:
            return
        if group:
            try:
                _durable.syncfs(self.dirs.root_fd)
            except OSError as exc:
                for i in (i for indexes in moved.values() for i in indexes):
                    results[i] = exc
            return
        for parts, indexes in moved.items():
            try:
                with self.dirs.open(parts) as fd:
                    _durable.fsync_dir(fd)
            except FileNotFoundError:
                pass  # emptied and removed since: those markers have moved on already
            except OSError as exc:
                for i in indexes:
                    results[i] = exc

    def _finish_record(self, claim: Claim, outcome: Outcome) -> tuple[Parts, str, Record]:
        """Where the marker goes for `outcome`, and the terminal record that says so."""
        marker, queue, status = claim.marker, claim.queue, outcome.status
        data: dict[str, JSON] = {"attempt": marker.attempt}
        if outcome.error is not None:
            data["error"] = {
                "type": outcome.error.type,
                "message": outcome.error.message,
                "traceback": outcome.error.traceback,
            }
        if status is JobStatus.RETRYING:
            assert outcome.retry_at_ms is not None
            target = attrs.evolve(marker, ready_ms=outcome.retry_at_ms)
            dst_parts, dst_name = self._marker_parts(queue, _names.WAITING, target), target.name
            kind = RecordType.RETRYING
            data["retry_at"] = journal.format_time(from_ms(outcome.retry_at_ms))
        elif status is JobStatus.PENDING:
            target = attrs.evolve(marker, attempt=marker.attempt - 1)
            dst_parts, dst_name = self._marker_parts(queue, _names.PENDING, target), target.name
            kind = RecordType.RELEASED
            data["attempt"] = target.attempt
        else:
            dst_parts = self._final_parts(queue, status, marker.job_id)
            dst_name = marker.job_id
            kind = RecordType(status.value)
            data["max_attempts"] = marker.max_attempts
            if status is JobStatus.COMPLETED:
                self._store_result(claim, outcome.result, data)
        data["marker"] = self._path(dst_parts, dst_name)
        return dst_parts, dst_name, _now_record(kind, self.clock.now(), **data)

    def _put_back(self, claim: Claim) -> None:
        """Rename a claim's marker back to pending, the attempt given back (best effort)."""
        back = attrs.evolve(claim.marker, attempt=claim.marker.attempt - 1)
        try:
            self._move(
                self._qdir(claim.queue, _names.RUNNING),
                claim.marker.running_name(claim.worker),
                self._marker_parts(claim.queue, _names.PENDING, back),
                back.name,
            )
        except OSError:
            logger.exception("job %s: could not put it back; rescue will", claim.job_id)

    def _store_result(self, claim: Claim, result: JSON, data: dict[str, JSON]) -> None:
        encoded = journal.dumps(result).encode()
        if len(encoded) > MAX_RESULT_BYTES:
            raise ValueError(f"result is {len(encoded)} bytes; the limit is {MAX_RESULT_BYTES}")
        if len(encoded) <= INLINE_RESULT_BYTES:
            data["result"] = result
            return
        epoch = f"{claim.marker.epoch:06d}"
        with self.dirs.open(
            self._job_parts(claim.job_id, _names.ATTEMPTS, epoch), create=True
        ) as fd:
            _durable.write_new(fd, "result.json", encoded, sync=self.durable)
            if self.durable:
                _durable.fsync_dir(fd)
        data["result_file"] = f"{_names.ATTEMPTS}/{epoch}/result.json"

    def release(self, claim: Claim) -> None:
        if not claim.closed:
            claim.closed = True
            for fd in (claim.segment_fd, claim.journal_fd):
                if fd >= 0:
                    os.close(fd)

    def _move(
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
        try:
            with self.dirs.open(src_parts) as src_fd:
                for _ in range(10):
                    try:
                        with self.dirs.open(dst_parts, create=True) as dst_fd:
                            os.rename(src, dst, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
                            if sync and self.durable:
                                _durable.fsync_dir(dst_fd)
                        if len(dst_parts) > 2 and dst_parts[2] in _DOORBELLS:
                            self.ring(dst_parts[1], dst_parts[2])
                        return True
                    except FileNotFoundError:
                        if _durable.exists(src_fd, src):
                            continue  # the target bucket vanished under us: recreate it
                        return mine and self._exists(dst_parts, dst)
        except FileNotFoundError:
            return mine and self._exists(dst_parts, dst)
        raise StoreError(f"could not move {src} into {'/'.join(dst_parts)}")

    def _exists(self, parts: Parts, name: str) -> bool:
        try:
            with self.dirs.open(parts) as fd:
                return _durable.exists(fd, name)
        except FileNotFoundError:
            return False

    # -- wake-ups ---------------------------------------------------------------

    def ring(self, queue: str, where: str) -> None:
        """
        Touch ``queues/<queue>/<where>/`` so that idle workers watching it with
        inotify wake at once (same host), and pollers on other hosts see its
        times change. Best effort: a wake-up lost here is found by the next poll.
        """
        try:
            os.utime(self.dirs.cached(self._qdir(queue, where)))
        except OSError:
            pass

    def watch(self, queues: Iterable[str]) -> _inotify.Watcher | None:
        """An inotify descriptor that wakes on `ring` (and new buckets); None if unavailable."""
        return _inotify.watch(
            self.dirs.cached(self._qdir(q, where)) for q in queues for where in _DOORBELLS
        )

    # -- promotion and rescue --------------------------------------------------

    def promote(self, queue: str) -> int:
        """Move every waiting job that is due into pending; return how many moved."""
        now_ms = to_ms(self.clock.now())
        moved = 0
        waiting_parts = self._qdir(queue, _names.WAITING)
        waiting = self.dirs.cached(waiting_parts)
        for hour in sorted(_durable.listdir(waiting)):
            if hour > _names.bucket_of(now_ms)[0]:
                break
            with self._open_or_none((*waiting_parts, hour)) as hfd:
                seconds = [] if hfd is None else sorted(_durable.listdir(hfd))
            for sec in seconds:
                try:
                    if _names.bucket_start_ms(hour, sec) > now_ms:
                        break
                except ValueError:
                    continue
                moved += self._promote_bucket(queue, (*waiting_parts, hour, sec), now_ms)
            if not seconds:
                self._rmdir_past((*waiting_parts, hour))
        return moved

    def _promote_bucket(self, queue: str, parts: Parts, now_ms: int) -> int:
        moved = 0
        with self._open_or_none(parts) as fd:
            names = [] if fd is None else sorted(_durable.listdir(fd))
        for name in names:
            try:
                marker = Marker.parse(name)
            except ValueError:
                continue
            if marker.ready_ms > now_ms:
                continue
            pending = self._marker_parts(queue, _names.PENDING, marker)
            if self._move(parts, name, pending, name, sync=False):
                moved += 1
        self._rmdir_past(parts)
        return moved

    def next_due_ms(self, queue: str) -> int | None:
        """When the earliest waiting job of `queue` is due (None if none waits)."""
        for parts in self._leaf_buckets(self._qdir(queue, _names.WAITING), levels=2):
            with self._open_or_none(parts) as fd:
                names = [] if fd is None else _durable.listdir(fd)
            due = []
            for name in names:
                try:
                    due.append(Marker.parse(name).ready_ms)
                except ValueError:
                    continue
            if due:
                return min(due)
        return None

    def register_worker(self, worker: str) -> tuple[int, int]:
        """
        Create and lock ``workers/<worker>.lock`` for the worker's lifetime, and
        create its heartbeat file. Returns the two descriptors (lock, heartbeat).
        """
        _names.check_worker_id(worker)
        wfd = self.dirs.cached((_names.WORKERS,))
        fd = _durable.open_lock_file(wfd, f"{worker}.lock", create=True)
        assert fd is not None
        if not _durable.try_lock(fd):
            os.close(fd)
            raise StoreError(f"worker id {worker} is already in use")
        hb_fd = -1
        try:
            hb_fd = _durable.open_lock_file(wfd, f"{worker}.hb", create=True) or -1
            self.beat(hb_fd, 0)
            _durable.fsync_dir(wfd)
        except OSError as exc:
            if hb_fd >= 0:
                os.close(hb_fd)
            _durable.unlink_quiet(wfd, f"{worker}.hb")
            _durable.unlink_quiet(wfd, f"{worker}.lock")
            os.close(fd)
            _durable.raise_full(exc, f"starting worker {worker} (its heartbeat file)")
            raise
        return fd, hb_fd

    @staticmethod
    def beat(hb_fd: int, counter: int) -> None:
        """Rewrite the heartbeat counter in place and fsync it, so other hosts see it move."""
        line = b"%020d\n" % counter
        if os.pwrite(hb_fd, line, 0) != len(line):
            raise StoreError("short write to the heartbeat file")
        os.fsync(hb_fd)

    def unregister_worker(self, worker: str, lock_fd: int, hb_fd: int) -> None:
        wfd = self.dirs.cached((_names.WORKERS,))
        _durable.unlink_quiet(wfd, f"{worker}.hb")
        _durable.unlink_quiet(wfd, f"{worker}.lock")
        for fd in (hb_fd, lock_fd):
            try:
                os.close(fd)
            except OSError:  # the mount went away under us: the descriptor is gone anyway
                logger.warning("worker %s: closing its lock or heartbeat failed", worker)

    def read_heartbeat(self, worker: str) -> int | None:
        """A worker's heartbeat counter (opened afresh: NFS revalidates on open)."""
        wfd = self.dirs.cached((_names.WORKERS,))
        try:
            data = _durable.read_file(wfd, f"{worker}.hb", 64)
        except (OSError, StoreError):
            return None
        try:
            return int(data.strip() or b"-1")
        except ValueError:
            return None

    def running(self, queue: str) -> list[tuple[Marker, str]]:
        """The running markers of `queue` as (marker, worker)."""
        out = []
        with self._open_or_none(self._qdir(queue, _names.RUNNING)) as fd:
            names = [] if fd is None else _durable.listdir(fd)
        for name in names:
            try:
                out.append(Marker.parse_running(name))
            except ValueError:
                continue
        return out

    def rescue(self, queue: str, me: str, lease: float | None = None) -> list[str]:
        """
        Put back into pending the running jobs of workers that are gone. Returns
        the job ids. A worker is gone when its lock file can be locked (its
        process died: the kernel dropped the lock), or, with a `lease`, when its
        heartbeat counter has not moved for `lease` seconds of *this* process's
        monotonic clock (a frozen process or host keeps its lock). Rescue bumps
        the epoch, which fences the old owner out of the job.
        """
        by_worker: dict[str, list[Marker]] = {}
        for marker, worker in self.running(queue):
            if worker != me:
                by_worker.setdefault(worker, []).append(marker)
        rescued: list[str] = []
        wfd = self.dirs.cached((_names.WORKERS,))
        for worker, markers in by_worker.items():
            fd = _durable.open_lock_file(wfd, f"{worker}.lock", create=True)
            if fd is None:
                continue
            try:
                dead = _durable.try_lock(fd)
                if not dead and not (lease is not None and self._lease_expired(worker, lease)):
                    continue  # alive
                logger.warning(
                    "worker %s is %s: rescuing %d jobs",
                    worker,
                    "dead" if dead else f"silent for {lease} s",
                    len(markers),
                )
                for marker in markers:
                    if self._rescue_one(queue, marker, worker, me):
                        rescued.append(marker.job_id)
                if dead:
                    _durable.unlink_quiet(wfd, f"{worker}.hb")
                    _durable.unlink_quiet(wfd, f"{worker}.lock")
            finally:
                os.close(fd)
        return rescued

    def _lease_expired(self, worker: str, lease: float) -> bool:
        """True once `worker`'s heartbeat has not changed for `lease` s, as observed here."""
        value = self.read_heartbeat(worker)
        now = self.clock.monotonic()
        seen = self._heartbeats.get(worker)
        if seen is None or seen[0] != value:
            self._heartbeats[worker] = (value, now)
            return False
        return now - seen[1] >= lease

    def _rescue_one(self, queue: str, marker: Marker, worker: str, me: str) -> bool:
        new = attrs.evolve(marker, epoch=marker.epoch + 1)
        dst_parts = self._marker_parts(queue, _names.PENDING, new)
        running = self._qdir(queue, _names.RUNNING)
        if not self._move(running, marker.running_name(worker), dst_parts, new.name, sync=False):
            return False
        logger.warning("rescued job %s from dead worker %s", marker.job_id, worker)
        try:
            with self.dirs.open(self._job_parts(new.job_id, _names.JOURNAL)) as jfd:
                fd = _open_segment_at(jfd, new.epoch)
        except OSError:
            return True  # the marker moved; the record is history only
        try:
            record = _now_record(
                RecordType.RESCUED,
                self.clock.now(),
                worker=worker,
                by=me,
                attempt=new.attempt,
                marker=self._path(dst_parts, new.name),
            )
            _durable.append(fd, journal.encode(record), sync=self.durable)
        finally:
            os.close(fd)
        return True

    # -- reading ----------------------------------------------------------------

    def _segments(self, job_id: str) -> list[tuple[int, journal.ReadResult]]:
        try:
            with self.dirs.open(self._job_parts(job_id, _names.JOURNAL)) as jfd:
                epochs = sorted(
                    int(n[:6])
                    for n in _durable.listdir(jfd)
                    if len(n) == 12 and n[:6].isdigit() and n.endswith(".jsonl")
                )
                out = []
                for epoch in epochs:
                    try:
                        data = _durable.read_file(jfd, _segment_name(epoch), 64 * 1024 * 1024)
                    except (StoreError, OSError) as exc:
                        logger.warning("job %s: segment %d unreadable: %s", job_id, epoch, exc)
                        data = b""
                    out.append((epoch, journal.parse(data)))
                return out
        except (FileNotFoundError, StoreError):
            return []

    def _locate(
        self, job_id: str, queue: str, segments: list[tuple[int, journal.ReadResult]]
    ) -> Location | None:
        """Where the job's marker is now: first where the journal says, then the likely places."""
        for _, seg in reversed(segments):
            named = next((r for r in reversed(seg.records) if "marker" in r.data), None)
            if named is not None:
                found = self._check_marker_path(named.get_str("marker") or "", queue, job_id)
                if found is not None:
                    return found
                break
        for status in FINAL_DIRS:
            if self._exists(self._final_parts(queue, status, job_id), job_id):
                return Location(status.value)
        for marker, worker in self.running(queue):
            if marker.job_id == job_id:
                return Location(_names.RUNNING, marker, worker)
        return None

    def _check_marker_path(self, path: str, queue: str, job_id: str) -> Location | None:
        parts = tuple(path.split("/"))
        if len(parts) < 4 or parts[0] != _names.QUEUES or parts[1] != queue:
            return None
        where = parts[2]
        try:
            if where == _names.RUNNING:
                marker, worker = Marker.parse_running(parts[-1])
                return (
                    Location(where, marker, worker) if self._exists(parts[:-1], parts[-1]) else None
                )
            if where in (_names.WAITING, _names.PENDING):
                marker = Marker.parse(parts[-1])
                if marker.job_id != job_id:
                    return None
                for w in (_names.WAITING, _names.PENDING):  # promotion keeps the name
                    if self._exists(self._marker_parts(queue, w, marker), marker.name):
                        return Location(w, marker)
                return None
            status = JobStatus(where)
        except ValueError:
            return None
        if parts[-1] == job_id and self._exists(parts[:-1], parts[-1]):
            return Location(status.value)
        return None

    def _scan_live(self, job_id: str, queue: str) -> Location | None:
        """The slow path: walk the queue's waiting and pending trees for the job."""
        for where, levels in ((_names.WAITING, 2), (_names.PENDING, 3)):
            for parts in self._leaf_buckets(self._qdir(queue, where), levels):
                with self._open_or_none(parts) as fd:
                    names = [] if fd is None else _durable.listdir(fd)
                for name in names:
                    if f".{job_id}." in name:
                        try:
                            return Location(where, Marker.parse(name))
                        except ValueError:
                            continue
        return None

    def _locate_with_retry(self, job_id: str) -> Location | None:
        try:
            state = self.get(job_id)
        except JobNotFound:
            return None
        return Location(state.status.value)

    def get(self, job_id: str) -> JobState:
        """The current state of a job; JobNotFound if no published job has this id."""
        found = self._find(job_id)
        if isinstance(found, JobState):
            return found
        spec, segments, location = found
        queue = typing.cast(str, spec["queue"])
        read_result = functools.partial(self._read_result_file, job_id)
        outputs = functools.partial(self._list_outputs, job_id)
        return build_state(job_id, queue, spec, segments, location, read_result, outputs)

    def history(self, job_id: str) -> list[Event]:
        """Every record of the job's journal, oldest first; JobNotFound if there is no such job."""
        found = self._find(job_id)
        return [] if isinstance(found, JobState) else events_of(found[1])

    def _outputs_parts(self, job_id: str, epoch: int) -> Parts:
        return self._job_parts(job_id, _names.ATTEMPTS, f"{epoch:06d}", _names.OUTPUTS)

    def _list_outputs(self, job_id: str, epoch: int) -> tuple[str, ...]:
        """The regular files an attempt wrote into its output directory."""
        with self._open_or_none(self._outputs_parts(job_id, epoch)) as fd:
            if fd is None:
                return ()
            names = []
            for name in _durable.listdir(fd):
                try:
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if stat.S_ISREG(st.st_mode) and _names.NAME_RE.fullmatch(name):
                    names.append(name)
        return tuple(sorted(names))

    def read_output(self, job_id: str, name: str) -> bytes:
        """The bytes of one of the job's output files (those `JobState.outputs` lists)."""
        _names.check_name("output", name)
        state = self.get(job_id)
        if name not in state.outputs:
            raise FileNotFoundError(f"job {job_id} has no output named {name!r}")
        found = self._find(job_id)
        assert not isinstance(found, JobState)
        epochs = [
            e for e, seg in found[1] if any(r.type is RecordType.CLAIMED for r in seg.records)
        ]
        with self.dirs.open(self._outputs_parts(job_id, epochs[-1])) as fd:
            return _durable.read_file(fd, name, 1 << 62)

    def _find(self, job_id: str) -> tuple[dict[str, JSON], Segments, Location] | JobState:
        """
        The job's spec, journal and marker location; or, for a job whose own files
        are unreadable, what its final directory says. JobNotFound if neither.
        """
        _names.check_job_id(job_id)
        deadline = time.monotonic() + self.staleness  # real time: content lag is real
        tries = 0
        while True:
            segments = self._segments(job_id)
            spec = spec_in(segments)
            if spec is not None:
                queue = typing.cast(str, spec["queue"])
                location = self._locate(job_id, queue, segments)
                if location is None and tries >= 2 and time.monotonic() >= deadline:
                    location = self._scan_live(job_id, queue)
                    if location is not None:
                        logger.info("job %s found by a slow scan", job_id)
                if location is not None:
                    return spec, segments, location
            elif tries >= 2:
                # No readable spec: the job may have been quarantined for exactly that.
                final = self._find_final(job_id)
                if final is not None:
                    return unreadable_state(job_id, *final)
            tries += 1
            if tries > 2 and time.monotonic() >= deadline:
                raise JobNotFound(job_id)
            time.sleep(min(0.05, 0.002 * 2**tries))

    # -- cancel -------------------------------------------------------------------

    def cancel(self, job_id: str) -> JobStatus:
        """
        Cancel a job. A waiting or pending job is renamed straight into
        ``cancelled/`` (one winner against a claim) and never runs. For a running
        job, a ``cancel`` file asks its owner to stop (it checks at claim and while
        it runs); RUNNING is returned. A final job is left as it is; its status is
        returned.
        """
        for _ in range(100):
            found = self._find(job_id)
            if isinstance(found, JobState):
                return found.status
            spec, segments, location = found
            queue = typing.cast(str, spec["queue"])
            marker = location.marker
            if location.where == _names.RUNNING:
                self._request_cancel(job_id)
                return JobStatus.RUNNING
            if location.where == JobStatus.HELD.value:
                if self._end_hold(queue, job_id, segments, JobStatus.CANCELLED):
                    return JobStatus.CANCELLED
                continue
            if marker is None:
                return JobStatus(location.where)
            src = self._marker_parts(queue, location.where, marker)
            dst = self._final_parts(queue, JobStatus.CANCELLED, job_id)
            if self._move(src, marker.name, dst, job_id):
                cancelled = attrs.evolve(marker, epoch=marker.epoch + 1)
                self._open_epoch(cancelled, RecordType.CANCELLED, self._path(dst, job_id))
                return JobStatus.CANCELLED
            # Claimed (or promoted) meanwhile: look again.
        raise StoreError(f"job {job_id} kept moving while being cancelled")

    # -- hold -----------------------------------------------------------------------

    def hold(self, job_id: str) -> JobStatus:
        """
        Park a waiting or pending job in ``held/``: one rename, won against any
        claim. It keeps its unique key and does not run until `release_hold`.
        Returns HELD, or the status of a job that could not be held (running or final).
        """
        for _ in range(100):
            found = self._find(job_id)
            if isinstance(found, JobState):
                return found.status
            spec, _segments, location = found
            marker = location.marker
            if location.where not in (_names.WAITING, _names.PENDING) or marker is None:
                return _status_at(location)
            queue = typing.cast(str, spec["queue"])
            dst = self._final_parts(queue, JobStatus.HELD, job_id)
            src = self._marker_parts(queue, location.where, marker)
            if self._move(src, marker.name, dst, job_id):
                held = attrs.evolve(marker, epoch=marker.epoch + 1)
                path = self._path(dst, job_id)
                self._open_epoch(held, RecordType.HELD, path, held_marker=marker.name)
                return JobStatus.HELD
        raise StoreError(f"job {job_id} kept moving while being held")

    def release_hold(self, job_id: str) -> JobStatus | None:
        """Put a held job back where it was held from: its new status; None if it was not held."""
        for _ in range(100):
            found = self._find(job_id)
            if isinstance(found, JobState):
                return None
            spec, segments, location = found
            if location.where != JobStatus.HELD.value:
                return None
            queue = typing.cast(str, spec["queue"])
            status = self._end_hold(queue, job_id, segments, None)
            if status is not None:
                return status
        raise StoreError(f"job {job_id} kept moving while being released")

    def _end_hold(
        self, queue: str, job_id: str, segments: Segments, to: JobStatus | None
    ) -> JobStatus | None:
        """
        Move a held job to the final status `to`, or (None) back to where it was
        held from. Returns its new status; None if someone else moved it first.
        """
        held = next(
            (
                r
                for _, seg in reversed(segments)
                for r in reversed(seg.records)
                if r.type is RecordType.HELD
            ),
            None,
        )
        try:
            old = Marker.parse(held.get_str("held_marker") or "") if held is not None else None
        except ValueError:
            old = None
        if old is None or old.job_id != job_id:
            raise StoreError(f"held job {job_id} has no readable 'held' record")
        new = attrs.evolve(old, epoch=max(e for e, _ in segments) + 1)
        if to is not None:
            dst, name, kind, status = self._final_parts(queue, to, job_id), job_id, to.value, to
        else:
            where = _names.PENDING if new.ready_ms <= to_ms(self.clock.now()) else _names.WAITING
            dst, name, kind = self._marker_parts(queue, where, new), new.name, "released"
            status = _status_at(Location(where, new))
        held_at = self._final_parts(queue, JobStatus.HELD, job_id)
        if not self._move(held_at, job_id, dst, name):
            return None
        self._open_epoch(new, RecordType(kind), self._path(dst, name))
        return status

    def _request_cancel(self, job_id: str) -> None:
        with self.dirs.open(self._job_parts(job_id)) as fd:
            try:
                _durable.create_empty(fd, _names.CANCEL)
            except FileExistsError:
                return
            if self.durable:
                _durable.fsync_dir(fd)

    # -- retry --------------------------------------------------------------------

    def retry(self, job_id: str, more_attempts: int = 1) -> None:
        """
        Re-open a failed, timed-out or cancelled job as a new epoch with
        `more_attempts` more attempts. One rename out of its final directory
        decides among concurrent retries. A job with a unique key first takes the
        key back (UniqueKeyConflict if another unfinished job holds it; the job
        then stays final). A retry never deletes a job: if it fails, the job is
        still final.
        """
        if isinstance(more_attempts, bool) or not 1 <= more_attempts <= _names.MAX_ATTEMPTS_LIMIT:
            raise InvalidJob(f"more_attempts must be 1..{_names.MAX_ATTEMPTS_LIMIT}")
        found = self._find(job_id)
        if isinstance(found, JobState):
            raise InvalidJob(
                f"job {job_id} is {found.status.value} and cannot be read: not retried"
            )
        spec, segments, location = found
        queue = typing.cast(str, spec["queue"])
        status = JobStatus(location.where) if location.where in _FINAL_VALUES else None
        if status not in _RETRYABLE:
            raise InvalidJob(
                f"job {job_id} is {location.where}: only failed, timed-out or cancelled jobs "
                "can be retried"
            )
        assert status is not None
        state = build_state(job_id, queue, spec, segments, location, lambda _: None)
        epoch = max(e for e, _ in segments) + 1
        new = Marker(
            state.priority,
            to_ms(self.clock.now()),
            job_id,
            epoch,
            state.attempts,
            min(state.attempts + more_attempts, _names.MAX_ATTEMPTS_LIMIT),
        )
        final = self._final_parts(queue, status, job_id)
        tmp_fd = self.dirs.cached((_names.TMP,))
        staging = f"retry.{job_id}.{secrets.token_hex(6)}"
        _durable.create_empty(tmp_fd, staging)
        lock_fd = os.open(staging, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=tmp_fd)
        try:
            if not _durable.try_lock(lock_fd):
                raise StoreError(f"staging file {staging} is locked by someone else")
            key = state.unique_key
            if key is not None:
                owner = self._take_key(key, job_id, queue, staging)
                if owner != job_id:
                    raise UniqueKeyConflict(
                        f"job {job_id} was not retried: its unique key {key!r} now belongs to "
                        f"unfinished job {owner}"
                    )
            self._retire_cancel_request(job_id, epoch)
            pending = self._marker_parts(queue, _names.PENDING, new)
            if not self._move(final, job_id, pending, new.name):
                logger.info("job %s was retried (or removed) by someone else meanwhile", job_id)
                return
            self._open_epoch(new, RecordType.RETRIED, self._path(pending, new.name))
        finally:
            _durable.unlink_quiet(tmp_fd, staging)
            os.close(lock_fd)

    def _retire_cancel_request(self, job_id: str, epoch: int) -> None:
        """A retried job must not be cancelled again by an old request: rename it aside."""
        with self.dirs.open(self._job_parts(job_id)) as fd:
            try:
                os.rename(
                    _names.CANCEL, f"{_names.CANCEL}.{epoch:06d}.done", src_dir_fd=fd, dst_dir_fd=fd
                )
            except FileNotFoundError:
                pass

    def _open_epoch(
        self, marker: Marker, kind: RecordType, marker_path: str, **extra: JSON
    ) -> None:
        """As the winner of the rename that opened `marker.epoch`, write its first record."""
        record = _now_record(
            kind,
            self.clock.now(),
            attempt=marker.attempt,
            max_attempts=marker.max_attempts,
            marker=marker_path,
            **extra,
        )
        with self.dirs.open(self._job_parts(marker.job_id, _names.JOURNAL)) as jfd:
            fd = _open_segment_at(jfd, marker.epoch)
            try:
                _durable.append(fd, journal.encode(record), sync=self.durable)
            finally:
                os.close(fd)
            if self.durable:
                _durable.fsync_dir(jfd)

    # -- prune --------------------------------------------------------------------

    def prune(self, queue: str, cutoff: dt.datetime, statuses: Iterable[JobStatus]) -> int:
        """
        Delete the final jobs of `queue` in `statuses` that ended before `cutoff`,
        with all their files. Only day shards up to the cutoff's day are read: a
        job pushed after it cannot have ended before it. Returns how many went.
        """
        cutoff_day = cutoff.astimezone(dt.UTC).strftime("%Y-%m-%d")
        pruned = 0
        for status in statuses:
            if not status.is_final:
                raise InvalidJob(f"only final jobs can be pruned, not {status.value}")
            top = self._qdir(queue, status.value)
            with self._open_or_none(top) as fd:
                days = [] if fd is None else sorted(_durable.listdir(fd))
            for day in days:
                if day > cutoff_day:
                    break
                with self._open_or_none((*top, day)) as fd:
                    ids = (
                        [] if fd is None else [n for n in _durable.listdir(fd) if _ids.is_job_id(n)]
                    )
                for job_id in ids:
                    if self._ended_before(job_id, cutoff) and self._prune_one(top, day, job_id):
                        pruned += 1
                self._rmdir_empty((*top, day))
        return pruned

    def _ended_before(self, job_id: str, cutoff: dt.datetime) -> bool:
        try:
            state = self.get(job_id)
        except (JobNotFound, StoreError, ValueError):
            return False
        return (state.finished_at or state.created_at) < cutoff

    def _prune_one(self, top: Parts, day: str, job_id: str) -> bool:
        """One rename into tmp/ decides against a concurrent retry; then delete the job."""
        tmp_fd = self.dirs.cached((_names.TMP,))
        aside = f"pruned.{job_id}.{secrets.token_hex(4)}"
        try:
            with self.dirs.open((*top, day)) as fd:
                os.rename(job_id, aside, src_dir_fd=fd, dst_dir_fd=tmp_fd)
        except FileNotFoundError:
            return False  # retried or pruned by someone else meanwhile
        self._discard_folder(job_id)
        _durable.unlink_quiet(tmp_fd, aside)
        return True

    def cancel_requested(self, job_ids: Iterable[str]) -> set[str]:
        """Which of these jobs have a cancel request."""
        out = set()
        for job_id in job_ids:
            if self._exists(self._job_parts(job_id), _names.CANCEL):
                out.add(job_id)
        return out

    def owned(self, queue: str, me: str) -> set[str]:
        """Ids of the jobs whose running markers in `queue` name worker `me`."""
        return {marker.job_id for marker, worker in self.running(queue) if worker == me}

    def _find_final(self, job_id: str) -> tuple[str, JobStatus] | None:
        """The queue and final status of a job, looked up in every queue."""
        for queue in self.queues():
            for status in FINAL_DIRS:
                if self._exists(self._final_parts(queue, status, job_id), job_id):
                    return queue, status
        return None

    def _read_result_file(self, job_id: str, rel: str) -> JSON:
        parts = tuple(rel.split("/"))
        if len(parts) != 3 or parts[0] != _names.ATTEMPTS or not parts[1].isdigit():
            raise StoreError(f"job {job_id}: bad result_file {rel!r}")
        with self.dirs.open(self._job_parts(job_id, *parts[:2])) as fd:
            return journal.loads(_durable.read_file(fd, parts[2], MAX_RESULT_BYTES))

    # -- listing ------------------------------------------------------------

    def job_ids(self, queue: str, where: str) -> Iterator[str]:
        """Ids with a marker in one state directory of `queue` (unordered for live ones)."""
        top = self._qdir(queue, where)
        if where == _names.RUNNING:
            for marker, _ in self.running(queue):
                yield marker.job_id
            return
        if where in (_names.WAITING, _names.PENDING):
            levels = 2 if where == _names.WAITING else 3
            for parts in self._leaf_buckets(top, levels):
                with self._open_or_none(parts) as fd:
                    names = [] if fd is None else _durable.listdir(fd)
                for name in names:
                    try:
                        yield Marker.parse(name).job_id
                    except ValueError:
                        continue
            return
        with self._open_or_none(top) as top_fd:
            days = [] if top_fd is None else _durable.listdir(top_fd)
        for day in sorted(days, reverse=True):
            with self._open_or_none((*top, day)) as fd:
                names = [] if fd is None else _durable.listdir(fd)
            yield from sorted((n for n in names if _ids.is_job_id(n)), reverse=True)

    def oldest_pending_ms(self, queue: str) -> int | None:
        """The earliest ready time among the queue's pending jobs (the head of each priority)."""
        oldest = None
        top = self._qdir(queue, _names.PENDING)
        with self._open_or_none(top) as fd:
            prios = [] if fd is None else sorted(_durable.listdir(fd))
        for prio in prios:
            for parts in self._leaf_buckets((*top, prio), 2):
                with self._open_or_none(parts) as fd:
                    names = [] if fd is None else sorted(_durable.listdir(fd))
                if names:
                    try:
                        ready = Marker.parse(names[0]).ready_ms
                    except ValueError:
                        continue
                    oldest = ready if oldest is None else min(oldest, ready)
                    break  # buckets are in time order: the first is this priority's oldest
        return oldest

    def workers_alive(self) -> int:
        """How many workers hold their lock file now."""
        with self._open_or_none((_names.WORKERS,)) as wfd:
            if wfd is None:
                return 0
            alive = 0
            for name in _durable.listdir(wfd):
                if not name.endswith(".lock"):
                    continue
                fd = _durable.open_lock_file(wfd, name, create=False)
                if fd is None:
                    continue
                try:
                    alive += not _durable.try_lock(fd)
                finally:
                    os.close(fd)
            return alive

    def queues(self) -> list[str]:
        with self._open_or_none((_names.QUEUES,)) as fd:
            names = [] if fd is None else _durable.listdir(fd)
        return sorted(n for n in names if _names.NAME_RE.fullmatch(n))

    def counts(self, queue: str) -> dict[JobStatus, int]:
        out = dict.fromkeys(JobStatus, 0)
        for where in (_names.PENDING, _names.RUNNING, *(s.value for s in FINAL_DIRS)):
            out[JobStatus(where)] += sum(1 for _ in self.job_ids(queue, where))
        for parts in self._leaf_buckets(self._qdir(queue, _names.WAITING), 2):
            with self._open_or_none(parts) as fd:
                names = [] if fd is None else _durable.listdir(fd)
            for name in names:
                try:
                    first = Marker.parse(name).attempt == 0
                except ValueError:
                    continue
                out[JobStatus.SCHEDULED if first else JobStatus.RETRYING] += 1
        return out


def _status_at(location: Location) -> JobStatus:
    """The status a marker's location means."""
    if location.where == _names.WAITING:
        attempt = location.marker.attempt if location.marker is not None else 0
        return JobStatus.SCHEDULED if attempt == 0 else JobStatus.RETRYING
    return JobStatus(location.where)


_FINAL_VALUES = frozenset(s.value for s in JobStatus if s.is_final)
_TOP_DIRS = frozenset({_names.JOBS, _names.QUEUES, _names.UNIQUE, _names.WORKERS, _names.TMP})
_STATE_DIRS = frozenset({*_LIVE_DIRS, *(status.value for status in JobStatus)})


def _never_removed(parts: Parts) -> bool:
    """The top directories, each queue's directory, and its state directories."""
    if len(parts) == 1:
        return parts[0] in _TOP_DIRS
    return parts[0] == _names.QUEUES and (
        len(parts) == 2 or (len(parts) == 3 and parts[2] in _STATE_DIRS)
    )


_RETRYABLE = frozenset({JobStatus.FAILED, JobStatus.TIMED_OUT, JobStatus.CANCELLED})

#: Errors that mean a job's own files are unusable: quarantine it, never crash.
_CORRUPTION = (
    CorruptRecord,
    InvalidJob,
    StoreError,
    FileNotFoundError,
    KeyError,
    TypeError,
    ValueError,
)


def _open_segment_at(journal_fd: int, epoch: int) -> int:
    """
    Create the segment of a new epoch. Only the winner of the rename that opened
    the epoch calls this, so a segment already there is a leftover of a claim
    that a crash undid: it is moved aside (kept for inspection), never appended to.
    """
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    name = _segment_name(epoch)
    try:
        return os.open(name, flags, _durable.FILE_MODE, dir_fd=journal_fd)
    except FileExistsError:
        aside = f"{name}.undone.{secrets.token_hex(4)}"
        os.rename(name, aside, src_dir_fd=journal_fd, dst_dir_fd=journal_fd)
        logger.warning("moved a leftover journal segment aside as %s", aside)
        return os.open(name, flags, _durable.FILE_MODE, dir_fd=journal_fd)


def _read_spec(journal_fd: int, job_id: str) -> tuple[Job, tuple[str, ...]]:
    """The job and its upload names, from the first record of segment 0."""
    data = _durable.read_file(journal_fd, _segment_name(0), journal.MAX_LINE * 2)
    records = journal.parse(data).records
    if not records or records[0].type is not RecordType.PUSHED:
        raise CorruptRecord(f"job {job_id} has no 'pushed' record")
    spec = records[0].data.get("spec")
    if not isinstance(spec, dict):
        raise CorruptRecord(f"job {job_id}: 'spec' is not an object")
    uploads = spec.get("uploads") or []
    if not isinstance(uploads, list):
        raise CorruptRecord(f"job {job_id}: 'uploads' is not a list")
    return job_from_spec(spec), tuple(_names.check_name("upload", u) for u in uploads)
