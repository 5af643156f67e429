"""
Dependencies: a blocked job is released exactly once, whichever host finishes its
last parent, and a parent that does not complete cancels what depends on it.

A job pushed with `Job.depends_on` gets ``jobs/<parent>/dependents/<child>`` in
each parent's folder before its commit, and commits to ``blocked/`` unless every
parent has completed already. Two sides check it, so that whichever comes last
sees everything: its pusher, after the commit; and each parent's finisher, after
the rename that makes the parent final (completed, failed, timed out, cancelled
or quarantined). A check reads the parents' states, then:

* all completed: it renames the child ``blocked/`` -> ``pending/`` (``waiting/``
  if its `scheduled_at` is ahead) in a new epoch, with an ``unblocked`` record;
* one failed, timed out, was cancelled, is corrupt or is gone: it renames the
  child ``blocked/`` -> ``cancelled/`` in a new epoch, its error a
  `DependencyFailed` that names the parent; this cascades to the child's own
  dependents;
* otherwise nothing: the finisher of a parent still to end will look again.

Both renames take the name out of ``blocked/``: exactly one actor wins, so a
child is released (or cancelled) once.

Every actor first creates ``queues/<queue>/releasing/<id>.<token>`` and holds
its OFD lock while it works: the pusher for the child, a finisher for itself
(the parent, *before* its finish rename: a finisher killed between that rename
and its check leaves the entry behind), a canceller for each job it cancels
(before the rename, so a cascade cut short is finished later). The entry is
removed when the work is done. A pusher that saw a parent *running* keeps its
entry: that parent's finisher may have looked for dependents just before this
one appeared. Workers take over the entries whose holder is gone at every
rescue interval (`sweep`); so does fsck, which also checks every blocked job
(`check_root`).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable

from . import _deptree, _listing, _read, _transitions
from ._clock import to_ms
from ._deptree import Entry, dependents
from ._json import JSON
from ._read import Found
from ._state import build_state, depends_on_of
from ._transitions import Location, Where
from ._tree import Tree, path, record
from .errors import JobNotFound
from .journal import Record, RecordType
from .states import JobState, JobStatus

logger = logging.getLogger("fsjobs.store")

#: How a cancelled dependent's error is recorded (`JobState.error.type`).
DEPENDENCY_FAILED = "fsjobs.errors.DependencyFailed"
#: A cascade holds at most this many entries locked at once; older ones are left for a sweep.
MAX_HELD = 64
_FINAL_WHERES = tuple(w for w in Where if w.is_final)


class Verdict(enum.Enum):
    """What a check found for a blocked job."""

    RELEASE = "release"  #: every parent completed
    CANCEL = "cancel"  #: a parent did not complete (or is gone)
    RUNNING = "running"  #: not yet, and some parent is running
    WAIT = "wait"  #: not yet, and no parent is running
    NOT_BLOCKED = "not_blocked"  #: the job is not (or no longer) in blocked/


# -- reading parents ----------------------------------------------------------------------


def parent_status(tree: Tree, parent: str) -> JobStatus | None:
    """
    A parent's status; None if there is no such job. A name seen through a
    cache may be stale (a marker that has just moved): a parent that looks
    unfinished is looked up afresh in its final directories.
    """
    try:
        found = _read.find(tree, parent)
    except JobNotFound:
        return None
    if isinstance(found, JobState):
        return found.status
    location = found.location
    if not location.where.is_final:
        for where in _FINAL_WHERES:
            if tree.exists(tree.day_dir(found.queue, where, parent), parent):
                return Location(where).status
    return location.status


def statuses_at_push(tree: Tree, parents: Iterable[str]) -> dict[str, JobStatus]:
    """Each parent's status; JobNotFound for a parent that does not exist."""
    out = {}
    for parent in parents:
        status = parent_status(tree, parent)
        if status is None:
            raise JobNotFound(parent, f"a job cannot depend on {parent!r}: no such job")
        out[parent] = status
    return out


def failed_parent(statuses: dict[str, JobStatus | None]) -> str | None:
    """The first parent that ended without completing (or is gone), if any."""
    for parent, status in statuses.items():
        if status is None or (status.is_final and status is not JobStatus.COMPLETED):
            return parent
    return None


