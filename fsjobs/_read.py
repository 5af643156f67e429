"""
Reading one job: its state, history, outputs and result, from its folder.

`get(id)` reads the job's folder (``jobs/<shard>/<id>/``: the spec in segment 0,
then every segment in epoch order), then checks the marker that the newest
record naming one says it created. It never lists a queue, except as a last
resort for a job whose marker moved where its journal does not say (logged as
slow). On a network filesystem content lags names, so misses are retried for
the staleness bound before they count.
"""

from __future__ import annotations

import functools
import logging
import os
import stat
import typing

import attrs

from . import _deptree, _durable, _ids, _names, journal
from ._json import JSON, loads
from ._names import Marker
from ._paths import Parts
from ._state import (
    ResultUnreadable,
    Segments,
    build_state,
    events_of,
    spec_in,
    unreadable_state,
)
from ._transitions import BY_DAY, Location, Where
from ._tree import Tree
from .errors import JobNotFound, StoreError
from .model import MAX_RESULT_BYTES
from .states import Event, JobState, JobStatus

logger = logging.getLogger("fsjobs.store")

#: A segment larger than this is not read (a journal line is at most 2 MiB).
MAX_SEGMENT_BYTES = 64 * 1024 * 1024


@attrs.frozen
class Found:
    """A job as its files tell it: the spec, the journal, and where its marker is."""

    job_id: str
    queue: str
    spec: dict[str, JSON]
    segments: Segments
    location: Location

    @property
    def newest_epoch(self) -> int:
        return max(epoch for epoch, _ in self.segments)


def segments(tree: Tree, job_id: str) -> Segments:
    """Every journal segment of a job, in epoch order; empty if its folder is missing."""
    try:
        job_fd = tree.open_job(job_id)
    except (FileNotFoundError, StoreError):
        return []
    try:
        return segments_at(job_fd, job_id)
    finally:
        os.close(job_fd)


def segments_at(job_fd: int, job_id: str) -> Segments:
    """`segments` of an open job folder."""
    epochs = sorted(e for e in map(_names.segment_epoch, _durable.listdir(job_fd)) if e is not None)
    out = []
    for epoch in epochs:
        try:
            data = _durable.read_file(job_fd, _names.segment_name(epoch), MAX_SEGMENT_BYTES)
        except FileNotFoundError:
            continue  # moved aside meanwhile
        except (StoreError, OSError) as exc:
            logger.warning("job %s: segment %d unreadable: %s", job_id, epoch, exc)
            out.append((epoch, journal.ReadResult((), 0, f"unreadable: {exc}", corrupt=True)))
            continue
        out.append((epoch, journal.parse(data)))
    return out


def locate(tree: Tree, job_id: str, queue: str, segs: Segments) -> Location | None:
    """Where the job's marker is now: first where the journal says, then the likely places."""
    for _, seg in reversed(segs):
        named = next((r for r in reversed(seg.records) if "marker" in r.data), None)
        if named is not None:
            found = _check_marker_path(tree, named.get_str("marker") or "", queue, job_id)
            if found is not None:
                return found
            break
    for where in BY_DAY:
        if tree.exists(tree.day_dir(queue, where, job_id), job_id):
            return Location(where)
    for marker, worker in tree.running(queue):
        if marker.job_id == job_id:
            return Location(Where.RUNNING, marker, worker)
    return None


def _check_marker_path(tree: Tree, text: str, queue: str, job_id: str) -> Location | None:
    """Whether the marker a record names (a path read from disk: checked part by part) is there."""
    parts = tuple(text.split("/"))
    if len(parts) < 4 or parts[0] != _names.QUEUES or parts[1] != queue:
        return None
    try:
        where = Where(parts[2])
        if where is Where.RUNNING:
            marker, worker = Marker.parse_running(parts[-1])
            if marker.job_id != job_id or len(parts) != 4:
                return None
            here = tree.exists(tree.running_dir(queue), parts[-1])
            return Location(where, marker, worker) if here else None
        if where.is_live:
            marker = Marker.parse(parts[-1])
            if marker.job_id != job_id:
                return None
            for w in (Where.WAITING, Where.PENDING):  # promotion keeps the name
                if tree.exists(tree.live_dir(queue, w, marker), marker.name):
                    return Location(w, marker)
            return None
    except ValueError:
        return None
    if parts[-1] == job_id and tree.exists(tree.day_dir(queue, where, job_id), job_id):
        return Location(where)
    return None


def _scan_live(tree: Tree, job_id: str, queue: str) -> Location | None:
    """The slow path: walk the queue's waiting and pending trees for the job."""
    for where, levels in ((Where.WAITING, 2), (Where.PENDING, 3)):
        for parts in tree.leaf_buckets(tree.queue_dir(queue, where), levels):
            for name in tree.names(parts):
                if f".{job_id}." in name:
                    try:
                        return Location(where, Marker.parse(name))
                    except ValueError:
                        continue
    return None


