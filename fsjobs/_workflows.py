"""
Workflows: a named graph of jobs, pushed with one commit point, all or nothing.

A push (`push`), under the lock ``tmp/wflock.<wf>.<token>`` (OFD-locked for the
whole push; it is created under another name and renamed once locked):

1. each step gets an id and its folder, whose ``pushed`` record carries the
   spec with ``depends_on`` (the steps it is after, and its own `Job.depends_on`)
   and ``workflow`` (``{"id", "name", "step"}``);
2. each step is staged as ``tmp/wfstep.<wf>.<id>``, a hard link of its segment
   0, and each parent gets ``dependents/<child>``; everything is made durable;
3. **commit**: one ``link()`` of the manifest to ``workflows/<shard>/<wf>.json``;
4. publish: each staged step is renamed into ``blocked/`` (the steps with
   parents, first) or ``pending/`` (the roots, last; ``waiting/`` if scheduled
   ahead); then the lock is removed.

Before the commit nothing is visible; from it on, every step exists: `get`
reports a step still staged as pending (or scheduled) or blocked. A push whose
lock can be taken has lost its pusher: a sweep (any worker, every rescue
interval; fsck) finishes it. If the manifest is there it publishes what is
still staged; if not, it aborts the push by linking a tombstone at the
manifest's name (exactly one of the commit and the abort wins: ``link`` has one
winner) and removes the steps.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import secrets
import time

import attrs

from . import _depends, _deptree, _durable, _ids, _json, _names, _push, _read, _transitions
from ._clock import format_time, parse_time, to_ms
from ._json import JSON
from ._names import Marker
from ._push import Staged
from ._state import spec_in
from ._transitions import Location, Where
from ._tree import Tree
from .errors import JobNotFound, PushError, StoreError
from .states import JobState, WorkflowState, workflow_status
from .workflow import Step, Workflow

logger = logging.getLogger("fsjobs.store")


# -- push ------------------------------------------------------------------------------------


def push(tree: Tree, wf: Workflow, default_queue: str) -> str:
    """Push every step of `wf`, or none; returns the workflow id once it is committed."""
    order = wf.order()  # InvalidJob: unknown steps, cycles; before anything is written
    queues = {s.name: _names.check_name("queue", s.queue or default_queue) for s in order}
    tree.for_writing()
    tree.check_space()
    tree.add_feature("depends_on")
    tree.add_feature("workflows")
    _depends.statuses_at_push(tree, sorted({p for s in order for p in s.job.depends_on}))
    now = tree.clock.now()
    now_ms = to_ms(now)
    wf_id = _ids.new_job_id(now_ms)
    ids = {s.name: _ids.new_job_id(now_ms) for s in order}
    # The lock holds the plan: an abort removes exactly what this push may have written.
    plan: dict[str, JSON] = {
        "id": wf_id,
        "steps": list[JSON](ids.values()),
        "outside": {ids[s.name]: list[JSON](s.job.depends_on) for s in order if s.job.depends_on},
    }
    lock_name, lock_fd = _lock(tree, wf_id, plan)
    tmp_fd = tree.dirs.cached((_names.TMP,))
    staged: list[Staged] = []
    try:
        for step in order:
            parents = (*step.job.depends_on, *(ids[a] for a in step.after))
            job = attrs.evolve(step.job, depends_on=parents)
            sched_ms = None if job.scheduled_at is None else to_ms(job.scheduled_at)
            location = _transitions.pushed(
                job.priority, max(now_ms, sched_ms or 0), ids[step.name], job.max_attempts, now_ms
            )
            if parents:
                location = Location(Where.BLOCKED, location.marker)
            info: dict[str, JSON] = {"id": wf_id, "name": wf.name, "step": step.name}
            s = Staged(job, queues[step.name], location, workflow=info)
            staged.append(s)
            _push.write_folder(tree, s, now, sync=not tree.batch_sync, keep_open=True)
            try:
                _deptree.link_step(tree, s.job_fd, wf_id, s.job_id)
            finally:
                os.close(s.job_fd)
                s.job_fd = -1
        for s in staged:
            _depends.link(tree, s.job.depends_on, s.job_id)
        if tree.batch_sync:
            _durable.syncfs(tree.dirs.root_fd)
        elif tree.durable:
            _durable.fsync_dir(tmp_fd)
        manifest = _manifest(wf_id, wf.name, now, staged, order)
        if not _deptree.link_manifest(tree, wf_id, manifest):  # the commit
            raise StoreError(f"workflow {wf_id} was aborted while it was pushed (lock lost)")
    except BaseException as exc:
        if _committed(tree, wf_id):  # a step after the link failed: a sweep publishes
            os.close(lock_fd)
            raise PushError(f"workflow {wf_id} was pushed, then: {exc}", [wf_id]) from exc
        _abandon(tree, wf_id, plan, lock_name, lock_fd)
        if isinstance(exc, OSError):
            _durable.raise_full(exc, f"pushing workflow {wf.name!r}")
        raise
    try:
        steps = _steps_of(manifest)
        _publish(tree, wf_id, steps)
        # Steps with a parent outside the workflow: that parent may have ended already.
        _depends.settle(tree, [st.job_id for st in steps if st.external])
    except BaseException as exc:
        os.close(lock_fd)  # unlocked and left: a sweep takes it over
        if not isinstance(exc, Exception):
            raise
        logger.exception("workflow %s: publishing its steps is left to a sweep", wf_id)
        return wf_id
    _durable.unlink_quiet(tmp_fd, lock_name)
    os.close(lock_fd)
    return wf_id


def _abandon(tree: Tree, wf_id: str, plan: dict[str, JSON], lock_name: str, lock_fd: int) -> None:
    """A push that failed before its commit: remove what it wrote, then its lock."""
    try:
        _discard(tree, wf_id, plan)
        _durable.unlink_quiet(tree.dirs.cached((_names.TMP,)), lock_name)
    finally:
        os.close(lock_fd)


def _committed(tree: Tree, wf_id: str) -> bool:
    """Whether the workflow's manifest is in place (True when that cannot be told)."""
    try:
        return _deptree.is_committed(_deptree.read_manifest(tree, wf_id))
    except Exception:
        return True


