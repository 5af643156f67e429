"""
Push: a job becomes durable, then visible, with one commit point.

1. Its folder ``jobs/<shard>/<id>/`` is written: uploads (fsynced with their
   folders), then segment 0, ``000000.jsonl``, whose one ``pushed`` record
   carries the whole spec; the segment is fsynced.
2. Commit: the marker is created as a hard link of segment 0, in its time
   bucket under ``pending/`` (or ``waiting/`` if it is scheduled ahead), and the
   bucket is fsynced. ``link`` fails if the name exists, so it is an ``O_EXCL``
   create. A job with a unique key stages the link in ``tmp/`` first and
   commits by renaming it into place (see `_unique`).

Because the marker *is* segment 0 (one inode, two names), a push needs two
fsyncs, as the least a durable queue can do: the segment's and the bucket's.
The folder's own names are not fsynced: if a power cut loses them, the marker
still holds the spec, and the claim, fsck or `get` put the folder back from it
(`_read.restore_folder`). A folder with no marker is an unpublished push:
invisible to everyone, and removed by the pusher on error or by fsck after the
staging horizon. A batch shares its flushes: on a local filesystem two
``syncfs`` calls (folders, then markers) replace two fsyncs per job.

Uploads that were written before the push (`_uploads`, as the HTTP API
streams them) are not copied: their stage folder is renamed into the job's
folder as ``uploads/`` in step 1.

A job with `Job.depends_on` (see `_depends`) is checked against its parents
first: every parent must exist; if one has ended without completing, the job
commits straight to ``cancelled/`` (segment 0 then also holds the
``cancelled`` record); if all completed, to ``pending/`` as usual; otherwise to
``blocked/``. Before the commit, ``dependents/<id>`` is created in each
parent's folder; after a commit to ``blocked/``, the pusher checks the parents
again.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import pathlib
from collections.abc import Sequence

import attrs

from . import _depends, _durable, _ids, _names, _transitions, _unique, _uploads, journal
from ._clock import to_ms
from ._json import JSON
from ._paths import Parts
from ._spec import spec_of
from ._transitions import Location, Where
from ._tree import Tree, path, record
from ._uploads import UploadStage
from .errors import InvalidJob
from .journal import RecordType
from .model import Job
from .states import JobStatus

logger = logging.getLogger("fsjobs.store")


@attrs.define
class Staged:
    """A job on its way in: where it will be committed, and what its folder holds."""

    job: Job
    queue: str
    #: where the marker goes (pending, waiting, blocked or cancelled); the marker is the
    #: one a pending job would have, also for the places named by id
    location: Location
    #: uploads already written to a stage in tmp/, renamed into the job's folder
    stage: UploadStage | None = None
    #: the ``workflow`` of the spec, for a workflow's step
    workflow: dict[str, JSON] | None = None
    #: why a job whose parent did not complete goes straight to cancelled/
    cancelled_why: str | None = None
    #: the job's folder, open from its writing to its commit (a single push only)
    job_fd: int = -1

    @property
    def job_id(self) -> str:
        assert self.location.marker is not None
        return self.location.marker.job_id

    @property
    def where(self) -> Where:
        return self.location.where

    @property
    def name(self) -> str:
        """The marker's name: the marker name of a live place, the id elsewhere."""
        assert self.location.marker is not None
        return self.location.marker.name if self.where.is_live else self.job_id

    def target(self, tree: Tree) -> tuple[Parts, str]:
        """The directory and name of the marker its commit creates."""
        return tree.place(self.queue, self.where, self.location.marker, self.job_id)


def push_many(
    tree: Tree,
    items: Sequence[tuple[Job, str]],
    published: list[str] | None = None,
    stages: Sequence[UploadStage | None] = (),
) -> list[str]:
    """
    Push jobs durably; return their ids (an existing job's id for a unique key
    that is taken). Ids are appended to `published` as each commit lands, so a
    caller can tell what was pushed if this raises part-way. ``stages[i]``, if
    given and not None, holds the uploads of ``items[i]`` already on disk: its
    folder becomes the job's ``uploads/`` (the job's `uploads` must name exactly
    its files). The caller still discards each stage afterwards.
    """
    published = [] if published is None else published
    for _, queue in items:
        _names.check_name("queue", queue)
    if len(stages) > len(items):
        raise ValueError("more upload stages than jobs")
    for (job, _), stage in zip(items, stages, strict=False):
        if stage is not None and sorted(job.uploads) != sorted(stage.names):
            raise InvalidJob("a job's uploads must name exactly the files of its upload stage")
    tree.for_writing()
    tree.check_space()
    if any(job.executor is not None for job, _ in items):
        tree.add_feature("executor")  # a spec key an older fsjobs would not know
    parents = sorted({p for job, _ in items for p in job.depends_on})
    if parents:
        tree.add_feature("depends_on")
    statuses = _depends.statuses_at_push(tree, parents)
    now = tree.clock.now()
    now_ms = to_ms(now)
    staged = [_stage(tree, job, queue, now_ms, statuses) for job, queue in items]
    for s, stage in zip(staged, stages, strict=False):
        s.stage = stage
    group = tree.batch_sync and len(staged) > 1
    _write_folders(tree, staged, now, group)
    ids: list[str] = []
    try:
        _link_parents(tree, staged)
        _commit(tree, staged, group, ids, published)
    except BaseException as exc:
        for s in staged:
            _close_folder(s)
        # A job whose marker exists was published, even if a step after its
        # commit (a directory fsync) failed; only the others are cleaned up.
        for s in staged:
            if s.job_id in published or s.job_id in ids:
                continue
            if tree.exists(*s.target(tree)):
                published.append(s.job_id)
            else:
                _depends.unlink(tree, s.job.depends_on, s.job_id)
                tree.discard_job(s.job_id)
        _check_blocked(tree, staged, published)
        if isinstance(exc, OSError):
            _durable.raise_full(exc, "publishing jobs")
        raise
    _check_blocked(tree, staged, published)
    return ids


