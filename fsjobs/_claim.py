"""
Claim: a worker takes the job at the head of a queue.

A worker lists the head bucket of a queue (`promote_and_list`), then claims
names in order: ``rename(pending/.../<name>, running/<name'>.<worker>)``, where
``<name'>`` has the next epoch and one more attempt. Exactly one claimer wins.
The winner opens its own journal segment with a ``claimed`` record, then reads
the spec. An error after a won claim gives the job back (attempt restored) or,
if the job's own files are unusable, quarantines it in ``corrupt/``.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import pathlib
import stat
from collections.abc import Sequence

import attrs

from . import _deptree, _durable, _names, _state, _transitions, journal
from ._clock import to_ms
from ._json import JSON
from ._names import Marker
from ._paths import Parts
from ._read import restore_folder, segments_at
from ._spec import job_from_spec, unknown_spec_keys
from ._transitions import Where
from ._tree import Tree, path, record
from .errors import CorruptRecord, FormatError, InvalidJob, StoreError
from .journal import RecordType
from .model import Job

logger = logging.getLogger("fsjobs.store")

#: Errors that mean a job's own files are unusable: quarantine it, never crash.
CORRUPTION = (
    CorruptRecord,
    InvalidJob,
    StoreError,
    FileNotFoundError,
    KeyError,
    TypeError,
    ValueError,
)


@attrs.define
class Claim:
    """A job this worker won: its running marker, its spec and its open journal segment."""

    queue: str
    marker: Marker
    worker: str
    job: Job | None  # None only until the spec is read
    started_at: dt.datetime
    #: False when the job is not to run: its last attempt already ran (`exhausted_by` says how)
    runnable: bool = True
    exhausted_by: str = "WorkerLost"
    segment_fd: int = -1
    #: the job's folder, where its segments live (fsynced once before the outcome is published)
    job_fd: int = -1
    uploads: tuple[str, ...] = ()
    #: someone asked to cancel the job before this claim
    cancel_requested: bool = False
    closed: bool = False

    @property
    def job_id(self) -> str:
        return self.marker.job_id

    @property
    def running_name(self) -> str:
        return self.marker.running_name(self.worker)


def close(claim: Claim) -> None:
    """Close the claim's descriptors (the job itself is left where it is)."""
    if not claim.closed:
        claim.closed = True
        for fd in (claim.segment_fd, claim.job_fd):
            if fd >= 0:
                os.close(fd)


# -- the head of a queue ------------------------------------------------------------


def ready(tree: Tree, queue: str, limit: int = 1000) -> list[str]:
    """
    Paths of the names at the head of the queue, in run order (at most `limit`).
    Only the head buckets are listed, so the cost does not grow with the
    backlog; empty buckets met on the way are removed.
    """
    if not tree.for_reading():
        return []
    names: list[str] = []
    for parts in tree.leaf_buckets(tree.queue_dir(queue, Where.PENDING), levels=3):
        found = sorted(tree.names(parts))
        if found:
            names.extend(path(parts, n) for n in found)
            if len(names) >= limit:
                break
        else:
            tree.rmdir_past(parts)
    return names[:limit]


def promote(tree: Tree, queue: str) -> int:
    """Move every waiting job that is due into pending; return how many moved."""
    if not tree.for_reading() or not tree.writable:
        return 0
    now_ms = to_ms(tree.clock.now())
    moved = 0
    waiting = tree.queue_dir(queue, Where.WAITING)
    for hour in sorted(tree.names(waiting)):
        if hour > _names.bucket_of(now_ms)[0]:
            break
        seconds = sorted(tree.names((*waiting, hour)))
        for sec in seconds:
            try:
                if _names.bucket_start_ms(hour, sec) > now_ms:
                    break
            except ValueError:
                continue
            moved += _promote_bucket(tree, queue, (*waiting, hour, sec), now_ms)
        if not seconds:
            tree.rmdir_past((*waiting, hour))
    return moved


def _promote_bucket(tree: Tree, queue: str, parts: Parts, now_ms: int) -> int:
    moved = 0
    for name in sorted(tree.names(parts)):
        try:
            marker = Marker.parse(name)
        except ValueError:
            continue
        if marker.ready_ms > now_ms:
            continue
        pending = tree.live_dir(queue, Where.PENDING, marker)
        if tree.move(parts, name, pending, name, sync=False):
            moved += 1
    tree.rmdir_past(parts)
    return moved