def _lock(tree: Tree, wf_id: str, plan: dict[str, JSON]) -> tuple[str, int]:
    """
    The push's lock, holding its `plan` (the ids it will write); created under a
    temporary name and renamed once it is locked and written.
    """
    tmp_fd = tree.dirs.cached((_names.TMP,))
    token = secrets.token_hex(6)
    new = f"{_deptree.NEW_LOCK_PREFIX}{wf_id}.{token}"
    name = f"{_deptree.LOCK_PREFIX}{wf_id}.{token}"
    fd = os.open(new, _durable.O_NEW_RW, _durable.FILE_MODE, dir_fd=tmp_fd)
    try:
        if not _durable.try_lock(fd):
            raise StoreError(f"tmp/{new} is locked by someone else")
        _durable.write_all(fd, _json.dumps(plan).encode() + b"\n")
        if tree.durable:
            os.fsync(fd)
        os.rename(new, name, src_dir_fd=tmp_fd, dst_dir_fd=tmp_fd)
    except BaseException:
        os.close(fd)
        _durable.unlink_quiet(tmp_fd, new)
        raise
    return name, fd


def _read_plan(tree: Tree, name: str, wf_id: str) -> dict[str, JSON]:
    """The plan a lock holds; empty if unreadable (the staged steps still tell most)."""
    for _ in range(50):
        try:
            data = _durable.read_file(tree.dirs.cached((_names.TMP,)), name, 1 << 24)
            body = _json.loads(data)
        except FileNotFoundError:
            return {}
        except (ValueError, UnicodeDecodeError, OSError, StoreError):
            body = None
        if isinstance(body, dict) and body.get("id") == wf_id:
            return body
        time.sleep(0.02)  # content lags the name on a network filesystem
    logger.warning("tmp/%s: the plan of its push is unreadable", name)
    return {}


def _manifest(
    wf_id: str, name: str, now: dt.datetime, staged: list[Staged], order: list[Step]
) -> dict[str, JSON]:
    steps: list[JSON] = []
    for s, step in zip(staged, order, strict=True):
        assert s.location.marker is not None
        steps.append(
            {
                "step": step.name,
                "id": s.job_id,
                "queue": s.queue,
                "after": list[JSON](step.after),
                "depends_on": list[JSON](step.job.depends_on),
                "where": s.where.value,
                "marker": s.location.marker.name,
            }
        )
    return {"id": wf_id, "name": name, "created_at": format_time(now), "steps": steps}


@attrs.frozen
class _Step:
    """A step as the manifest names it (checked: the manifest is read from disk)."""

    step: str
    job_id: str
    queue: str
    after: tuple[str, ...]
    where: Where
    marker: Marker
    #: it depends on jobs outside the workflow
    external: bool