def _check_blocked(tree: Tree, staged: list[Staged], published: list[str]) -> None:
    """The pusher's side of the check (see `_depends`), for each job it put in blocked/."""
    for s in staged:
        if s.where is Where.BLOCKED and s.job_id in published:
            _depends.after_push(tree, s.queue, s.job_id)


def _stage(tree: Tree, job: Job, queue: str, now_ms: int, statuses: dict[str, JobStatus]) -> Staged:
    """A new id for `job`, and where it goes given its parents' `statuses`."""
    job_id = _ids.new_job_id(now_ms)
    sched_ms = None if job.scheduled_at is None else to_ms(job.scheduled_at)
    ready_ms = max(now_ms, sched_ms or 0)
    location = _transitions.pushed(job.priority, ready_ms, job_id, job.max_attempts, now_ms)
    if not job.depends_on:
        return Staged(job, queue, location)
    mine: dict[str, JobStatus | None] = {p: statuses[p] for p in job.depends_on}
    failed = _depends.failed_parent(mine)
    if failed is not None:
        why = _depends.failure_message(tree, failed, mine[failed])
        return Staged(job, queue, Location(Where.CANCELLED, location.marker), cancelled_why=why)
    if all(status is JobStatus.COMPLETED for status in mine.values()):
        return Staged(job, queue, location)
    return Staged(job, queue, Location(Where.BLOCKED, location.marker))


def _link_parents(tree: Tree, staged: list[Staged]) -> None:
    """``dependents/<id>`` in each parent's folder, before any commit."""
    for s in staged:
        if s.job.depends_on and s.where is not Where.CANCELLED:
            _depends.link(tree, s.job.depends_on, s.job_id)


def _write_folders(tree: Tree, staged: list[Staged], now: dt.datetime, group: bool) -> None:
    """Every job folder is durable before any job becomes visible."""
    written: list[Staged] = []
    try:
        for s in staged:
            write_folder(tree, s, now, sync=not group, keep_open=len(staged) == 1)
            written.append(s)
        if group and tree.durable:
            _durable.syncfs(tree.dirs.root_fd)
    except BaseException as exc:
        for s in written:
            _close_folder(s)
            tree.discard_job(s.job_id)
        if isinstance(exc, OSError):
            _durable.raise_full(exc, "pushing jobs")
        raise


def write_folder(tree: Tree, s: Staged, now: dt.datetime, *, sync: bool, keep_open: bool) -> None:
    """The job's folder: uploads, then segment 0 with its ``pushed`` record."""
    job_id = s.job_id
    marker_path = path(*s.target(tree))
    line = journal.encode(
        record(
            RecordType.PUSHED,
            now,
            id=job_id,
            spec=spec_of(s.job, s.queue, now, s.workflow),
            marker=marker_path,
        )
    )
    if s.cancelled_why is not None:  # a parent did not complete: final at once
        error: JSON = {
            "type": _depends.DEPENDENCY_FAILED,
            "message": s.cancelled_why,
            "traceback": "",
        }
        line += journal.encode(
            record(
                RecordType.CANCELLED,
                now,
                attempt=0,
                max_attempts=s.job.max_attempts,
                error=error,
                marker=marker_path,
            )
        )
    sync = sync and tree.durable
    shard_fd = tree.dirs.open_fd((_names.JOBS, _names.shard_of(job_id)), create=True)
    try:
        tree.dirs.mkdir_new(shard_fd, job_id)
        job_fd = tree.dirs.open_child(shard_fd, job_id)
        try:
            if s.stage is not None:
                _uploads.move_into(tree, s.stage, job_fd, sync=sync)
            elif s.job.uploads:
                _write_uploads(tree, job_fd, s.job.uploads, sync=sync)
            if s.job.uploads and sync:
                # Uploads are not in the marker: their folder must not be lost.
                _durable.fsync_all([job_fd, shard_fd])
            _durable.write_new(job_fd, _names.segment_name(0), line, sync=sync)
        except BaseException:
            os.close(job_fd)
            raise
        if keep_open:
            s.job_fd = job_fd
        else:
            os.close(job_fd)
    except OSError as exc:
        tree.discard_job(job_id)
        _durable.raise_full(exc, f"pushing job {job_id}")
        raise
    finally:
        os.close(shard_fd)


