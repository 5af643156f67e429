"""
Finish: the owner of a claim publishes how its attempt ended.

The outcome is recorded in the claim's own segment (a result over 64 KiB goes to
``attempts/<epoch>/result.json``), made durable, and then published with one
rename of the running marker: to a final directory, to ``waiting/`` for a
retry, or back to ``pending/``. A rename that finds the marker gone means the
job was rescued while it ran (fenced): nothing is published.

Several outcomes finish together as a group commit: every record, then one
parallel fsync of their segments and folders, then every rename, then one fsync
per target directory. Only the files that need it are flushed, so pushers are
not made to wait for anything else the workers wrote.

Once a task has run, its attempt counts whatever happens next. An outcome that
cannot be published (a full disk, an unwritable or hostile target directory)
gives the job back to ``pending/`` with the attempt counted and the attempt's
unpublished files removed; the error is the item's result, and the worker
backs off. A job whose last attempt could not be published ends ``failed``
(``PublishFailed``) at its next claim.

A job that other jobs depend on settles them once it is final (`_depends`):
its releasing entry is made before the rename, and the check after it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import attrs

from . import _claim, _depends, _durable, _names, _transitions
from ._claim import Claim
from ._clock import format_time, from_ms
from ._deptree import Entry
from ._json import JSON, dumps
from ._paths import Parts
from ._text import printable
from ._transitions import Ending, Target, Where
from ._tree import Tree, path, record
from .errors import PublishFailed
from .journal import Record, RecordType
from .model import MAX_RESULT_BYTES
from .states import ErrorInfo

logger = logging.getLogger("fsjobs.store")

INLINE_RESULT_BYTES = 64 * 1024  # larger results go to attempts/<epoch>/result.json


@attrs.frozen
class Outcome:
    """How an attempt ended, as the worker tells the store."""

    ending: Ending = attrs.field(converter=Ending)
    result: JSON = None
    error: ErrorInfo | None = None
    #: for `Ending.RETRY`: when the next attempt is due (ms since the epoch)
    retry_at_ms: int | None = None


@attrs.define
class _Recorded:
    index: int
    claim: Claim
    target: Target
    target_dir: Parts


def finish_many(tree: Tree, items: Sequence[tuple[Claim, Outcome]]) -> list[bool | Exception]:
    """
    Publish several outcomes as a group commit. One result per item, in order:
    True (published), False (fenced: rescued while it ran, nothing published),
    or the error that kept it from being published (the job is then back in
    pending with the attempt counted; see the module docstring).
    """
    results: list[bool | Exception | None] = [None] * len(items)
    recorded: list[_Recorded] = []
    for i, (won, outcome) in enumerate(items):
        if won.closed:
            results[i] = False
            continue
        try:
            target, target_dir, rec = _terminal(tree, won, outcome)
            tree.append(won.segment_fd, rec, sync=False)
        except Exception as exc:
            results[i] = _not_published(tree, won, exc)
            continue
        recorded.append(_Recorded(i, won, target, target_dir))
    if tree.durable and recorded:
        try:
            _durable.fsync_all(
                [fd for r in recorded for fd in (r.claim.segment_fd, r.claim.job_fd)]
            )
        except OSError as exc:
            for r in recorded:
                results[r.index] = _not_published(tree, r.claim, exc)
            recorded = []
    intents = _intents(tree, recorded)
    try:
        moved = _move(tree, recorded, results)
        _sync_targets(tree, moved, results)
    except BaseException:
        for entry in intents.values():
            _depends.leave(tree, entry)  # a sweep settles them
        raise
    went = {i for indexes in moved.values() for i in indexes}
    for i, entry in intents.items():
        _depends.done(tree, entry, i in went)
    return [False if r is None else r for r in results]


def _move(
    tree: Tree, recorded: list[_Recorded], results: list[bool | Exception | None]
) -> dict[Parts, list[int]]:
    """The commit renames; returns the indexes of the items moved, by target directory."""
    moved: dict[Parts, list[int]] = {}
    for r in recorded:
        try:
            moved_here = tree.move(
                tree.running_dir(r.claim.queue),
                r.claim.running_name,
                r.target_dir,
                r.target.name,
                sync=False,
            )
        except Exception as exc:
            results[r.index] = _not_published(tree, r.claim, exc)
            continue
        _claim.close(r.claim)
        if moved_here:
            moved.setdefault(r.target_dir, []).append(r.index)
        else:
            logger.warning(
                "job %s was rescued while it ran (fenced): its outcome is discarded", r.claim.job_id
            )
        results[r.index] = moved_here
    return moved


def _intents(tree: Tree, recorded: list[_Recorded]) -> dict[int, Entry]:
    """Before the renames: a releasing entry for each job going final that has dependents."""
    intents = {}
    for r in recorded:
        if not r.target.where.is_final:
            continue
        try:
            entry = _depends.intent(tree, r.claim.queue, r.claim.job_id, r.claim.job_fd)
        except OSError as exc:  # the outcome still goes out; fsck settles the dependents
            logger.error("job %s: no releasing entry for its dependents: %s", r.claim.job_id, exc)
            continue
        if entry is not None:
            intents[r.index] = entry
    return intents


def finish(tree: Tree, won: Claim, outcome: Outcome) -> bool:
    """`finish_many` of one outcome; raises the error that kept it from being published."""
    (result,) = finish_many(tree, [(won, outcome)])
    if isinstance(result, Exception):
        raise result
    return result


def _terminal(tree: Tree, won: Claim, outcome: Outcome) -> tuple[Target, Parts, Record]:
    """Where the marker goes for `outcome`, and the terminal record that says so."""
    target = _transitions.finished(won.marker, outcome.ending, outcome.retry_at_ms)
    if target.marker is not None:
        target_dir = tree.live_dir(won.queue, target.where, target.marker)
    else:
        target_dir = tree.day_dir(won.queue, target.where, won.job_id)
    data: dict[str, JSON] = {"attempt": won.marker.attempt}
    if target.marker is not None:
        data["attempt"] = target.marker.attempt
    if outcome.error is not None:
        data["error"] = _error_json(outcome.error)
    if outcome.ending is Ending.RETRY:
        assert outcome.retry_at_ms is not None
        data["retry_at"] = format_time(from_ms(outcome.retry_at_ms))
    if target.where.is_final:
        data["max_attempts"] = won.marker.max_attempts
    if outcome.ending is Ending.COMPLETED:
        _store_result(tree, won, outcome.result, data)
    data["marker"] = path(target_dir, target.name)
    return target, target_dir, record(target.record, tree.clock.now(), **data)


def _error_json(error: ErrorInfo) -> JSON:
    return {"type": error.type, "message": error.message, "traceback": error.traceback}


def _store_result(tree: Tree, won: Claim, result: JSON, data: dict[str, JSON]) -> None:
    encoded = dumps(result).encode()
    if len(encoded) > MAX_RESULT_BYTES:
        raise ValueError(f"result is {len(encoded)} bytes; the limit is {MAX_RESULT_BYTES}")
    if len(encoded) <= INLINE_RESULT_BYTES:
        data["result"] = result
        return
    with tree.dirs.open(_claim.attempt_dir(won), create=True) as fd:
        _durable.write_new(fd, _names.RESULT_FILE, encoded, sync=tree.durable)
        if tree.durable:
            _durable.fsync_dir(fd)
    epoch = _names.attempt_dir(won.marker.epoch)
    data["result_file"] = f"{_names.ATTEMPTS}/{epoch}/{_names.RESULT_FILE}"


def _not_published(tree: Tree, won: Claim, exc: BaseException) -> Exception:
    """
    The outcome could not be published: record why (if the disk lets us), remove
    the attempt's unpublished files, and give the job back to pending with the
    attempt counted. A job whose last attempt already ran (its claim could only
    end it) is quarantined in ``corrupt/`` instead, when that can be written:
    it must not come back without end. Returns the `PublishFailed` error.
    """
    logger.error("job %s: could not publish its outcome: %s", won.job_id, printable(exc))
    error = PublishFailed(
        f"job {won.job_id}: the outcome of attempt {won.marker.attempt} "
        f"could not be published: {exc}"
    )
    error.__cause__ = exc
    if not won.runnable and _quarantine(tree, won, exc):
        return error
    back = _transitions.publish_failed(won.marker)
    pending = tree.live_dir(won.queue, Where.PENDING, back)
    _record_release(tree, won, exc, path(pending, back.name))
    try:
        with tree.dirs.open(Tree.job_dir(won.job_id, _names.ATTEMPTS)) as fd:
            _durable.rmtree_at(fd, _names.attempt_dir(won.marker.epoch))
    except OSError:
        pass  # nothing was written there, or it cannot be removed: fsck reports it
    try:
        tree.move(tree.running_dir(won.queue), won.running_name, pending, back.name)
    except OSError:
        logger.exception("job %s: could not give it back; rescue will", won.job_id)
    return error


def _record_release(tree: Tree, won: Claim, exc: BaseException, marker: str) -> None:
    if won.closed:
        return
    rec = record(
        RecordType.RELEASED,
        tree.clock.now(),
        attempt=won.marker.attempt,
        reason="publish_failed",
        error=_error_json(ErrorInfo(type(exc).__name__, str(exc))),
        marker=marker,
    )
    try:
        tree.append(won.segment_fd, rec)
    except OSError:
        pass  # a full disk: the attempt still counts through the marker's name
    _claim.close(won)


def _quarantine(tree: Tree, won: Claim, exc: BaseException) -> bool:
    """Move a job that can only end, but not as it should, to ``corrupt/``; True if it went."""
    target = _transitions.finished(won.marker, Ending.CORRUPT)
    dst = tree.day_dir(won.queue, Where.CORRUPT, won.job_id)
    why = f"its outcome could not be published: {exc}"
    rec = record(
        RecordType.CORRUPT,
        tree.clock.now(),
        attempt=won.marker.attempt,
        max_attempts=won.marker.max_attempts,
        error=_error_json(ErrorInfo("PublishFailed", why)),
        marker=path(dst, target.name),
    )
    try:
        if not won.closed:
            tree.append(won.segment_fd, rec)
        moved = tree.move(tree.running_dir(won.queue), won.running_name, dst, target.name)
    except OSError:
        return False
    _claim.close(won)
    return moved


def _sync_targets(
    tree: Tree, moved: dict[Parts, list[int]], results: list[bool | Exception | None]
) -> None:
    """Make the finishing renames durable; an error is the result of each job it covers."""
    if not tree.durable or not moved:
        return
    for parts, indexes in moved.items():
        try:
            _durable.fsync_dir(tree.dirs.borrow(parts))
        except FileNotFoundError:
            pass  # emptied and removed since: those markers have moved on already
        except OSError as exc:
            for i in indexes:
                results[i] = exc
