"""
The files of dependencies and workflows: their names, and creating, listing and
removing them. What to do with them is decided in `_depends` and `_workflows`.

=========================================  =================================================
``jobs/<shard>/<parent>/dependents/<id>``  one empty file per dependent job, created by the
                                           dependent's pusher before its commit
``queues/<queue>/releasing/<id>.<token>``  a dependency check of job ``<id>`` at work
                                           (OFD-locked by its actor), or left for a sweep
``workflows/<shard>/<wf>.json``            a workflow's manifest (its commit point), or a
                                           tombstone (``{"aborted": true}``: its abort)
``tmp/wflock.<wf>.<token>``                the lock a workflow's pusher holds while pushing
``tmp/wfstep.<wf>.<id>``                   a step staged by that push: a hard link of the
                                           step's segment 0, renamed into place once the
                                           workflow is committed
=========================================  =================================================
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import time

import attrs

from . import _durable, _ids, _json, _names
from ._json import JSON
from ._names import Marker
from ._paths import Parts
from ._transitions import Location, Where
from ._tree import Tree
from .errors import StoreError

logger = logging.getLogger("fsjobs.store")

#: ``<job id>.<token>``: a releasing entry
ENTRY_RE = re.compile(r"^([0-9a-z]{22})\.([0-9a-f]{12})$")
LOCK_PREFIX, NEW_LOCK_PREFIX, STEP_PREFIX = "wflock.", "wfnew.", "wfstep."
_LOCK_RE = re.compile(r"^wflock\.([0-9a-z]{22})\.[0-9a-f]{12}$")
_STEP_RE = re.compile(r"^wfstep\.([0-9a-z]{22})\.([0-9a-z]{22})$")
#: the largest manifest read (a workflow of 1,000 steps takes about 300 KiB)
MAX_MANIFEST_BYTES = 16 * 1024 * 1024


# -- dependents ---------------------------------------------------------------------------


def has_dependents(tree: Tree, job_id: str, job_fd: int | None = None) -> bool:
    """Whether any job was ever pushed depending on `job_id` (one ``stat``)."""
    if job_fd is not None:
        return _durable.exists(job_fd, _names.DEPENDENTS)
    return tree.exists(Tree.job_dir(job_id), _names.DEPENDENTS)


def add_dependent(tree: Tree, parent: str, child: str) -> None:
    """Create ``jobs/<parent>/dependents/<child>`` durably (FileNotFoundError: no parent folder)."""
    with tree.dirs.open(Tree.job_dir(parent)) as job_fd:
        made = False
        try:
            tree.dirs.mkdir_new(job_fd, _names.DEPENDENTS)
            made = True
        except FileExistsError:
            pass
        with tree.dirs.child(job_fd, _names.DEPENDENTS) as dep_fd:
            try:
                _durable.create_empty(dep_fd, child)
            except FileExistsError:
                pass
            if tree.durable:
                _durable.fsync_all([dep_fd, job_fd] if made else [dep_fd])


def remove_dependent(tree: Tree, parent: str, child: str) -> None:
    """Best effort: a dependent that was never published."""
    with tree.open_or_none(Tree.job_dir(parent, _names.DEPENDENTS)) as fd:
        if fd is not None:
            _durable.unlink_quiet(fd, child)


def dependents(tree: Tree, job_id: str) -> list[str]:
    """The ids of the jobs pushed depending on `job_id`, oldest first."""
    names = tree.names(Tree.job_dir(job_id, _names.DEPENDENTS))
    return sorted(n for n in names if _ids.is_job_id(n))


# -- releasing entries -----------------------------------------------------------------------


def releasing_dir(queue: str) -> Parts:
    return Tree.queue_dir(queue, _names.RELEASING)


@attrs.define
class Entry:
    """A releasing entry this process holds locked."""

    queue: str
    job_id: str
    name: str
    fd: int


def open_entry(tree: Tree, queue: str, job_id: str) -> Entry:
    """
    Create ``releasing/<job_id>.<token>`` and hold its OFD lock: while it is held,
    sweeps leave the entry alone; once its holder is gone, a sweep takes it over.
    """
    dir_fd = tree.dirs.cached(releasing_dir(queue))
    while True:
        name = f"{job_id}.{secrets.token_hex(6)}"
        fd = os.open(name, _durable.O_NEW_RW, _durable.FILE_MODE, dir_fd=dir_fd)
        if _durable.try_lock(fd):
            return Entry(queue, job_id, name, fd)
        # A sweep took the fresh entry before we could lock it: it settles that one.
        os.close(fd)


def leave_entry(tree: Tree, queue: str, job_id: str) -> None:
    """Create an unlocked entry: a check that the next sweep does."""
    close_entry(tree, open_entry(tree, queue, job_id), remove=False)


def close_entry(tree: Tree, entry: Entry, *, remove: bool) -> None:
    """Drop the lock; with `remove`, the entry first (the check is done)."""
    if entry.fd < 0:
        return
    try:
        if remove:
            _durable.unlink_quiet(tree.dirs.cached(releasing_dir(entry.queue)), entry.name)
    finally:
        os.close(entry.fd)
        entry.fd = -1


def entries(tree: Tree, queue: str) -> list[tuple[str, str]]:
    """(job id, entry name) of every releasing entry of `queue`; other names are skipped."""
    found = []
    for name in tree.names(releasing_dir(queue)):
        m = ENTRY_RE.fullmatch(name)
        if m is not None:
            found.append((m[1], name))
    return sorted(found)


def take_entry(tree: Tree, queue: str, job_id: str, name: str) -> Entry | None:
    """Lock an existing entry; None if its holder is alive, or it is gone or not a file."""
    dir_fd = tree.dirs.cached(releasing_dir(queue))
    try:
        fd = _durable.open_lock_file(dir_fd, name, create=False)
    except StoreError:
        return None
    if fd is None:
        return None
    if not try_lock(fd, f"releasing entry {name}"):
        os.close(fd)
        return None
    return Entry(queue, job_id, name, fd)


def try_lock(fd: int, what: str) -> bool:
    """
    `_durable.try_lock`, except that an error (on GlusterFS, a file that another
    host has just removed may refuse its lock) means "not now": the next sweep
    looks again.
    """
    try:
        return _durable.try_lock(fd)
    except OSError as exc:
        logger.warning("%s cannot be locked now (%s): tried again later", what, exc)
        return False


# -- workflow manifests and staged steps ----------------------------------------------------


def manifest_dir(wf_id: str) -> Parts:
    return (_names.WORKFLOWS, _names.shard_of(wf_id))


def manifest_name(wf_id: str) -> str:
    return f"{wf_id}.json"


def read_manifest(tree: Tree, wf_id: str) -> dict[str, JSON] | None:
    """
    A workflow's manifest or tombstone, None if there is neither. Content can lag
    a name on a network filesystem: a partial read is tried again, for a while.
    """
    deadline = time.monotonic() + max(tree.staleness, 0.5)
    while True:
        with tree.open_or_none(manifest_dir(wf_id)) as fd:
            if fd is None:
                return None
            try:
                data = _durable.read_file(fd, manifest_name(wf_id), MAX_MANIFEST_BYTES)
            except FileNotFoundError:
                return None
        try:
            body = _json.loads(data)
        except (ValueError, UnicodeDecodeError):
            body = None
        if isinstance(body, dict) and body.get("id") == wf_id:
            return body
        if time.monotonic() > deadline:
            raise StoreError(f"workflow {wf_id}: its manifest is unreadable")
        time.sleep(0.01)


def is_committed(manifest: dict[str, JSON] | None) -> bool:
    """A manifest (committed), not a tombstone (aborted) nor nothing (never committed)."""
    return manifest is not None and not manifest.get("aborted") and "steps" in manifest


def link_manifest(tree: Tree, wf_id: str, body: dict[str, JSON]) -> bool:
    """
    Write `body` to a temporary file, fsync it, and ``link`` it as the workflow's
    manifest (or tombstone): True if this call created the name, False if it was
    there already (one winner between a commit and an abort).
    """
    tmp_fd = tree.dirs.cached((_names.TMP,))
    tmp = f"wfbody.{wf_id}.{secrets.token_hex(6)}"
    _durable.write_new(tmp_fd, tmp, _json.dumps(body).encode() + b"\n", sync=tree.durable)
    try:
        with tree.dirs.open(manifest_dir(wf_id), create=True) as fd:
            try:
                os.link(tmp, manifest_name(wf_id), src_dir_fd=tmp_fd, dst_dir_fd=fd)
            except FileExistsError:
                # lost, unless an NFS client retransmitted our own link: same inode
                mine = os.stat(tmp, dir_fd=tmp_fd, follow_symlinks=False)
                there = os.stat(manifest_name(wf_id), dir_fd=fd, follow_symlinks=False)
                return (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino)
            if tree.durable:
                _durable.fsync_dir(fd)
            return True
    finally:
        _durable.unlink_quiet(tmp_fd, tmp)


def manifest_ids(tree: Tree) -> list[str]:
    """Every workflow id with a manifest or tombstone, newest first."""
    ids = []
    for shard in tree.names((_names.WORKFLOWS,)):
        for name in tree.names((_names.WORKFLOWS, shard)):
            wf_id, dot, ext = name.partition(".")
            if dot and ext == "json" and _ids.is_job_id(wf_id) and _names.shard_of(wf_id) == shard:
                ids.append(wf_id)
    return sorted(ids, reverse=True)


def step_name(wf_id: str, job_id: str) -> str:
    return f"{STEP_PREFIX}{wf_id}.{job_id}"


def parse_step(name: str) -> tuple[str, str] | None:
    """(workflow id, job id) of a staged step's name in tmp/."""
    m = _STEP_RE.fullmatch(name)
    return None if m is None else (m[1], m[2])