def _close_folder(s: Staged) -> None:
    if s.job_fd >= 0:
        os.close(s.job_fd)
        s.job_fd = -1


def _job_fd(tree: Tree, s: Staged) -> int:
    """The job's folder: the one kept open by a single push, or opened again (batches)."""
    if s.job_fd < 0:
        s.job_fd = tree.open_job(s.job_id)
    return s.job_fd


def _write_uploads(
    tree: Tree, job_fd: int, uploads: dict[str, bytes | pathlib.Path], *, sync: bool
) -> None:
    tree.dirs.mkdir_new(job_fd, _names.UPLOADS)
    up_fd = tree.dirs.open_child(job_fd, _names.UPLOADS)
    try:
        for name, blob in uploads.items():
            if isinstance(blob, pathlib.Path):
                _copy_upload(up_fd, name, blob, sync=sync)
            else:
                _durable.write_new(up_fd, name, bytes(blob), sync=sync)
        if sync:
            _durable.fsync_dir(up_fd)
    finally:
        os.close(up_fd)


def _copy_upload(up_fd: int, name: str, source: pathlib.Path, *, sync: bool) -> None:
    """Copy a file in 1 MiB chunks: the bytes are never held whole in memory."""
    fd = os.open(name, _durable.O_NEW, _durable.FILE_MODE, dir_fd=up_fd)
    try:
        with source.open("rb") as src:
            while chunk := src.read(1 << 20):
                _durable.write_all(fd, chunk)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def _commit(
    tree: Tree, staged: list[Staged], group: bool, ids: list[str], published: list[str]
) -> None:
    """
    One marker per job; bucket fsyncs shared per directory. The fsyncs go through
    the descriptors that created the markers: a worker may claim a job and
    remove its emptied bucket before we get to them.
    """
    by_key: dict[str, str] = {}
    to_sync: dict[Parts, int] = {}
    try:
        for s in staged:
            parts, name = s.target(tree)
            key = s.job.unique_key
            if key is not None:
                if key in by_key:  # duplicates in one batch: the first wins
                    ids.append(by_key[key])
                    tree.discard_job(s.job_id)
                    continue
                job_id = _push_unique(tree, key, s, parts)
                by_key[key] = job_id
            else:
                fd = tree.link_marker(_job_fd(tree, s), parts, name)
                _close_folder(s)
                if len(staged) == 1 and tree.durable:
                    _durable.fsync_dir(fd)  # at once, through the descriptor that created it
                elif parts not in to_sync and not group:
                    to_sync[parts] = os.dup(fd)
                job_id = s.job_id
            ids.append(job_id)
            if job_id == s.job_id:
                published.append(job_id)
        if group and tree.durable:
            _durable.syncfs(tree.dirs.root_fd)
        elif tree.durable:
            _durable.fsync_all(list(to_sync.values()))
    finally:
        for fd in to_sync.values():
            os.close(fd)
    for queue, where in {(s.queue, s.where) for s in staged}:
        if where.is_live:
            tree.ring(queue, where)


def _push_unique(tree: Tree, key: str, s: Staged, parts: Parts) -> str:
    """Publish `s` unless an unfinished job owns `key`; return the owner's id (see `_unique`)."""
    # a staging name holds ".<id>." (fsck tells a live push by it)
    prefix = s.name if s.where.is_live else f"{s.where.value}.{s.job_id}"
    staging, lock_fd = tree.link_staging(_job_fd(tree, s), prefix)
    _close_folder(s)
    tmp_fd = tree.dirs.cached((_names.TMP,))
    try:
        owner = _unique.take(tree, key, s.job_id, s.queue, staging)
        if owner != s.job_id:
            _durable.unlink_quiet(tmp_fd, staging)
            tree.discard_job(s.job_id)
            return owner
        _unique.commit(tree, staging, parts, s.name)
        if tree.durable:
            _durable.fsync_dir(tmp_fd)
    except BaseException:
        _unique.give_up(tree, key, staging)  # not committed (unless the error came after)
        raise
    finally:
        os.close(lock_fd)
    return s.job_id