def _steps_of(manifest: dict[str, JSON]) -> list[_Step]:
    items = manifest.get("steps")
    out = []
    for item in items if isinstance(items, list) else []:
        try:
            out.append(_step_of(item))
        except (KeyError, ValueError, TypeError):
            logger.warning("a workflow manifest names a malformed step: %.200r", item)
    return out


def _step_of(item: JSON) -> _Step:
    """One step of a manifest, every field checked; ValueError (or KeyError) if malformed."""
    if not isinstance(item, dict):
        raise ValueError("not an object")
    marker = Marker.parse(str(item["marker"]))
    job_id = _names.check_job_id(item["id"])
    after, outside = item.get("after"), item.get("depends_on")
    where = Where(str(item["where"]))
    if (
        not isinstance(after, list)
        or not isinstance(outside, list)
        or where not in (Where.PENDING, Where.WAITING, Where.BLOCKED)
        or marker.job_id != job_id
    ):
        raise ValueError("malformed")
    return _Step(
        _names.check_name("step", item["step"]),
        job_id,
        _names.check_name("queue", item["queue"]),
        tuple(str(a) for a in after),
        where,
        marker,
        bool(outside),
    )


def _publish(tree: Tree, wf_id: str, steps: list[_Step]) -> list[str]:
    """
    Rename each step still staged into place: the steps with parents into
    blocked/ first, the roots last (nothing can run before every step is in
    place). Returns the ids this call moved.
    """
    moved = []
    for st in sorted(steps, key=lambda st: st.where is not Where.BLOCKED):
        dst, name = tree.place(st.queue, st.where, st.marker, st.job_id)
        src = _deptree.step_name(wf_id, st.job_id)
        if tree.move((_names.TMP,), src, dst, name):
            moved.append(st.job_id)
    return moved


# -- the pusher is gone: commit or abort -------------------------------------------------------


def _discard(tree: Tree, wf_id: str, plan: dict[str, JSON]) -> None:
    """
    Remove what an uncommitted push wrote: the steps of its `plan` and any staged
    one, with their folders and the ``dependents`` entries in jobs outside it.
    """
    tmp_fd = tree.dirs.cached((_names.TMP,))
    steps, outside = plan.get("steps"), plan.get("outside")
    job_ids = {j for j in steps if isinstance(j, str)} if isinstance(steps, list) else set()
    for job_id in sorted(job_ids | set(_staged_ids(tree, wf_id))):
        if not _ids.is_job_id(job_id):
            continue
        name = _deptree.step_name(wf_id, job_id)
        parents = outside.get(job_id) if isinstance(outside, dict) else None
        if not isinstance(parents, list):
            seg = _read.marker_segment(tree, (_names.TMP,), name)
            spec = spec_in([(0, seg)]) if seg is not None else None
            parents = spec.get("depends_on") if spec is not None else None
        if isinstance(parents, list):
            _depends.unlink(tree, [p for p in parents if isinstance(p, str)], job_id)
        tree.discard_job(job_id)
        _durable.unlink_quiet(tmp_fd, name)
    _remove_bodies(tree, wf_id)


def _remove_bodies(tree: Tree, wf_id: str) -> None:
    """The temporary copies of a manifest or tombstone that a killed process left."""
    tmp_fd = tree.dirs.cached((_names.TMP,))
    for name in tree.names((_names.TMP,)):
        if name.startswith(f"wfbody.{wf_id}."):
            _durable.unlink_quiet(tmp_fd, name)


def _staged_ids(tree: Tree, wf_id: str) -> list[str]:
    """The ids of the steps of `wf_id` still staged in tmp/."""
    out = []
    for name in tree.names((_names.TMP,)):
        found = _deptree.parse_step(name)
        if found is not None and found[0] == wf_id:
            out.append(found[1])
    return sorted(out)


def finish_push(tree: Tree, wf_id: str, plan: dict[str, JSON] | None = None) -> str:
    """
    Finish the push of a workflow whose pusher is gone (the caller holds its
    lock, whose `plan` it read; or there is no lock): "published" if it was
    committed (what was still staged is now in place), "aborted" if it was not
    (or was aborted already).
    """
    manifest = _deptree.read_manifest(tree, wf_id)
    if manifest is None:
        tombstone: dict[str, JSON] = {
            "id": wf_id,
            "aborted": True,
            "at": format_time(tree.clock.now()),
        }
        _deptree.link_manifest(tree, wf_id, tombstone)
        manifest = _deptree.read_manifest(tree, wf_id)
    if not _deptree.is_committed(manifest):
        _discard(tree, wf_id, plan or {})
        return "aborted"
    assert manifest is not None
    steps = _steps_of(manifest)
    _publish(tree, wf_id, steps)
    # A step moved by the dead pusher may have missed its check: check them all.
    _depends.settle(tree, [st.job_id for st in steps if st.where is Where.BLOCKED])
    _remove_bodies(tree, wf_id)
    return "published"


