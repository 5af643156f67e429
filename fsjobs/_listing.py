"""
Listings of a queue: the ids in each state directory, counts, the head's age,
the next due time, and pages of job states newest first. Every name listed is
parsed before use; one unreadable job is listed with what can be said of it.
"""

from __future__ import annotations

import heapq
import logging
import typing
from collections.abc import Iterator

from . import _ids, _names, _read
from ._names import Marker
from ._state import unreadable_state
from ._transitions import BY_DAY, Location, Where
from ._tree import Tree
from .errors import JobNotFound
from .states import JobPage, JobState, JobStatus

logger = logging.getLogger("fsjobs.store")


def job_ids(tree: Tree, queue: str, where: Where) -> Iterator[str]:
    """Ids with a marker in one state directory of `queue` (unordered for live ones)."""
    if where is Where.RUNNING:
        for marker, _ in tree.running(queue):
            yield marker.job_id
        return
    top = tree.queue_dir(queue, where)
    if where in (Where.WAITING, Where.PENDING):
        levels = 2 if where is Where.WAITING else 3
        for parts in tree.leaf_buckets(top, levels):
            for name in tree.names(parts):
                try:
                    yield Marker.parse(name).job_id
                except ValueError:
                    continue
        return
    for day in sorted(tree.names(top), reverse=True):
        names = tree.names((*top, day))
        yield from sorted((n for n in names if _ids.is_job_id(n)), reverse=True)


def counts(tree: Tree, queue: str) -> dict[JobStatus, int]:
    """How many jobs of `queue` are in each status (waiting ones: scheduled or retrying)."""
    out = dict.fromkeys(JobStatus, 0)
    for where in (Where.PENDING, Where.RUNNING, *BY_DAY):
        out[Location(where).status] += sum(1 for _ in job_ids(tree, queue, where))
    for parts in tree.leaf_buckets(tree.queue_dir(queue, Where.WAITING), 2):
        for name in tree.names(parts):
            try:
                marker = Marker.parse(name)
            except ValueError:
                continue
            out[Location(Where.WAITING, marker).status] += 1
    return out


def oldest_pending_ms(tree: Tree, queue: str) -> int | None:
    """The earliest ready time among the queue's pending jobs (the head of each priority)."""
    oldest = None
    top = tree.queue_dir(queue, Where.PENDING)
    for prio in sorted(tree.names(top)):
        for parts in tree.leaf_buckets((*top, prio), 2):
            names = sorted(tree.names(parts))
            if names:
                try:
                    ready = Marker.parse(names[0]).ready_ms
                except ValueError:
                    continue
                oldest = ready if oldest is None else min(oldest, ready)
                break  # buckets are in time order: the first is this priority's oldest
    return oldest


def next_due_ms(tree: Tree, queue: str) -> int | None:
    """When the earliest waiting job of `queue` is due (None if none waits)."""
    for parts in tree.leaf_buckets(tree.queue_dir(queue, Where.WAITING), levels=2):
        due = []
        for name in tree.names(parts):
            try:
                due.append(Marker.parse(name).ready_ms)
            except ValueError:
                continue
        if due:
            return min(due)
    return None


def dirs_for(status: JobStatus | None) -> tuple[Where, ...]:
    """The state directories that hold jobs of `status` (all of them for None)."""
    if status is None:
        return (Where.WAITING, Where.PENDING, Where.RUNNING, *BY_DAY)
    if status in (JobStatus.SCHEDULED, JobStatus.RETRYING):
        return (Where.WAITING,)
    return (Where(status.value),)


def list_jobs(
    tree: Tree, queues: list[str], status: JobStatus | None, limit: int, cursor: str | None
) -> JobPage:
    """
    Jobs of `queues`, newest first, at most `limit`, starting after `cursor` (the
    id the previous page ended with). Ids are time-ordered and never change, so a
    job is on exactly one page however it moves meanwhile. A job whose files are
    damaged is listed with what can be said of it, and the listing goes on.
    """
    if cursor is not None:
        _names.check_job_id(cursor)
    streams: list[typing.Iterable[str]] = []
    for q in queues:
        for where in dirs_for(status):
            if where.is_live:
                streams.append(sorted(job_ids(tree, q, where), reverse=True))
            else:  # final directories are walked newest day first, newest id first
                streams.append(job_ids(tree, q, where))
    states: list[JobState] = []
    seen: set[str] = set()
    # ids are time-ordered: merging the newest-first streams stops after `limit`
    # without reading the older days of a large store
    for job_id in heapq.merge(*streams, reverse=True):
        if job_id in seen or (cursor is not None and job_id >= cursor):
            continue  # moved from one directory to another while we listed; or seen before
        seen.add(job_id)
        if len(states) >= limit:
            return JobPage(states, states[-1].id)  # one more exists: the page was cut
        state = _listed_state(tree, job_id, queues)
        if state is not None and (status is None or state.status is status):
            states.append(state)
    return JobPage(states, None)


def _listed_state(tree: Tree, job_id: str, queues: list[str]) -> JobState | None:
    try:
        return _read.get(tree, job_id)
    except JobNotFound:
        return None  # pruned or moved on while we listed
    except (OSError, ValueError) as exc:
        logger.warning("job %s is unreadable: %s", job_id, exc)
        final = _read.find_final(tree, job_id)
        where = final[1] if final is not None else Where.CORRUPT
        queue = final[0] if final is not None else queues[0]
        return unreadable_state(job_id, queue, where, f"unreadable: {exc}")
