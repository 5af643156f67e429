"""
``fsjobs migrate``: convert a format-1 root to format 2 in place, crash-safely.

Format 1 kept a job's journal segments in ``jobs/<shard>/<id>/journal/``;
format 2 keeps them in the job's folder itself. Everything else (markers, unique
keys, results, uploads) has the same place and name. The conversion (DESIGN.md
§9.7):

1. Refuse while any worker holds its lock file.
2. Rewrite ``fsjobs.json`` to ``{"format": 2, "features": ["migrating"]}``:
   every other fsjobs then refuses to write until the migration is done.
3. Convert each job so that its conversion ends in one rename: hard-link each
   segment of ``journal/`` into the folder (a segment already linked is
   skipped), then rename ``journal/`` to ``journal.format1`` (the one rename),
   then remove it. A rerun after a crash redoes or skips each step.
4. Drop ``migrating`` only once no job folder holds ``journal/`` any more.

Markers need no conversion: a format-1 marker is an empty file where a format-2
marker is a hard link of segment 0, which only matters to restore a folder that
a power cut lost right after its push; a migrated job's folder is long durable.
"""

from __future__ import annotations

import logging
import os

import attrs

from . import _durable, _format, _ids, _names
from ._paths import Dirs
from .errors import FormatError, StoreError

logger = logging.getLogger("fsjobs.store")

#: what a converted journal folder is renamed to before it is removed
DONE_SUFFIX = ".format1"


@attrs.frozen
class Migration:
    """What `migrate` did: jobs converted now, jobs found already converted."""

    converted: int
    already: int


def migrate(root: str | os.PathLike[str]) -> Migration:
    """Convert the format-1 root at `root` to format 2 (a format-2 root is left as it is)."""
    dirs = Dirs(os.fspath(root))
    try:
        if not dirs.open_root(create=False):
            raise FormatError(f"no queue root at {dirs.root_path}")
        found = _read_any(dirs)
        if found is None or (found.version == _format.FORMAT_VERSION and not _migrating(found)):
            return Migration(0, _count_jobs(dirs))
        _refuse_if_workers_run(dirs)
        _format.rewrite(dirs, _start, allow_format1=True)
        converted = already = 0
        for shard_fd, job_id in _job_folders(dirs):
            if _convert_job(dirs, shard_fd, job_id):
                converted += 1
            else:
                already += 1
        left = [job_id for shard_fd, job_id in _job_folders(dirs) if _has_journal(shard_fd, job_id)]
        if left:
            raise StoreError(f"{len(left)} jobs still have a format-1 journal/, e.g. {left[0]}")
        _format.rewrite(dirs, _finish)
        logger.info(
            "migrated %s: %d jobs converted, %d already", dirs.root_path, converted, already
        )
        return Migration(converted, already)
    finally:
        dirs.close()


def _read_any(dirs: Dirs) -> _format.RootFormat | None:
    """The format file, format 1 included (which `_format.read` refuses)."""
    try:
        return _format.read(dirs)
    except FormatError:
        data = _durable.read_file(dirs.root_fd, _names.FORMAT_FILE, 64 * 1024)
        if data.replace(b" ", b"").strip() != b'{"format":1}':
            raise
        return _format.RootFormat(1)


def _migrating(found: _format.RootFormat) -> bool:
    return _format.MIGRATING in found.names


def _start(current: _format.RootFormat) -> _format.RootFormat:
    return _format.RootFormat(_format.FORMAT_VERSION, (_format.MIGRATING,))


def _finish(current: _format.RootFormat) -> _format.RootFormat:
    features = tuple(f for f in current.features if f != _format.MIGRATING)
    return _format.RootFormat(_format.FORMAT_VERSION, features)


def _refuse_if_workers_run(dirs: Dirs) -> None:
    with dirs.open_or_none((_names.WORKERS,)) as wfd:
        if wfd is None:
            return
        for name in _durable.listdir(wfd):
            if not name.endswith(".lock"):
                continue
            fd = _durable.open_lock_file(wfd, name, create=False)
            if fd is None:
                continue
            try:
                if not _durable.try_lock(fd):
                    raise StoreError(
                        f"worker {name[:-5]} is running on {dirs.root_path}: stop every worker "
                        "before fsjobs migrate"
                    )
            finally:
                os.close(fd)


def _job_folders(dirs: Dirs) -> list[tuple[int, str]]:
    """(shard descriptor, job id) of every job folder; the descriptors stay open in `dirs`."""
    out = []
    with dirs.open_or_none((_names.JOBS,)) as jobs_fd:
        shards = [] if jobs_fd is None else sorted(_durable.listdir(jobs_fd))
    for shard in shards:
        if len(shard) != 2:
            continue
        try:
            shard_fd = dirs.cached((_names.JOBS, shard), create=False)
        except (FileNotFoundError, StoreError):
            continue
        out += [(shard_fd, n) for n in sorted(_durable.listdir(shard_fd)) if _ids.is_job_id(n)]
    return out


def _count_jobs(dirs: Dirs) -> int:
    return len(_job_folders(dirs))


def _has_journal(shard_fd: int, job_id: str) -> bool:
    try:
        job_fd = os.open(job_id, _durable.O_DIR, dir_fd=shard_fd)
    except OSError:
        return False
    try:
        return _durable.exists(job_fd, _names.FORMAT1_JOURNAL)
    finally:
        os.close(job_fd)


def _convert_job(dirs: Dirs, shard_fd: int, job_id: str) -> bool:
    """Move one job's segments up; True if it needed it. Safe to run again after a crash."""
    job_fd = dirs.open_child(shard_fd, job_id)
    try:
        done = f"{_names.FORMAT1_JOURNAL}{DONE_SUFFIX}"
        if _durable.exists(job_fd, _names.FORMAT1_JOURNAL):
            with dirs.child(job_fd, _names.FORMAT1_JOURNAL) as journal_fd:
                for name in sorted(_durable.listdir(journal_fd)):
                    if _names.segment_epoch(name) is not None:
                        _link_up(journal_fd, job_fd, name)
                _durable.fsync_dir(job_fd)
            os.rename(_names.FORMAT1_JOURNAL, done, src_dir_fd=job_fd, dst_dir_fd=job_fd)
            _durable.fsync_dir(job_fd)
            converted = True
        else:
            converted = False
        if _durable.exists(job_fd, done):
            _durable.rmtree_at(job_fd, done)
        return converted
    finally:
        os.close(job_fd)


def _link_up(journal_fd: int, job_fd: int, name: str) -> None:
    try:
        os.link(name, name, src_dir_fd=journal_fd, dst_dir_fd=job_fd, follow_symlinks=False)
    except FileExistsError:
        old = os.stat(name, dir_fd=journal_fd, follow_symlinks=False)
        new = os.stat(name, dir_fd=job_fd, follow_symlinks=False)
        if (old.st_dev, old.st_ino) != (new.st_dev, new.st_ino):
            raise StoreError(f"job folder has both journal/{name} and a different {name}") from None