def sweep(tree: Tree) -> list[tuple[str, str]]:
    """
    Finish the workflow pushes whose pusher is gone (workers, every rescue
    interval): [(workflow id, "published" or "aborted")].
    """
    done = []
    tmp_fd = tree.dirs.cached((_names.TMP,))
    for name in tree.names((_names.TMP,)):
        wf_id = _deptree.parse_lock(name)
        if wf_id is None:
            continue
        try:
            fd = _durable.open_lock_file(tmp_fd, name, create=False)
        except StoreError:
            continue
        if fd is None:
            continue
        try:
            if not _deptree.try_lock(fd, f"tmp/{name}"):
                continue  # its pusher is at work
            done.append((wf_id, finish_push(tree, wf_id, _read_plan(tree, name, wf_id))))
            _durable.unlink_quiet(tmp_fd, name)
        except Exception:
            logger.exception("workflow %s: finishing its push failed; tried again later", wf_id)
        finally:
            os.close(fd)
    return done


def check_root(tree: Tree, repair: bool) -> tuple[list[tuple[str, str, str, bool]], set[str]]:
    """
    fsck: workflow pushes whose pusher is gone (finished with `repair`), and
    staged steps with no lock at all. Returns the problems as (kind, path,
    message, repaired), and the ids of steps staged by live pushes (their folders
    are not garbage).
    """
    problems = []
    if repair:
        for wf_id, what in sweep(tree):
            problems.append(("workflow-push", wf_id, f"its pusher died: {what}", True))
    tmp_fd = tree.dirs.cached((_names.TMP,))
    alive_locks: set[str] = set()
    staged: dict[str, list[str]] = {}
    for name in tree.names((_names.TMP,)):
        locked = _deptree.parse_lock(name)
        step = _deptree.parse_step(name)
        if locked is not None:
            if not _held(tmp_fd, name):  # only without repair: the sweep finished the others
                problems.append(("workflow-push", locked, "its pusher died", False))
            alive_locks.add(locked)  # its steps are not garbage (reported here if dead)
        elif step is not None:
            staged.setdefault(step[0], []).append(step[1])
    alive = set()
    for wf_id, job_ids in staged.items():
        if wf_id in alive_locks:
            alive.update(job_ids)
            continue
        what = finish_push(tree, wf_id) if repair else "left"
        problems.append(("workflow-orphan", wf_id, f"staged steps with no lock: {what}", repair))
        if not repair:
            alive.update(job_ids)
    return problems, alive


def _held(tmp_fd: int, name: str) -> bool:
    """Whether a live process holds the lock of tmp/`name`."""
    try:
        fd = _durable.open_lock_file(tmp_fd, name, create=False)
    except StoreError:
        return False
    if fd is None:
        return False
    try:
        return not _deptree.try_lock(fd, f"tmp/{name}")
    finally:
        os.close(fd)


# -- reading ---------------------------------------------------------------------------------


def get(tree: Tree, wf_id: str) -> WorkflowState:
    """A committed workflow's state; JobNotFound if there is none with this id."""
    _names.check_job_id(wf_id)
    manifest = _deptree.read_manifest(tree, wf_id) if tree.for_reading() else None
    if manifest is None or not _deptree.is_committed(manifest):
        raise JobNotFound(wf_id, f"no workflow {wf_id!r} under this root")
    steps: dict[str, JobState] = {}
    after: dict[str, tuple[str, ...]] = {}
    for st in _steps_of(manifest):
        try:
            steps[st.step] = _read.get(tree, st.job_id)
        except JobNotFound:
            continue  # pruned
        after[st.step] = st.after
    created = manifest.get("created_at")
    name = manifest.get("name")
    return WorkflowState(
        id=wf_id,
        name=name if isinstance(name, str) else "",
        status=workflow_status([s.status for s in steps.values()]),
        steps=steps,
        after=after,
        created_at=parse_time(created) if isinstance(created, str) else None,
    )


def list_workflows(tree: Tree, limit: int) -> list[WorkflowState]:
    """The newest `limit` committed workflows, newest first."""
    if not tree.for_reading():
        return []
    out: list[WorkflowState] = []
    for wf_id in _deptree.manifest_ids(tree):
        if len(out) >= limit:
            break
        try:
            out.append(get(tree, wf_id))
        except JobNotFound:
            continue  # a tombstone
    return out