def failure_message(tree: Tree, parent: str, status: JobStatus | None, verb: str = "ended") -> str:
    """``parent <id> (step 'fetch') ended failed``: what a `DependencyFailed` says."""
    step = None
    try:
        found = _read.find(tree, parent)
        step = found.step if isinstance(found, JobState) else _step_of(found)
    except JobNotFound:
        pass
    name = f"parent {parent}" + (f" (step {step!r})" if step else "")
    if status is None:
        return f"{name} is gone"
    return f"{name} {verb} {status.value}"


def _step_of(found: Found) -> str | None:
    workflow = found.spec.get("workflow")
    step = workflow.get("step") if isinstance(workflow, dict) else None
    return step if isinstance(step, str) else None


def link(tree: Tree, parents: Iterable[str], child: str) -> None:
    """``dependents/<child>`` in every parent's folder (before the child's commit)."""
    for parent in parents:
        try:
            _deptree.add_dependent(tree, parent, child)
        except FileNotFoundError as exc:
            raise JobNotFound(parent, f"job {parent} was removed while {child} was pushed") from exc


def unlink(tree: Tree, parents: Iterable[str], child: str) -> None:
    """Undo `link` for a child that was not published (best effort)."""
    for parent in parents:
        try:
            _deptree.remove_dependent(tree, parent, child)
        except OSError:
            pass


def unfinished_dependents(tree: Tree, job_id: str) -> list[str]:
    """The dependents of `job_id` that are not final: prune leaves such a job alone."""
    out = []
    for child in dependents(tree, job_id):
        status = _read.status_of(tree, child)
        if status is not None and not status.is_final:
            out.append(child)
    return out


def parent_results(tree: Tree, child: str) -> dict[str, JSON]:
    """
    What `Context.parents` holds for `child`: each parent's result, by step name
    for a parent in the child's own workflow, by id otherwise.
    """
    found = _read.find(tree, child)
    if isinstance(found, JobState):
        return {}
    state = _read.state_of(tree, found)
    out: dict[str, JSON] = {}
    for parent in state.depends_on:
        p = _read.get(tree, parent)
        same = state.workflow is not None and p.workflow == state.workflow and p.step
        out[p.step if same and p.step else parent] = p.result
    return out


# -- the checks -----------------------------------------------------------------------------


def decide(tree: Tree, found: Found) -> tuple[Verdict, str | None, JobStatus | None]:
    """What to do with a blocked job, by its parents: (verdict, failed parent, its status)."""
    running, done = False, True
    for parent in depends_on_of(found.spec):
        status = parent_status(tree, parent)
        if status is None or (status.is_final and status is not JobStatus.COMPLETED):
            return Verdict.CANCEL, parent, status
        if status is not JobStatus.COMPLETED:
            done = False
            running = running or status is JobStatus.RUNNING
    if done:
        return Verdict.RELEASE, None, None
    return (Verdict.RUNNING if running else Verdict.WAIT), None, None


def _blocked(tree: Tree, job_id: str) -> Found | None:
    """The job, if its marker is in blocked/ (not a step still staged in tmp/)."""
    try:
        found = _read.find(tree, job_id)
    except JobNotFound:
        return None
    if isinstance(found, JobState) or found.location.where is not Where.BLOCKED:
        return None
    return None if found.location.staged else found


def _check(tree: Tree, job_id: str) -> tuple[Verdict, Entry | None]:
    """
    Check one job that may be blocked, and act. For a job it cancels, returns the
    releasing entry it holds: the caller settles the job's dependents, then drops it.
    """
    try:
        found = _read.find(tree, job_id)
    except JobNotFound:
        return Verdict.NOT_BLOCKED, None
    if isinstance(found, JobState) or found.location.where is not Where.BLOCKED:
        return Verdict.NOT_BLOCKED, None
    if found.location.staged:  # a workflow's step on its way to blocked/: look again later
        _deptree.leave_entry(tree, found.queue, job_id)
        return Verdict.WAIT, None
    verdict, parent, status = decide(tree, found)
    if verdict is Verdict.RELEASE:
        _release(tree, found)
    elif verdict is Verdict.CANCEL:
        assert parent is not None
        entry = _deptree.open_entry(tree, found.queue, job_id)
        try:
            won = cancel_blocked(tree, found, failure_message(tree, parent, status), parent)
        except BaseException:
            _deptree.close_entry(tree, entry, remove=False)  # a sweep finishes it
            raise
        if won:
            return verdict, entry
        _deptree.close_entry(tree, entry, remove=True)
    return verdict, None


