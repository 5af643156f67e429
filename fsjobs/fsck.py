"""
`fsck`: check a root against the invariants of the format, and repair what can
be repaired safely while workers run.

It walks every queue's state directories, every job folder, the unique keys,
the workers and ``tmp/``, and reports each violation as a `Problem`. With
``repair=True`` it also:

* rescues the running jobs of dead workers (their lock can be taken);
* cuts torn tails off journal segments no live process is writing;
* records the missing terminal record of a final job (in a new epoch);
* quarantines markers whose job folder is missing or unreadable;
* removes, once older than the horizon, staging files of dead pushers,
  job folders that were never published, and lock files of dead workers.

Everything else (a job in two states, two unfinished jobs with one unique key,
damage in the middle of a journal, symlinks) is reported for a person to look
at: fsck never guesses.

Part of the store layer: the only other module that touches files.
"""

from __future__ import annotations

import collections
import logging
import os
import stat
import time

import attrs

from . import _durable, _ids, _names, journal
from ._names import Marker
from ._paths import Parts
from ._text import printable
from .journal import RecordType
from .model import FINAL_DIRS, JobStatus
from .store import Store, _open_segment_at

logger = logging.getLogger(__name__)

HORIZON = 3600.0  # seconds before leftovers of a push or a worker count as garbage
#: seconds a final marker may wait for its record: a cancel renames first, then writes
SETTLE = 60.0
_LIVE = (_names.WAITING, _names.PENDING, _names.RUNNING)
_FINAL = frozenset(s.value for s in JobStatus if s.is_final)


@attrs.frozen
class Problem:
    """One violation: what, where, and whether `repair` fixed it."""

    kind: str
    path: str
    message: str
    repaired: bool = False


@attrs.frozen
class Report:
    problems: tuple[Problem, ...]
    jobs: int
    markers: int

    @property
    def ok(self) -> bool:
        """True when nothing is left to look at (every problem found was repaired)."""
        return all(p.repaired for p in self.problems)

    def unrepaired(self) -> list[Problem]:
        return [p for p in self.problems if not p.repaired]


@attrs.define
class _Seen:
    where: str  # waiting, pending, running, or the name of a final (or held) directory
    path: str
    marker: Marker | None = None
    worker: str | None = None
    parts: Parts = ()


def fsck(
    store: Store, *, repair: bool = False, horizon: float = HORIZON, settle: float = SETTLE
) -> Report:
    """Check (and with `repair`, fix) the root of `store`; see the module docstring."""
    return _Checker(store, repair, horizon, settle).run()