def find(tree: Tree, job_id: str) -> Found | JobState:
    """
    The job's spec, journal and marker location; or, for a job whose own files
    are unreadable, what its final directory says. JobNotFound if neither.
    """
    _names.check_job_id(job_id)
    if not tree.for_reading():
        raise JobNotFound(job_id)
    untold: Found | None = None  # final, but the record of how is not there yet
    for tries in _durable.retry_for(tree.staleness):
        segs = segments(tree, job_id)
        spec = spec_in(segs)
        if spec is not None:
            queue = typing.cast(str, spec["queue"])
            location = locate(tree, job_id, queue, segs)
            if location is None and "workflow" in spec:  # a step still staged in tmp/?
                target = segs[0][1].records[0].get_str("marker") or ""
                location = _deptree.staged_location(tree, job_id, spec, target)
            if location is None and tries >= 2:
                location = _scan_live(tree, job_id, queue)
                if location is not None:
                    logger.info("job %s found by a slow scan", job_id)
            if location is not None:
                untold = Found(job_id, queue, spec, segs, location)
                last = segs[-1][1].records
                if not location.where.is_final or any(r.type in journal.TERMINAL for r in last):
                    return untold
                # The winner of the rename into the final directory writes its record next.
        elif tries >= 2 and not segs:
            found = _find_by_marker(tree, job_id)
            if found is not None:
                return found
        if tries >= 2 and spec is None:
            # No readable spec: the job may have been quarantined for exactly that,
            # or its marker may still stand where it waits to be quarantined.
            place = find_final(tree, job_id) or (_find_live(tree, job_id) if segs else None)
            if place is not None:
                return unreadable_state(job_id, *place, "its journal is missing or unreadable")
    if untold is not None:
        return untold
    raise JobNotFound(job_id)


def _find_live(tree: Tree, job_id: str) -> tuple[str, Where] | None:
    """The queue and live directory of a job, looked up in every queue (slow: damaged jobs only)."""
    for queue in tree.queues():
        if any(marker.job_id == job_id for marker, _ in tree.running(queue)):
            return queue, Where.RUNNING
        found = _scan_live(tree, job_id, queue)
        if found is not None:
            return queue, found.where
    return None


def _find_by_marker(tree: Tree, job_id: str) -> Found | None:
    """
    A job whose folder is missing (a power cut lost its name before anything
    fsynced it) whose marker is still where a push or a claim put it: running,
    or pending in the bucket of its push time (derived from the id). The marker
    is a hard link of segment 0, so it tells the spec. Scheduled jobs are not
    looked for here: the claim that follows their promotion, or fsck, restores
    their folders.
    """
    hour_second = _names.bucket_of(_ids.id_time_ms(job_id))
    for queue in tree.queues():
        places: list[tuple[Parts, str]] = [
            (tree.running_dir(queue), n) for n in tree.names(tree.running_dir(queue))
        ]
        pending = tree.queue_dir(queue, Where.PENDING)
        for prio in tree.names(pending):
            bucket = (*pending, prio, *hour_second)
            places += [(bucket, n) for n in tree.names(bucket)]
        for parts, name in places:
            if f".{job_id}." not in name:
                continue
            seg = marker_segment(tree, parts, name)
            spec = spec_in([(0, seg)]) if seg is not None else None
            try:
                if parts[2] == Where.RUNNING:
                    marker, worker = Marker.parse_running(name)
                    location = Location(Where.RUNNING, marker, worker)
                else:
                    location = Location(Where.PENDING, Marker.parse(name))
            except ValueError:
                continue
            if spec is not None and seg is not None and spec.get("queue") == queue:
                logger.warning("job %s has lost its folder: read from its marker", job_id)
                return Found(job_id, queue, spec, [(0, seg)], location)
    return None


def marker_segment(tree: Tree, parts: Parts, name: str) -> journal.ReadResult | None:
    """
    What a marker holds: a marker is a hard link of its job's segment 0, so its
    content is the ``pushed`` record (None if it is unreadable, or empty: a
    marker that a format-1 fsjobs wrote).
    """
    try:
        with tree.dirs.open(parts) as fd:
            data = _durable.read_file(fd, name, journal.MAX_LINE * 2)
    except (OSError, StoreError):
        return None
    seg = journal.parse(data)
    return seg if seg.records else None