def _release(tree: Tree, found: Found) -> bool:
    """blocked/ -> pending/ (or waiting/), epoch + 1, an ``unblocked`` record; True if won."""
    state = build_state(
        found.job_id, found.queue, found.spec, found.segments, found.location, _none
    )
    epoch = found.newest_epoch + 1
    now = tree.clock.now()
    sched = None if state.scheduled_at is None else to_ms(state.scheduled_at)
    target = _transitions.unblocked(
        state.priority, to_ms(now), sched, found.job_id, epoch, state.max_attempts
    )
    dst, name = tree.place(found.queue, target.where, target.marker, found.job_id)
    src = tree.day_dir(found.queue, Where.BLOCKED, found.job_id)
    if not tree.move(src, found.job_id, dst, name):
        return False
    rec = record(
        RecordType.UNBLOCKED,
        now,
        attempt=0,
        max_attempts=state.max_attempts,
        marker=path(dst, name),
    )
    _open_epoch(tree, found.job_id, epoch, rec)
    return True


def cancel_blocked(tree: Tree, found: Found, why: str | None, parent: str | None = None) -> bool:
    """
    blocked/ -> cancelled/, epoch + 1; True if won. `why` (a parent that did not
    complete) becomes the job's `DependencyFailed` error; None: an operator's cancel.
    """
    state = build_state(
        found.job_id, found.queue, found.spec, found.segments, found.location, _none
    )
    dst = tree.day_dir(found.queue, Where.CANCELLED, found.job_id)
    src = tree.day_dir(found.queue, Where.BLOCKED, found.job_id)
    if not tree.move(src, found.job_id, dst, found.job_id):
        return False
    data: dict[str, JSON] = {
        "attempt": state.attempts,
        "max_attempts": state.max_attempts,
        "marker": path(dst, found.job_id),
    }
    if why is not None:
        data["error"] = {"type": DEPENDENCY_FAILED, "message": why, "traceback": ""}
        data["parent"] = parent
    rec = record(RecordType.CANCELLED, tree.clock.now(), **data)
    _open_epoch(tree, found.job_id, found.newest_epoch + 1, rec)
    return True


def _open_epoch(tree: Tree, job_id: str, epoch: int, rec: Record) -> None:
    try:
        tree.open_epoch(job_id, epoch, rec)
    except OSError as exc:  # the rename decided; fsck adds a missing terminal record
        logger.warning("job %s: its record of epoch %d was not written: %s", job_id, epoch, exc)


def _none(_: str) -> JSON:
    return None


def settle(tree: Tree, ids: Iterable[str]) -> bool:
    """
    Check each of `ids` (jobs that may be blocked), and cascade through those it
    cancels. True if one of them waits on a parent seen running (worth a later look).
    """
    keep = False
    stack: list[str | Entry] = list(reversed(list(ids)))
    held: list[Entry] = []
    seen: set[str] = set()
    try:
        while stack:
            item = stack.pop()
            if isinstance(item, Entry):  # its dependents are settled: the entry goes
                _deptree.close_entry(tree, item, remove=True)
                if item in held:
                    held.remove(item)
                continue
            if item in seen:
                continue
            seen.add(item)
            verdict, entry = _check(tree, item)
            keep = keep or verdict is Verdict.RUNNING
            if entry is not None:  # cancelled: its own dependents next, then its entry
                held.append(entry)
                stack.append(entry)
                stack.extend(reversed(dependents(tree, item)))
                if len(held) > MAX_HELD:
                    _deptree.close_entry(tree, held.pop(0), remove=False)
    except BaseException:
        for entry in held:
            _deptree.close_entry(tree, entry, remove=False)  # left for a sweep
        raise
    return keep


