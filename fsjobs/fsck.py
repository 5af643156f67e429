"""
`fsck`: check a root against the invariants of the format, and repair what can
be repaired safely while workers run.

It walks every queue's state directories, every job folder, the unique keys,
the workers and ``tmp/``, and reports each violation as a `Problem`. With
``repair=True`` it also:

* rescues the running jobs of dead workers (their lock can be taken);
* cuts a torn last line off journal segments no live process is writing;
* quarantines in ``corrupt/`` a waiting or pending job whose journal is damaged
  anywhere else, or whose folder is missing (a complete line that fails its
  checksum is corruption, never a crash);
* records the missing terminal record of a final job (in a new epoch);
* finishes the workflow pushes of dead pushers (published if committed, else
  aborted), and releases (or cancels) every blocked job whose parents have all
  completed (or one failed), taking over dependency checks left by dead actors;
* removes, once older than the horizon, staging files of dead pushers, job
  folders that were never published, and lock files of dead workers.

Everything else (a job in two states, two unfinished jobs with one unique key,
damage in a running or final job, symlinks, FIFOs and other planted entries) is
reported by name for a person to look at: fsck never guesses, and never
follows a symlink. On a root that uses a feature this fsjobs does not know, it
checks but refuses to repair.

Part of the store layer: it reads and writes the tree through `Tree`.
"""

from __future__ import annotations

import collections
import logging
import os
import stat
import time

import attrs

from . import _durable, _ids, _names, _read, _transitions, _unique, journal
from ._depends import check_root as check_dependencies
from ._deptree import LOCK_PREFIX, STEP_PREFIX
from ._names import Marker
from ._paths import Parts
from ._text import printable
from ._transitions import BY_DAY, Where
from ._tree import Tree, path, record
from ._workflows import check_root as check_workflows
from .errors import StoreError
from .journal import RecordType
from .store import Store

logger = logging.getLogger(__name__)

HORIZON = 3600.0  # seconds before leftovers of a push or a worker count as garbage
#: seconds a marker must have stayed where it is before fsck acts on it (content lags names,
#: and a cancel renames first, then writes its record)
SETTLE = 60.0


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
    queue: str
    where: Where
    parts: Parts
    name: str
    marker: Marker | None = None
    worker: str | None = None

    @property
    def path(self) -> str:
        return path(self.parts, self.name)


def fsck(
    store: Store, *, repair: bool = False, horizon: float = HORIZON, settle: float = SETTLE
) -> Report:
    """Check (and with `repair`, fix) the root of `store`; see the module docstring."""
    tree = store.tree
    if not tree.for_reading():
        return Report((), 0, 0)
    tree.refresh_format()
    if repair:
        tree.for_writing()  # FormatError: never repair a root this fsjobs does not fully know
    return _Checker(store, repair, horizon, settle).run()


