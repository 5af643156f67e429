"""
Operator actions on one job: cancel, hold, release, retry, prune.

Each is one rename that exactly one actor wins against any claim, finish or
other action on the same job; the winner then opens the new epoch with a
record saying what it did. An action that lost the race looks again.

Dependencies (`_depends`): a cancel settles the cancelled job's dependents (they
are cancelled in turn); a job whose parents have not all completed is not
retried; prune leaves a job alone while a job that depends on it is unfinished.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import secrets
import time
import typing
from collections.abc import Iterable

from . import _depends, _deptree, _durable, _ids, _names, _read, _transitions, _unique
from ._clock import to_ms
from ._names import Marker
from ._read import Found
from ._state import Segments, build_state
from ._transitions import Location, Where
from ._tree import Tree, path, record
from .errors import DependencyFailed, InvalidJob, StoreError, UniqueKeyConflict
from .journal import RecordType
from .states import JobState, JobStatus

logger = logging.getLogger("fsjobs.store")

_RETRYABLE = frozenset({Where.FAILED, Where.TIMED_OUT, Where.CANCELLED})
#: how many times an action looks again at a job that keeps moving under it
_TRIES = 100


def _open_epoch(
    tree: Tree, marker: Marker, kind: RecordType, at_path: str, **extra: typing.Any
) -> None:
    rec = record(
        kind,
        tree.clock.now(),
        attempt=marker.attempt,
        max_attempts=marker.max_attempts,
        marker=at_path,
        **extra,
    )
    tree.open_epoch(marker.job_id, marker.epoch, rec)


def cancel(tree: Tree, job_id: str) -> JobStatus:
    """
    Cancel a job. A waiting or pending job is renamed straight into
    ``cancelled/`` (one winner against a claim) and never runs. For a running
    job, a ``cancel`` file asks its owner to stop (it checks at claim and while
    it runs); RUNNING is returned. A final job is left as it is; its status is
    returned.
    """
    tree.for_writing()
    for _ in range(_TRIES):
        found = _read.find(tree, job_id)
        if isinstance(found, JobState):
            return found.status
        location = found.location
        if location.where is Where.RUNNING:
            request_cancel(tree, job_id)
            return JobStatus.RUNNING
        if location.where.is_final:
            return location.status
        if location.staged:  # a step of a workflow being published: in a moment
            time.sleep(0.01)
            continue
        entry = _depends.intent(tree, found.queue, job_id)
        try:
            won = _cancel_once(tree, found)
        except BaseException:
            _depends.leave(tree, entry)
            raise
        _depends.done(tree, entry, won)
        if won:
            return JobStatus.CANCELLED
        # Claimed (or promoted, or released) meanwhile: look again.
    raise StoreError(f"job {job_id} kept moving while being cancelled")


def _cancel_once(tree: Tree, found: Found) -> bool:
    """One try at renaming a job that has not started into cancelled/; True if it won."""
    location, job_id = found.location, found.job_id
    if location.where is Where.HELD:
        return _end_hold(tree, found, Where.CANCELLED) is not None
    if location.where is Where.BLOCKED:
        return _depends.cancel_blocked(tree, found, None)
    marker = location.marker
    assert marker is not None
    src = tree.live_dir(found.queue, location.where, marker)
    dst = tree.day_dir(found.queue, Where.CANCELLED, job_id)
    if not tree.move(src, marker.name, dst, job_id):
        return False
    cancelled = _transitions.reopened(marker, marker.epoch + 1)
    _open_epoch(tree, cancelled, RecordType.CANCELLED, path(dst, job_id))
    return True


def request_cancel(tree: Tree, job_id: str) -> None:
    """Ask a running job's owner to stop: the job's ``cancel`` file (O_EXCL)."""
    with tree.dirs.open(Tree.job_dir(job_id)) as fd:
        try:
            _durable.create_empty(fd, _names.CANCEL)
        except FileExistsError:
            return
        if tree.durable:
            _durable.fsync_dir(fd)


def cancel_requested(tree: Tree, job_ids: Iterable[str]) -> set[str]:
    """Which of these jobs have a cancel request."""
    return {j for j in job_ids if tree.exists(Tree.job_dir(j), _names.CANCEL)}


def hold(tree: Tree, job_id: str) -> JobStatus:
    """
    Park a waiting or pending job in ``held/``: one rename, won against any
    claim. It keeps its unique key and does not run until `release_hold`.
    Returns HELD, or the status of a job that could not be held (running or final).
    """
    tree.for_writing()
    for _ in range(_TRIES):
        found = _read.find(tree, job_id)
        if isinstance(found, JobState):
            return found.status
        location = found.location
        marker = location.marker
        if location.where not in (Where.WAITING, Where.PENDING) or marker is None:
            return location.status
        dst = tree.day_dir(found.queue, Where.HELD, job_id)
        src = tree.live_dir(found.queue, location.where, marker)
        if tree.move(src, marker.name, dst, job_id):
            held = _transitions.reopened(marker, marker.epoch + 1)
            _open_epoch(tree, held, RecordType.HELD, path(dst, job_id), held_marker=marker.name)
            return JobStatus.HELD
    raise StoreError(f"job {job_id} kept moving while being held")


def release_hold(tree: Tree, job_id: str) -> JobStatus | None:
    """Put a held job back where it was held from: its new status; None if it was not held."""
    tree.for_writing()
    for _ in range(_TRIES):
        found = _read.find(tree, job_id)
        if isinstance(found, JobState) or found.location.where is not Where.HELD:
            return None
        status = _end_hold(tree, found, None)
        if status is not None:
            return status
    raise StoreError(f"job {job_id} kept moving while being released")


def _held_marker(segments: Segments, job_id: str) -> Marker:
    """The name a held job had before its hold, from its newest `held` record."""
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
    return old


def _end_hold(tree: Tree, found: Found, to: Where | None) -> JobStatus | None:
    """
    Move a held job to the final directory `to`, or (None) back to where it was
    held from. Returns its new status; None if someone else moved it first.
    """
    job_id, queue = found.job_id, found.queue
    old = _held_marker(found.segments, job_id)
    epoch = found.newest_epoch + 1
    if to is not None:
        new, dst, name, kind = (
            _transitions.reopened(old, epoch),
            tree.day_dir(queue, to, job_id),
            job_id,
            RecordType(to.value),
        )
        status = Location(to).status
    else:
        back = _transitions.released_from_hold(old, epoch, to_ms(tree.clock.now()))
        assert back.marker is not None
        new, dst, name, kind = (
            back.marker,
            tree.live_dir(queue, back.where, back.marker),
            back.marker.name,
            RecordType.RELEASED,
        )
        status = back.status
    if not tree.move(tree.day_dir(queue, Where.HELD, job_id), job_id, dst, name):
        return None
    _open_epoch(tree, new, kind, path(dst, name))
    return status


def retry(tree: Tree, job_id: str, more_attempts: int = 1) -> None:
    """
    Re-open a failed, timed-out or cancelled job as a new epoch with
    `more_attempts` more attempts. One rename out of its final directory
    decides among concurrent retries and prunes. A job with a unique key first
    takes the key back (UniqueKeyConflict if another unfinished job holds it;
    the job then stays final). A retry never deletes a job: if it fails, the
    job is still final.
    """
    if isinstance(more_attempts, bool) or not 1 <= more_attempts <= _names.MAX_ATTEMPTS_LIMIT:
        raise InvalidJob(f"more_attempts must be 1..{_names.MAX_ATTEMPTS_LIMIT}")
    tree.for_writing()
    found = _read.find(tree, job_id)
    if isinstance(found, JobState):
        raise InvalidJob(f"job {job_id} is {found.status.value} and cannot be read: not retried")
    where = found.location.where
    if where not in _RETRYABLE:
        raise InvalidJob(
            f"job {job_id} is {found.location.status.value}: only failed, timed-out or "
            "cancelled jobs can be retried"
        )
    state = build_state(
        job_id, found.queue, found.spec, found.segments, found.location, lambda _: None
    )
    for parent in state.depends_on:
        status = _depends.parent_status(tree, parent)
        if status is not JobStatus.COMPLETED:
            raise DependencyFailed(
                f"job {job_id} was not retried: "
                f"{_depends.failure_message(tree, parent, status, verb='is')}; "
                "a job runs only once every job it depends on has completed"
            )
    new = _transitions.retried(
        state.priority,
        to_ms(tree.clock.now()),
        job_id,
        found.newest_epoch + 1,
        state.attempts,
        more_attempts,
        _names.MAX_ATTEMPTS_LIMIT,
    )
    final = tree.day_dir(found.queue, where, job_id)
    staging, lock_fd = tree.create_staging(f"retry.{job_id}")
    tmp_fd = tree.dirs.cached((_names.TMP,))
    try:
        key = state.unique_key
        if key is not None:
            owner = _unique.take(tree, key, job_id, found.queue, staging)
            if owner != job_id:
                raise UniqueKeyConflict(
                    f"job {job_id} was not retried: its unique key {key!r} now belongs to "
                    f"unfinished job {owner}"
                )
        _retire_cancel_request(tree, job_id, new.epoch)
        pending = tree.live_dir(found.queue, Where.PENDING, new)
        if not tree.move(final, job_id, pending, new.name):
            logger.info("job %s was retried (or removed) by someone else meanwhile", job_id)
            return
        _open_epoch(tree, new, RecordType.RETRIED, path(pending, new.name))
    finally:
        _durable.unlink_quiet(tmp_fd, staging)
        os.close(lock_fd)


def _retire_cancel_request(tree: Tree, job_id: str, epoch: int) -> None:
    """A retried job must not be cancelled again by an old request: rename it aside."""
    with tree.dirs.open(Tree.job_dir(job_id)) as fd:
        try:
            os.rename(
                _names.CANCEL, f"{_names.CANCEL}.{epoch:06d}.done", src_dir_fd=fd, dst_dir_fd=fd
            )
        except FileNotFoundError:
            pass


def prune(tree: Tree, queue: str, cutoff: dt.datetime, statuses: Iterable[JobStatus]) -> int:
    """
    Delete the final jobs of `queue` in `statuses` that ended before `cutoff`,
    with all their files. Only day shards up to the cutoff's day are read: a
    job pushed after it cannot have ended before it. A final marker is trusted
    only when the job's own journal agrees that the job is there: a marker
    planted beside a live job never gets that job deleted. Returns how many went.
    """
    wheres = []
    for status in statuses:
        if not status.is_final:
            raise InvalidJob(f"only final jobs can be pruned, not {status.value}")
        wheres.append(Where(status.value))
    if not tree.for_reading():
        return 0
    tree.refresh_format()
    tree.for_writing()
    cutoff_day = cutoff.astimezone(dt.UTC).strftime("%Y-%m-%d")
    pruned = 0
    for where in wheres:
        top = tree.queue_dir(queue, where)
        for day in sorted(tree.names(top)):
            if day > cutoff_day:
                break
            for job_id in (n for n in tree.names((*top, day)) if _ids.is_job_id(n)):
                if _prunable(tree, job_id, queue, where, cutoff) and _prune_one(
                    tree, top, day, job_id
                ):
                    pruned += 1
            tree.rmdir_empty((*top, day))
    return pruned


def _prunable(tree: Tree, job_id: str, queue: str, where: Where, cutoff: dt.datetime) -> bool:
    """The job is final here, by its own journal, and ended before `cutoff`."""
    try:
        found = _read.find(tree, job_id)
    except Exception as exc:  # one damaged job must not stop the prune
        logger.warning("prune: job %s skipped: %s", job_id, exc)
        return False
    if isinstance(found, JobState):
        return found.status.value == where.value and found.created_at < cutoff
    if found.queue != queue or found.location.where is not where:
        logger.warning(
            "prune: %s/%s/%s is not where job %s is (its journal says %s): left alone",
            queue,
            where.value,
            job_id,
            job_id,
            found.location.where.value,
        )
        return False
    state = _read.state_of(tree, found)
    if (state.finished_at or state.created_at) >= cutoff:
        return False
    if _deptree.has_dependents(tree, job_id) and _depends.unfinished_dependents(tree, job_id):
        logger.info("prune: job %s skipped: jobs that depend on it are unfinished", job_id)
        return False
    return True


def _prune_one(tree: Tree, top: tuple[str, ...], day: str, job_id: str) -> bool:
    """One rename into tmp/ decides against a concurrent retry; then delete the job."""
    tmp_fd = tree.dirs.cached((_names.TMP,))
    aside = f"pruned.{job_id}.{secrets.token_hex(4)}"
    try:
        with tree.dirs.open((*top, day)) as fd:
            os.rename(job_id, aside, src_dir_fd=fd, dst_dir_fd=tmp_fd)
    except FileNotFoundError:
        return False  # retried or pruned by someone else meanwhile
    tree.discard_job(job_id)
    _durable.unlink_quiet(tmp_fd, aside)
    return True


def owned(tree: Tree, queue: str, me: str) -> set[str]:
    """Ids of the jobs whose running markers in `queue` name worker `me`."""
    return {marker.job_id for marker, worker in tree.running(queue) if worker == me}