def resolve(tree: Tree, job_id: str) -> bool:
    """
    Settle what is pending around `job_id`: the job itself if it is blocked, its
    dependents if it is final. True if a later look is worth it (see `settle`).
    """
    try:
        found = _read.find(tree, job_id)
    except JobNotFound:
        return False
    status = found.status if isinstance(found, JobState) else found.location.status
    if status is JobStatus.BLOCKED:
        return settle(tree, [job_id])
    if status.is_final:
        return settle(tree, dependents(tree, job_id))
    return False


# -- the actors ------------------------------------------------------------------------------


def after_push(tree: Tree, queue: str, child: str) -> None:
    """The pusher's check, after committing `child` to blocked/ (never raises: it is pushed)."""
    try:
        entry = _deptree.open_entry(tree, queue, child)
    except OSError as exc:  # say, a full disk: check anyway; fsck covers a crash now
        logger.warning("job %s: no releasing entry (%s); checking without one", child, exc)
        entry = None
    try:
        keep = settle(tree, [child])
    except BaseException as exc:
        if entry is not None:
            _deptree.close_entry(tree, entry, remove=False)
        if not isinstance(exc, Exception):
            raise
        logger.exception("job %s: its dependency check is left to a sweep", child)
        return
    if entry is not None:
        _deptree.close_entry(tree, entry, remove=not keep)


def intent(tree: Tree, queue: str, job_id: str, job_fd: int | None = None) -> Entry | None:
    """
    Before a rename that makes `job_id` final: an entry for it, if any job ever
    depended on it. `done` settles its dependents once the rename is made.
    """
    if not _deptree.has_dependents(tree, job_id, job_fd):
        return None
    return _deptree.open_entry(tree, queue, job_id)


def done(tree: Tree, entry: Entry | None, won: bool) -> None:
    """After the rename `intent` prepared: settle the dependents if it won; drop the entry."""
    if entry is None:
        return
    if not won:
        _deptree.close_entry(tree, entry, remove=True)
        return
    try:
        resolve(tree, entry.job_id)
    except BaseException as exc:
        _deptree.close_entry(tree, entry, remove=False)
        if not isinstance(exc, Exception):
            raise
        logger.exception("job %s: settling its dependents is left to a sweep", entry.job_id)
        return
    _deptree.close_entry(tree, entry, remove=True)


def leave(tree: Tree, entry: Entry | None) -> None:
    """Drop the lock of an `intent` whose rename went wrong: a sweep settles it."""
    if entry is not None:
        _deptree.close_entry(tree, entry, remove=False)


def sweep(tree: Tree, queue: str) -> int:
    """
    Take over the releasing entries of `queue` whose holder is gone (a worker
    does this every rescue interval). Returns how many it settled.
    """
    settled = 0
    kept: dict[str, bool] = {}
    for job_id, name in _deptree.entries(tree, queue):
        entry = _deptree.take_entry(tree, queue, job_id, name)
        if entry is None:
            continue  # its holder is at work
        try:
            if job_id not in kept:
                kept[job_id] = resolve(tree, job_id)
        except BaseException as exc:
            _deptree.close_entry(tree, entry, remove=False)
            if not isinstance(exc, Exception):
                raise
            logger.exception("job %s: settling its dependencies failed; tried again later", job_id)
            continue
        _deptree.close_entry(tree, entry, remove=not kept[job_id])
        settled += 1
    return settled


def check_root(tree: Tree, repair: bool) -> list[tuple[str, str, str, bool]]:
    """
    fsck: every blocked job whose parents have all ended (or one failed) is
    released (or cancelled) with `repair`, else reported; with `repair`, the
    entries of dead holders are settled too. Returns (kind, path, message, repaired).
    """
    problems = []
    for queue in tree.queues():
        for job_id in list(_listing.job_ids(tree, queue, Where.BLOCKED)):
            found = _blocked(tree, job_id)
            if found is None:
                continue
            verdict, parent, status = decide(tree, found)
            if verdict not in (Verdict.RELEASE, Verdict.CANCEL):
                continue
            if repair:
                settle(tree, [job_id])
            what = (
                "its parents completed" if parent is None else failure_message(tree, parent, status)
            )
            where = path(tree.day_dir(queue, Where.BLOCKED, job_id), job_id)
            problems.append(("blocked-missed", where, f"still blocked, but {what}", repair))
        if repair:
            sweep(tree, queue)
    return problems