class _Checker:
    def __init__(self, store: Store, repair: bool, horizon: float, settle: float) -> None:
        self.store = store
        self.tree: Tree = store.tree
        self.repair = repair
        self.horizon = horizon
        self.settle = settle
        self.problems: list[Problem] = []
        self.markers: dict[str, list[_Seen]] = collections.defaultdict(list)
        self.me = f"fsck-{os.getpid()}-{_ids.new_worker_id().rsplit('-', 1)[-1]}"
        #: steps staged by live workflow pushes: their folders are not garbage
        self.staged: set[str] = set()

    def report(self, kind: str, where: str, message: str, repaired: bool = False) -> None:
        level, note = (logging.INFO, " (repaired)") if repaired else (logging.WARNING, "")
        logger.log(level, "fsck %s %s: %s%s", kind, printable(where), printable(message), note)
        self.problems.append(Problem(kind, where, message, repaired))

    def run(self) -> Report:
        queues = self.tree.queues()
        for queue in queues:
            if self.repair:
                for job_id in self.store.rescue(queue, self.me):
                    self.report("stale-claim", job_id, "running job of a dead worker", True)
            else:
                for job_id in self.stale_claims(queue):
                    self.report("stale-claim", job_id, "running job of a dead worker")
        found, self.staged = check_workflows(self.tree, self.repair)
        for problem in (*found, *check_dependencies(self.tree, self.repair)):
            self.report(*problem)
        for queue in queues:
            self.walk_queue(queue)
        jobs = self.walk_jobs()
        self.check_markers()
        self.check_unique_keys()
        self.check_tmp()
        self.check_workers()
        count = sum(len(v) for v in self.markers.values())
        return Report(tuple(self.problems), jobs, count)

    def stale_claims(self, queue: str) -> list[str]:
        """Running jobs whose worker is dead (its lock file is gone or can be locked)."""
        alive: dict[str, bool] = {}
        stale = []
        for marker, worker in self.tree.running(queue):
            if worker not in alive:
                alive[worker] = bool(self.store.worker_alive(worker))
            if not alive[worker]:
                stale.append(marker.job_id)
        return stale

    # -- listing, reporting what does not belong ----------------------------------------------

    def entries(self, parts: Parts, *, dirs: bool | None = None) -> list[str]:
        """
        Names in a directory, reporting (and leaving out) symlinks, special files
        and, if `dirs` says which kind belongs here, entries of the other kind. A
        directory that is itself not a real directory is reported too.
        """
        try:
            with self.tree.dirs.open(parts) as fd:
                out = []
                for name in sorted(_durable.listdir(fd)):
                    try:
                        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                    except FileNotFoundError:
                        continue  # moved on while we looked
                    kind = _durable.kind_of(st.st_mode)
                    wrong_kind = dirs is not None and (kind == "directory") != dirs
                    if kind == "symlink":
                        self.report("symlink", path(parts, name), "symlinks are never followed")
                    elif kind not in ("file", "directory") or wrong_kind:
                        self.report(
                            "foreign-file", path(parts, name), f"a {kind} does not belong here"
                        )
                    else:
                        out.append(name)
                return out
        except FileNotFoundError:
            return []
        except StoreError as exc:
            self.report("not-a-directory", path(parts), str(exc))
            return []

    # -- markers ------------------------------------------------------------------------------

    def walk_queue(self, queue: str) -> None:
        tree = self.tree
        for where, levels in ((Where.WAITING, 2), (Where.PENDING, 3)):
            for parts in self.buckets(tree.queue_dir(queue, where), levels):
                for name in self.entries(parts, dirs=False):
                    try:
                        marker = Marker.parse(name)
                    except ValueError:
                        self.report("foreign-file", path(parts, name), "not a marker name")
                        continue
                    self.markers[marker.job_id].append(_Seen(queue, where, parts, name, marker))
                    self.check_attempts(marker, path(parts, name))
        running = tree.running_dir(queue)
        for name in self.entries(running, dirs=False):
            try:
                marker, worker = Marker.parse_running(name)
            except ValueError:
                self.report("foreign-file", path(running, name), "not a running marker")
                continue
            self.markers[marker.job_id].append(
                _Seen(queue, Where.RUNNING, running, name, marker, worker)
            )
            self.check_attempts(marker, path(running, name))
        for where in BY_DAY:
            top = tree.queue_dir(queue, where)
            for day in self.entries(top, dirs=True):
                for name in self.entries((*top, day), dirs=False):
                    if not _ids.is_job_id(name) or _names.day_of(name) != day:
                        self.report(
                            "foreign-file", path((*top, day), name), "not a job id of this day"
                        )
                        continue
                    self.markers[name].append(_Seen(queue, where, (*top, day), name))

    def buckets(self, top: Parts, levels: int) -> list[Parts]:
        """The leaf buckets `levels` below `top`, reporting whatever is planted among them."""
        found = [top]
        for _ in range(levels):
            found = [(*parts, name) for parts in found for name in self.entries(parts, dirs=True)]
        return found

    def check_attempts(self, marker: Marker, where: str) -> None:
        if marker.attempt > marker.max_attempts:
            self.report("attempts", where, f"attempt {marker.attempt} > max {marker.max_attempts}")

    def check_markers(self) -> None:
        for job_id, seen in self.markers.items():
            if len(seen) > 1:
                places = ", ".join(s.path for s in seen)
                self.report("duplicate", job_id, f"markers in more than one place: {places}")
            if sum(s.where is Where.RUNNING for s in seen) > 1:
                self.report("double-claim", job_id, "claimed by more than one worker")

    # -- job folders and journals -----------------------------------------------------------

    def walk_jobs(self) -> int:
        count = 0
        for shard in self.entries((_names.JOBS,), dirs=True):
            for job_id in self.entries((_names.JOBS, shard)):
                if not _ids.is_job_id(job_id) or _names.shard_of(job_id) != shard:
                    self.report(
                        "foreign-file", path((_names.JOBS, shard), job_id), "not a job folder"
                    )
                    continue
                count += 1
                self.check_job(job_id)
        for job_id, seen in self.markers.items():
            self.check_folder(job_id, seen)
        return count

    def check_job(self, job_id: str) -> None:
        seen = self.markers.get(job_id, [])
        folder = Tree.job_dir(job_id)
        names = self.entries(folder)
        if _names.FORMAT1_JOURNAL in names:
            self.report("format-1", path(folder, _names.FORMAT1_JOURNAL), "run `fsjobs migrate`")
        segments = _read.segments(self.tree, job_id)
        owned_by_live = any(s.where is Where.RUNNING for s in seen)  # rescued above if dead
        damaged = False
        for epoch, seg in segments:
            where = path(folder, _names.segment_name(epoch))
            if seg.problem is None:
                continue
            if seg.unknown:
                self.report("journal-unknown", where, f"{seg.problem}: written by a newer fsjobs?")
            elif seg.torn:
                if owned_by_live and epoch == segments[-1][0]:
                    continue  # its writer may be mid-append
                self.report("journal-tail", where, seg.problem, self.truncate(job_id, epoch, seg))
            else:
                damaged = True
                self.report(
                    "journal-corrupt",
                    where,
                    seg.problem,
                    self.quarantine(job_id, seen, seg.problem),
                )
        if not seen:
            self.check_unpublished(job_id)
            return
        final = [s for s in seen if s.where.is_final]
        if len(seen) == 1 and final and segments and not damaged and self.settled(final[0]):
            newest = segments[-1][1].records
            if not any(r.type in journal.TERMINAL for r in newest):
                where = final[0].where
                fixed = self.repair and self.record_terminal(job_id, where, segments[-1][0] + 1)
                message = f"{where.value}, but its newest journal segment has no record of it"
                self.report("no-terminal-record", job_id, message, fixed)

    def check_folder(self, job_id: str, seen: list[_Seen]) -> None:
        """
        A marker whose job folder is gone: restored from the marker (a power cut
        lost the folder's name), or, if the marker does not hold the job's spec,
        quarantined once it has settled.
        """
        if self.tree.exists(Tree.job_dir(job_id), _names.segment_name(0)):
            return
        if all(s.where is Where.CORRUPT for s in seen):
            return  # already quarantined: nothing more to do
        if (
            self.repair
            and len(seen) == 1
            and _read.restore_folder(self.tree, job_id, seen[0].parts, seen[0].name)
        ):
            self.report("no-job-folder", job_id, "restored from its marker", True)
            return
        fixed = self.quarantine(job_id, seen, "its job folder is missing")
        self.report("no-job-folder", job_id, "a marker without its job's journal", fixed)

    def quarantine(self, job_id: str, seen: list[_Seen], why: str) -> bool:
        """Move a waiting or pending job that has settled to ``corrupt/`` (repair only)."""
        if not self.repair or len(seen) != 1:
            return False
        s, marker = seen[0], seen[0].marker
        if marker is None or s.where not in (Where.WAITING, Where.PENDING) or not self.settled(s):
            return False
        dst = self.tree.day_dir(s.queue, Where.CORRUPT, job_id)
        if not self.tree.move(s.parts, s.name, dst, job_id):
            return False
        new = _transitions.reopened(marker, marker.epoch + 1)
        rec = record(
            RecordType.CORRUPT,
            self.tree.clock.now(),
            attempt=new.attempt,
            max_attempts=new.max_attempts,
            error={"type": "CorruptJob", "message": why, "traceback": ""},
            marker=path(dst, job_id),
            repaired_by="fsck",
        )
        try:
            self.tree.open_epoch(job_id, new.epoch, rec)
        except (OSError, StoreError):
            pass  # no folder to write in: the marker's place says it all
        return True

    def settled(self, seen: _Seen) -> bool:
        """True if the marker has been where it is for longer than `settle` seconds."""
        with self.tree.open_or_none(seen.parts) as fd:
            if fd is None:
                return False
            try:
                st = os.stat(seen.name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                return False
        return time.time() - st.st_ctime >= self.settle

    def truncate(self, job_id: str, epoch: int, seg: journal.ReadResult) -> bool:
        if not self.repair:
            return False
        with self.tree.dirs.open(Tree.job_dir(job_id)) as job_fd:
            flags = os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
            fd = os.open(_names.segment_name(epoch), flags, dir_fd=job_fd)
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    return False
                os.ftruncate(fd, seg.valid_bytes)
                os.fsync(fd)
            finally:
                os.close(fd)
        return True

    def record_terminal(self, job_id: str, where: Where, epoch: int) -> bool:
        rec = record(
            RecordType(where.value),
            self.tree.clock.now(),
            repaired_by="fsck",
            note="the outcome's record was lost in a crash",
        )
        self.tree.open_epoch(job_id, epoch, rec)
        return True

    def check_unpublished(self, job_id: str) -> None:
        """A job folder without any marker: a push in progress, or one that died."""
        if self.staging_alive(job_id):
            return
        age = time.time() - _ids.id_time_ms(job_id) / 1000
        if age < self.horizon:
            return  # may be a push in progress on another host
        removed = False
        if self.repair:
            self.tree.discard_job(job_id)
            removed = True
        self.report(
            "unpublished", path(Tree.job_dir(job_id)), f"never published ({age:.0f} s old)", removed
        )

    def staging_alive(self, job_id: str) -> bool:
        """True if a push (or retry) of the job may still be at work: its staging file in
        tmp/ is locked, or younger than the horizon."""
        if job_id in self.staged:
            return True
        tmp_fd = self.tree.dirs.cached((_names.TMP,))
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
        try:
            fd = _durable.open_lock_file(tmp_fd, name, create=False)
        except StoreError:
            return False
        if fd is None:
            return False
        try:
            return not _durable.try_lock(fd)
        finally:
            os.close(fd)

    # -- unique keys, tmp, workers -------------------------------------------------------

    def check_unique_keys(self) -> None:
        for digest in self.entries((_names.UNIQUE,), dirs=True):
            owners = set()
            with self.tree.open_or_none((_names.UNIQUE, digest)) as fd:
                if fd is None:
                    continue
                for gen in _unique.generations(fd):
                    owner = _unique.read_generation(fd, gen)
                    if owner is not None:
                        owners.add(owner[0])
            unfinished = sorted(o for o in owners if self.unfinished(o))
            if len(unfinished) > 1:
                self.report("unique-key", digest, f"unfinished jobs sharing a key: {unfinished}")

    def unfinished(self, job_id: str) -> bool:
        return any(not s.where.is_final for s in self.markers.get(job_id, []))

    def check_tmp(self) -> None:
        tmp_fd = self.tree.dirs.cached((_names.TMP,))
        for name in _durable.listdir(tmp_fd):
            if name.startswith((LOCK_PREFIX, STEP_PREFIX)) or self.alive_in_tmp(tmp_fd, name):
                continue  # a workflow push's lock and steps: see _workflows.check_root
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
        busy = {s.worker for seen in self.markers.values() for s in seen if s.worker}
        for name in self.entries((_names.WORKERS,)):
            worker, dot, kind = name.rpartition(".")
            if not dot or kind != "lock" or worker in busy:
                continue
            if self.store.worker_alive(worker) is not False:
                continue  # alive, or not a usable lock file (reported by `entries`)
            removed = False
            if self.repair:
                wfd = self.tree.dirs.cached((_names.WORKERS,))
                _durable.unlink_quiet(wfd, f"{worker}.hb")
                _durable.unlink_quiet(wfd, name)
                removed = True
            self.report("dead-worker", f"workers/{name}", "lock file of a dead worker", removed)


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