def promote_and_list(tree: Tree, queue: str, limit: int) -> list[str]:
    """A worker's look at a queue, in one I/O hop: promote the due waiting jobs, then `ready`."""
    promote(tree, queue)
    return ready(tree, queue, limit)


# -- claiming ---------------------------------------------------------------------------


def claim(tree: Tree, queue: str, name_path: str, worker: str) -> Claim | None:
    """
    Try to take the job whose pending marker is at `name_path` (from `ready`).
    None if someone else took it first (or the name is not a job's).
    """
    tree.for_writing()
    parts = tuple(name_path.split("/"))
    try:
        marker = Marker.parse(parts[-1])
    except ValueError:
        logger.warning("ignoring a foreign file in the pending tree: %r", name_path)
        return None
    running, runnable = _transitions.claimed(marker)
    run_dir = tree.running_dir(queue)
    if not tree.move(
        parts[:-1], parts[-1], run_dir, running.running_name(worker), mine=True, sync=False
    ):
        return None
    won = Claim(queue, running, worker, None, tree.clock.now(), runnable)
    try:
        _open(tree, won)
    except FormatError:
        abandon(tree, won, Where.PENDING, "the root uses a feature this fsjobs does not know")
        raise
    except CORRUPTION as exc:
        abandon(tree, won, Where.CORRUPT, f"job files unusable: {exc}")
        return None
    except OSError as exc:
        abandon(tree, won, Where.PENDING, f"I/O error after claiming: {exc}")
        _durable.raise_full(exc, f"claiming job {won.job_id}")
        raise
    return won


def _open(tree: Tree, won: Claim) -> None:
    """As the claim's winner: open the segment of its epoch, record the claim, read the spec."""
    try:
        won.job_fd = tree.open_job(won.job_id)
    except FileNotFoundError:
        # A power cut lost the folder's name but not the marker, which holds segment 0.
        if not restore_folder(tree, won.job_id, tree.running_dir(won.queue), won.running_name):
            raise
        won.job_fd = tree.open_job(won.job_id)
    won.segment_fd = tree.open_segment(won.job_fd, won.marker.epoch)
    claimed = record(
        RecordType.CLAIMED,
        won.started_at,
        worker=won.worker,
        attempt=won.marker.attempt,
        marker=path(tree.running_dir(won.queue), won.running_name),
    )
    tree.append(won.segment_fd, claimed, sync=False)
    won.job, won.uploads = _read_spec(tree, won.job_fd, won.job_id)
    won.cancel_requested = _durable.exists(won.job_fd, _names.CANCEL)
    if not won.runnable:
        release = _state.last_release(segments_at(won.job_fd, won.job_id), won.marker.epoch)
        if release is not None and release.get_str("reason") == "publish_failed":
            won.exhausted_by = "PublishFailed"


def _read_spec(tree: Tree, job_fd: int, job_id: str) -> tuple[Job, tuple[str, ...]]:
    """The job and its upload names, from the first record of segment 0."""
    data = _durable.read_file(job_fd, _names.segment_name(0), journal.MAX_LINE * 2)
    seg = journal.parse(data)
    spec: JSON = None
    if seg.records and seg.records[0].type is RecordType.PUSHED:
        spec = seg.records[0].data.get("spec")
    unknown = unknown_spec_keys(spec) if isinstance(spec, dict) else set()
    if seg.unknown or unknown:
        # Written by a newer fsjobs? Then the root says so: refuse, never quarantine.
        tree.refresh_format()
        if not tree.writable:
            raise FormatError(f"job {job_id} was written by a newer fsjobs")
    if not isinstance(spec, dict):
        raise CorruptRecord(f"job {job_id} has no readable 'pushed' record")
    if unknown:
        raise CorruptRecord(f"job {job_id}: unknown spec keys {sorted(unknown)}")
    uploads = spec.get("uploads") or []
    if not isinstance(uploads, list):
        raise CorruptRecord(f"job {job_id}: 'uploads' is not a list")
    return job_from_spec(spec), tuple(_names.check_name("upload", u) for u in uploads)