class _Checker:
    def __init__(self, store: Store, repair: bool, horizon: float, settle: float) -> None:
        self.store = store
        self.repair = repair
        self.horizon = horizon
        self.settle = settle
        self.problems: list[Problem] = []
        self.markers: dict[str, list[_Seen]] = collections.defaultdict(list)
        self.me = f"fsck-{os.getpid()}-{_ids.new_worker_id().rsplit('-', 1)[-1]}"

    def report(self, kind: str, path: str, message: str, repaired: bool = False) -> None:
        level = logging.INFO if repaired else logging.WARNING
        logger.log(
            level,
            "fsck %s %s: %s%s",
            kind,
            printable(path),
            printable(message),
            " (repaired)" if repaired else "",
        )
        self.problems.append(Problem(kind, path, message, repaired))

    def run(self) -> Report:
        store = self.store
        for queue in store.queues():
            if self.repair:
                for job_id in store.rescue(queue, self.me):
                    self.report("stale-claim", job_id, "running job of a dead worker", True)
            else:
                for job_id in self.stale_claims(queue):
                    self.report("stale-claim", job_id, "running job of a dead worker")
        for queue in store.queues():
            self.walk_queue(queue)
        jobs = self.walk_jobs()
        self.check_markers()
        self.check_unique_keys()
        self.check_tmp()
        self.check_workers()
        count = sum(len(v) for v in self.markers.values())
        return Report(tuple(self.problems), jobs, count)

    def stale_claims(self, queue: str) -> list[str]:
        """Running jobs whose worker's lock file is gone or can be locked (it is dead)."""
        wfd = self.store.dirs.cached((_names.WORKERS,))
        alive: dict[str, bool] = {}
        stale = []
        for marker, worker in self.store.running(queue):
            if worker not in alive:
                fd = _durable.open_lock_file(wfd, f"{worker}.lock", create=False)
                if fd is None:
                    alive[worker] = False
                else:
                    try:
                        alive[worker] = not _durable.try_lock(fd)
                    finally:
                        os.close(fd)
            if not alive[worker]:
                stale.append(marker.job_id)
        return stale

    # -- markers ------------------------------------------------------------------

    def walk_queue(self, queue: str) -> None:
        store = self.store
        for where, levels in ((_names.WAITING, 2), (_names.PENDING, 3)):
            for parts in store._leaf_buckets(store._qdir(queue, where), levels):
                for name in self.entries(parts):
                    try:
                        marker = Marker.parse(name)
                    except ValueError:
                        self.report("foreign-file", store._path(parts, name), "not a marker name")
                        continue
                    path = store._path(parts, name)
                    self.markers[marker.job_id].append(_Seen(where, path, marker))
                    self.check_attempts(marker, path)
        running = store._qdir(queue, _names.RUNNING)
        for name in self.entries(running):
            try:
                marker, worker = Marker.parse_running(name)
            except ValueError:
                self.report("foreign-file", store._path(running, name), "not a running marker")
                continue
            path = store._path(running, name)
            self.markers[marker.job_id].append(_Seen(_names.RUNNING, path, marker, worker))
            self.check_attempts(marker, path)
        for status in FINAL_DIRS:
            top = store._qdir(queue, status.value)
            for day in self.entries(top):
                for name in self.entries((*top, day)):
                    path = store._path((*top, day), name)
                    if not _ids.is_job_id(name):
                        self.report("foreign-file", path, "not a job id")
                        continue
                    self.markers[name].append(_Seen(status.value, path, parts=(*top, day)))

    def entries(self, parts: Parts) -> list[str]:
        """Names in a directory, reporting symlinks and anything that is not a file or dir."""
        with self.store._open_or_none(parts) as fd:
            if fd is None:
                return []
            names = _durable.listdir(fd)
            out = []
            for name in names:
                try:
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                except FileNotFoundError:
                    continue  # moved on while we looked
                if stat.S_ISLNK(st.st_mode):
                    self.report(
                        "symlink", self.store._path(parts, name), "symlinks are never followed"
                    )
                    continue
                out.append(name)
            return sorted(out)

    def check_attempts(self, marker: Marker, path: str) -> None:
        if marker.attempt > marker.max_attempts:
            self.report("attempts", path, f"attempt {marker.attempt} > max {marker.max_attempts}")

    def check_markers(self) -> None:
        for job_id, seen in self.markers.items():
            if len(seen) > 1:
                places = ", ".join(s.path for s in seen)
                self.report("duplicate", job_id, f"markers in more than one place: {places}")
            running = [s for s in seen if s.where == _names.RUNNING]
            if len(running) > 1:
                self.report("double-claim", job_id, "claimed by more than one worker")

    # -- job folders and journals -------------------------------------------------------

    def walk_jobs(self) -> int:
        store = self.store
        count = 0
        for shard in self.entries((_names.JOBS,)):
            for job_id in self.entries((_names.JOBS, shard)):
                path = store._path((_names.JOBS, shard), job_id)
                if not _ids.is_job_id(job_id) or _names.shard_of(job_id) != shard:
                    self.report("foreign-file", path, "not a job folder")
                    continue
                count += 1
                self.check_job(job_id)
        return count

    def check_job(self, job_id: str) -> None:
        store = self.store
        seen = self.markers.get(job_id, [])
        segments = store._segments(job_id)
        owned_by_live = any(s.where == _names.RUNNING for s in seen)  # rescued above if dead
        for epoch, seg in segments:
            name = f"{store._path(store._job_parts(job_id, _names.JOURNAL), f'{epoch:06d}')}.jsonl"
            if seg.problem is None:
                continue
            if seg.corrupt:
                self.report("journal-corrupt", name, seg.problem)
            elif owned_by_live and epoch == segments[-1][0]:
                continue  # its writer may be mid-append
            else:
                self.report("journal-tail", name, seg.problem, self.truncate(job_id, epoch, seg))
        if not seen:
            self.check_unpublished(job_id)
            return
        final = [s for s in seen if s.where in _FINAL]
        if len(seen) == 1 and final and segments and self.settled(final[0]):
            newest = segments[-1][1].records
            if not any(r.type in journal.TERMINAL for r in newest):
                status = JobStatus(final[0].where)
                fixed = self.repair and self.record_terminal(job_id, status, segments[-1][0] + 1)
                message = f"{status.value}, but its newest journal segment has no record of it"
                self.report("no-terminal-record", job_id, message, fixed)

    def settled(self, seen: _Seen) -> bool:
        """True if the marker has been where it is for longer than `settle` seconds."""
        with self.store._open_or_none(seen.parts) as fd:
            if fd is None:
                return False
            try:
                st = os.stat(seen.path.rsplit("/", 1)[-1], dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                return False
        return time.time() - st.st_ctime >= self.settle

    def truncate(self, job_id: str, epoch: int, seg: journal.ReadResult) -> bool:
        if not self.repair:
            return False
        parts = self.store._job_parts(job_id, _names.JOURNAL)
        with self.store.dirs.open(parts) as jfd:
            fd = os.open(
                f"{epoch:06d}.jsonl", os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=jfd
            )
            try:
                os.ftruncate(fd, seg.valid_bytes)
                os.fsync(fd)
            finally:
                os.close(fd)
        return True

    def record_terminal(self, job_id: str, status: JobStatus, epoch: int) -> bool:
        record = journal.Record(
            type=RecordType(status.value),
            at=self.store.clock.now(),
            data={"repaired_by": "fsck", "note": "the outcome's record was lost in a crash"},
        )
        with self.store.dirs.open(self.store._job_parts(job_id, _names.JOURNAL)) as jfd:
            fd = _open_segment_at(jfd, epoch)
            try:
                _durable.append(fd, journal.encode(record))
            finally:
                os.close(fd)
        return True

    def check_unpublished(self, job_id: str) -> None:
        """A job folder without any marker: a push in progress, or one that died."""
        if self.staging_alive(job_id):
            return
        age = time.time() - _ids.id_time_ms(job_id) / 1000
        path = self.store._path(self.store._job_parts(job_id), "")
        if age < self.horizon:
            return  # may be a push in progress on another host
        removed = False
        if self.repair:
            self.store._discard_folder(job_id)
            removed = True
        self.report("unpublished", path, f"never published ({age:.0f} s old)", removed)

    def staging_alive(self, job_id: str) -> bool:
        """True if a push (or retry) of the job may still be at work: its staging file in
        tmp/ is locked, or younger than the horizon."""
        tmp_fd = self.store.dirs.cached((_names.TMP,))
        for name in _durable.listdir(tmp_fd):
            if f".{job_id}." not in name and not name.startswith(f"retry.{job_id}."):
                continue
            if name.startswith("dead."):
                continue
            if self.alive_in_tmp(tmp_fd, name):
                return True
        return False

    def alive_in_tmp(self, tmp_fd: int, name: str) -> bool:
        """A tmp/ entry belongs to a live process: it is locked, or younger than the horizon."""
        try:
            st = os.stat(name, dir_fd=tmp_fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if time.time() - st.st_mtime < self.horizon:
            return True
        if not stat.S_ISREG(st.st_mode):
            return False
        fd = _durable.open_lock_file(tmp_fd, name, create=False)
        if fd is None:
            return False
        try:
            return not _durable.try_lock(fd)
        finally:
            os.close(fd)

    # -- unique keys, tmp, workers -------------------------------------------------------

    def check_unique_keys(self) -> None:
        store = self.store
        for digest in self.entries((_names.UNIQUE,)):
            owners = set()
            with store._open_or_none((_names.UNIQUE, digest)) as fd:
                if fd is None:
                    continue
                for gen in _durable.listdir(fd):
                    owner = store._read_generation(fd, gen) if gen.isdigit() else None
                    if owner is not None:
                        owners.add(owner[0])
            unfinished = [o for o in owners if self.unfinished(o)]
            if len(unfinished) > 1:
                self.report("unique-key", digest, f"unfinished jobs sharing a key: {unfinished}")

    def unfinished(self, job_id: str) -> bool:
        return any(
            s.where in _LIVE or s.where == JobStatus.HELD.value
            for s in self.markers.get(job_id, [])
        )

    def check_tmp(self) -> None:
        tmp_fd = self.store.dirs.cached((_names.TMP,))
        for name in _durable.listdir(tmp_fd):
            if self.alive_in_tmp(tmp_fd, name):
                continue
            removed = False
            if self.repair:
                dead = name if name.startswith("dead.") else f"dead.{name}"
                try:  # one winner against a late commit of a staging marker
                    if dead != name:
                        os.rename(name, dead, src_dir_fd=tmp_fd, dst_dir_fd=tmp_fd)
                    _durable.rmtree_at(tmp_fd, dead)
                    removed = True
                except FileNotFoundError:
                    continue
            self.report("tmp-garbage", f"tmp/{name}", "left by a process that died", removed)

    def check_workers(self) -> None:
        store = self.store
        wfd = store.dirs.cached((_names.WORKERS,))
        busy = {s.worker for seen in self.markers.values() for s in seen if s.worker}
        for name in _durable.listdir(wfd):
            worker, _, kind = name.rpartition(".")
            if kind != "lock" or worker in busy:
                continue
            fd = _durable.open_lock_file(wfd, name, create=False)
            if fd is None:
                continue
            try:
                if not _durable.try_lock(fd):
                    continue  # alive
                removed = False
                if self.repair:
                    _durable.unlink_quiet(wfd, f"{worker}.hb")
                    _durable.unlink_quiet(wfd, name)
                    removed = True
                self.report("dead-worker", f"workers/{name}", "lock file of a dead worker", removed)
            finally:
                os.close(fd)


def format_report(report: Report) -> str:
    """
    The report as text, one line per problem and a summary line. Paths and
    messages come from the disk: each is escaped, so a file name cannot add a
    line or drive the terminal.
    """
    lines = [
        f"{printable(p.kind):<20} {printable(p.path)}: {printable(p.message)}"
        f"{' (repaired)' if p.repaired else ''}"
        for p in report.problems
    ]
    left = len(report.unrepaired())
    lines.append(
        f"fsck: {report.jobs} jobs, {report.markers} markers, {len(report.problems)} problems"
        f" ({left} left)"
    )
    return "\n".join(lines)


__all__ = ["HORIZON", "SETTLE", "Problem", "Report", "format_report", "fsck"]