def restore_folder(tree: Tree, job_id: str, parts: Parts, name: str) -> bool:
    """
    Put back the folder of a job whose marker survived a power cut that its
    folder did not: the folder is made again with segment 0 as a new hard link
    of the marker, and made durable. False if the marker does not hold the
    job's ``pushed`` record (it is then corrupt, not merely unlinked).
    """
    seg = marker_segment(tree, parts, name)
    spec = spec_in([(0, seg)]) if seg is not None else None
    if seg is None or spec is None or seg.records[0].get_str("id") != job_id:
        return False
    try:
        _link_back(tree, job_id, parts, name)
    except (OSError, StoreError) as exc:  # something is planted where the folder belongs
        logger.warning("job %s: its folder cannot be restored: %s", job_id, exc)
        return False
    logger.warning("job %s: its folder was missing; restored from its marker", job_id)
    return True


def _link_back(tree: Tree, job_id: str, parts: Parts, name: str) -> None:
    shard = (_names.JOBS, _names.shard_of(job_id))
    with tree.dirs.open(shard, create=True) as shard_fd:
        try:
            tree.dirs.mkdir_new(shard_fd, job_id)
        except FileExistsError:
            pass
        with tree.dirs.child(shard_fd, job_id) as job_fd, tree.dirs.open(parts) as marker_dir:
            try:
                os.link(
                    name,
                    _names.segment_name(0),
                    src_dir_fd=marker_dir,
                    dst_dir_fd=job_fd,
                    follow_symlinks=False,
                )
            except FileExistsError:
                pass  # restored by someone else meanwhile
            if tree.durable:
                _durable.fsync_all([job_fd, shard_fd])


def find_final(tree: Tree, job_id: str) -> tuple[str, Where] | None:
    """The queue and final (or held) directory of a job, looked up in every queue."""
    for queue in tree.queues():
        for where in BY_DAY:
            if tree.exists(tree.day_dir(queue, where, job_id), job_id):
                return queue, where
    return None


def state_of(tree: Tree, found: Found) -> JobState:
    read_result = functools.partial(_read_result_file, tree, found.job_id)
    outputs = functools.partial(list_outputs, tree, found.job_id)
    return build_state(
        found.job_id, found.queue, found.spec, found.segments, found.location, read_result, outputs
    )


def get(tree: Tree, job_id: str) -> JobState:
    """The current state of a job; JobNotFound if no published job has this id."""
    found = find(tree, job_id)
    return found if isinstance(found, JobState) else state_of(tree, found)


def status_of(tree: Tree, job_id: str) -> JobStatus | None:
    """The job's status; None if there is no such job."""
    try:
        found = find(tree, job_id)
    except JobNotFound:
        return None
    return found.status if isinstance(found, JobState) else found.location.status


def history(tree: Tree, job_id: str) -> list[Event]:
    """Every record of the job's journal, oldest first; JobNotFound if there is no such job."""
    found = find(tree, job_id)
    return [] if isinstance(found, JobState) else events_of(found.segments)


def outputs_dir(job_id: str, epoch: int) -> Parts:
    return Tree.job_dir(job_id, _names.ATTEMPTS, _names.attempt_dir(epoch), _names.OUTPUTS)


def list_outputs(tree: Tree, job_id: str, epoch: int) -> tuple[str, ...]:
    """The regular files an attempt wrote into its output directory (other entries skipped)."""
    with tree.open_or_none(outputs_dir(job_id, epoch)) as fd:
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


def open_output(tree: Tree, job_id: str, name: str) -> int:
    """
    A read-only descriptor of one of the job's output files (those `JobState.outputs`
    lists), for streaming; the caller closes it. FileNotFoundError if there is none.
    """
    _names.check_name("output", name)
    found = find(tree, job_id)
    if isinstance(found, JobState):
        raise FileNotFoundError(f"job {job_id} has no readable files")
    claims = [
        e
        for e, seg in found.segments
        if any(r.type is journal.RecordType.CLAIMED for r in seg.records)
    ]
    if not claims or name not in list_outputs(tree, job_id, claims[-1]):
        raise FileNotFoundError(f"job {job_id} has no output named {name!r}")
    with tree.dirs.open(outputs_dir(job_id, claims[-1])) as fd:
        return _durable.open_regular(fd, name)[0]


def read_output(tree: Tree, job_id: str, name: str) -> bytes:
    """The bytes of one of the job's output files."""
    fd = open_output(tree, job_id, name)
    try:
        return _durable.read_all(fd, os.fstat(fd).st_size, 1 << 62)
    finally:
        os.close(fd)


def _read_result_file(tree: Tree, job_id: str, rel: str) -> JSON:
    parts = tuple(rel.split("/"))
    if (
        len(parts) != 3
        or parts[0] != _names.ATTEMPTS
        or not parts[1].isdigit()
        or parts[2] != _names.RESULT_FILE
    ):
        raise ResultUnreadable(f"job {job_id}: bad result_file {rel!r}")
    try:
        with tree.dirs.open(Tree.job_dir(job_id, *parts[:2])) as fd:
            return loads(_durable.read_file(fd, parts[2], MAX_RESULT_BYTES))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ResultUnreadable(f"job {job_id}: result file {rel} is unreadable: {exc}") from exc