def parse_lock(name: str) -> str | None:
    """The workflow id of a push lock's name in tmp/."""
    m = _LOCK_RE.fullmatch(name)
    return None if m is None else m[1]


def link_step(tree: Tree, job_fd: int, wf_id: str, job_id: str) -> None:
    """Stage a step: ``tmp/wfstep.<wf>.<id>``, a hard link of its segment 0."""
    tmp_fd = tree.dirs.cached((_names.TMP,))
    try:
        os.link(
            _names.segment_name(0),
            step_name(wf_id, job_id),
            src_dir_fd=job_fd,
            dst_dir_fd=tmp_fd,
            follow_symlinks=False,
        )
    except FileExistsError:
        mine = os.stat(_names.segment_name(0), dir_fd=job_fd, follow_symlinks=False)
        there = os.stat(step_name(wf_id, job_id), dir_fd=tmp_fd, follow_symlinks=False)
        if (mine.st_dev, mine.st_ino) != (there.st_dev, there.st_ino):
            raise


def staged_location(tree: Tree, job_id: str, spec: dict[str, JSON], target: str) -> Location | None:
    """
    Where a step of a committed workflow is reported while it is still staged in
    tmp/: at `target`, the marker path its ``pushed`` record names (pending,
    waiting or blocked). None if the job is not a staged step of a committed one.
    """
    workflow = spec.get("workflow")
    wf_id = workflow.get("id") if isinstance(workflow, dict) else None
    if not isinstance(wf_id, str) or not _ids.is_job_id(wf_id):
        return None
    if not tree.exists((_names.TMP,), step_name(wf_id, job_id)):
        return None
    try:
        if not is_committed(read_manifest(tree, wf_id)):
            return None  # not acknowledged: the push may still be aborted
    except StoreError:
        return None
    parts = target.split("/")
    try:
        where = Where(parts[2]) if len(parts) >= 5 else None
        if where is Where.BLOCKED and parts[-1] == job_id:
            return Location(Where.BLOCKED, staged=True)
        if where in (Where.PENDING, Where.WAITING):
            marker = Marker.parse(parts[-1])
            if marker.job_id == job_id:
                return Location(where, marker, staged=True)
    except ValueError:
        pass
    return None