def claim_many(
    tree: Tree, queue: str, paths: Sequence[str], worker: str, want: int
) -> tuple[list[Claim], int, Exception | None]:
    """
    `claim` the listed names in order until `want` are won: the claims, how
    many names were tried, and the error that stopped it early, if any (that
    name's job is back in pending, as `claim` leaves it).
    """
    claims: list[Claim] = []
    seen: set[str] = set()
    for tried, name_path in enumerate(paths, 1):
        if name_path in seen:
            continue  # twice in one listing: a second try would take our own claim for a win
        seen.add(name_path)
        try:
            won = claim(tree, queue, name_path, worker)
        except OSError as exc:
            return claims, tried, exc
        if won is not None:
            claims.append(won)
            if len(claims) >= want:
                return claims, tried, None
    return claims, len(paths), None


def abandon(tree: Tree, won: Claim, where: Where, reason: str) -> None:
    """
    After a won claim went wrong: quarantine the job in ``corrupt/`` (its files
    are bad), or give it back to pending, attempt restored, without writing
    more (the write would likely fail again) and without leaving an empty
    segment behind.
    """
    logger.error("job %s: %s", won.job_id, reason)
    running = tree.running_dir(won.queue)
    if where is Where.CORRUPT:
        target = _transitions.finished(won.marker, _transitions.Ending.CORRUPT)
        dst = tree.day_dir(won.queue, Where.CORRUPT, won.job_id)
        if won.segment_fd >= 0:
            try:
                rec = record(
                    RecordType.CORRUPT,
                    tree.clock.now(),
                    attempt=won.marker.attempt,
                    max_attempts=won.marker.max_attempts,
                    error={"type": "CorruptJob", "message": reason, "traceback": ""},
                    marker=path(dst, target.name),
                )
                tree.append(won.segment_fd, rec)
            except OSError:
                pass  # the move below still quarantines it; fsck adds the record
        try:  # jobs that depend on it will be cancelled: by the next sweep
            if won.job_fd >= 0 and _deptree.has_dependents(tree, won.job_id, won.job_fd):
                _deptree.leave_entry(tree, won.queue, won.job_id)
        except OSError:
            pass  # fsck finds them blocked behind a corrupt job
        close(won)
        tree.move(running, won.running_name, dst, target.name)
        return
    empty = won.segment_fd >= 0 and os.fstat(won.segment_fd).st_size == 0
    if empty and won.job_fd >= 0:
        _durable.unlink_quiet(won.job_fd, _names.segment_name(won.marker.epoch))
    close(won)
    back = _transitions.finished(won.marker, _transitions.Ending.GIVE_BACK)
    assert back.marker is not None
    try:
        tree.move(
            running,
            won.running_name,
            tree.live_dir(won.queue, Where.PENDING, back.marker),
            back.name,
        )
    except OSError:
        logger.exception("job %s: could not give it back; rescue will", won.job_id)


# -- while it runs ------------------------------------------------------------------------


def progress(tree: Tree, won: Claim, percent: float | None, message: str | None) -> None:
    """Record progress in the claim's segment (not fsynced: progress is advisory)."""
    if won.closed:
        return
    rec = record(RecordType.PROGRESS, tree.clock.now(), percent=percent, message=message)
    tree.append(won.segment_fd, rec, sync=False)


def upload_paths(tree: Tree, won: Claim) -> dict[str, pathlib.Path]:
    """Paths of the claimed job's upload blobs (checked to be regular files)."""
    if not won.uploads:
        return {}
    parts = Tree.job_dir(won.job_id, _names.UPLOADS)
    base = pathlib.Path(tree.root, *parts)
    with tree.dirs.open(parts) as fd:
        for name in won.uploads:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode):
                raise StoreError(f"upload {name!r} of job {won.job_id} is not a regular file")
    return {name: base / name for name in won.uploads}


def read_upload(tree: Tree, won: Claim, name: str) -> bytes:
    """The bytes of one of the claimed job's uploads."""
    if name not in won.uploads:
        raise KeyError(name)
    with tree.dirs.open(Tree.job_dir(won.job_id, _names.UPLOADS)) as fd:
        return _durable.read_file(fd, name, 1 << 62)


def attempt_dir(won: Claim, *rest: str) -> Parts:
    """The folder of this attempt's files: ``jobs/<shard>/<id>/attempts/<epoch>/...``."""
    return Tree.job_dir(won.job_id, _names.ATTEMPTS, _names.attempt_dir(won.marker.epoch), *rest)


def output_dir(tree: Tree, won: Claim) -> pathlib.Path:
    """This attempt's own output directory, created on first use."""
    parts = attempt_dir(won, _names.OUTPUTS)
    with tree.dirs.open(parts, create=True):
        pass
    return pathlib.Path(tree.root, *parts)
