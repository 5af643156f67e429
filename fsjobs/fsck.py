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
* removes, once older than the horizon, staging files of dead pushers (and
  the upload folders of dead HTTP requests), job folders that were never
  published, and lock files of dead workers;
* frees the concurrency slots of dead workers, removes old rate windows and
  unreadable schedule files (see `_fsck_flow`).

Everything else (a job in two states, two unfinished jobs with one unique key,
damage in a running or final job, symlinks, FIFOs and other planted entries) is
reported by name for a person to look at: fsck never guesses, and never
follows a symlink. On a root that uses a feature this fsjobs does not know, it
checks but refuses to repair.

Part of the store layer: it reads and writes the tree through `Tree`.
"""

from __future__ import annotations

import collections
import functools
import logging
import os
import typing
from collections.abc import Callable

import attrs

from . import _durable, _ids, _names, _unique
from ._depends import check_root as check_dependencies
from ._deptree import LOCK_PREFIX, STEP_PREFIX
from ._fsck_flow import FlowChecks
from ._fsck_jobs import JobChecks, Seen
from ._names import Marker
from ._paths import Parts
from ._text import printable
from ._transitions import BY_DAY, Where
from ._tree import QUEUE_ENTRIES, TOP_DIRS, Tree, path
from ._workflows import check_root as check_workflows
from .errors import StoreError
from .store import Store

logger = logging.getLogger(__name__)
T = typing.TypeVar("T")


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


class _Checker(JobChecks, FlowChecks):
    def __init__(self, store: Store, repair: bool, horizon: float, settle: float) -> None:
        self.store = store
        self.tree: Tree = store.tree
        self.repair = repair
        self.horizon = horizon
        self.settle = settle
        self.problems: list[Problem] = []
        self.markers: dict[str, list[Seen]] = collections.defaultdict(list)
        #: job id -> unique key, of every job whose spec names one
        self.keys: dict[str, str] = {}
        self.me = f"fsck-{os.getpid()}-{_ids.new_worker_id().rsplit('-', 1)[-1]}"
        #: steps staged by live workflow pushes: their folders are not garbage
        self.staged: set[str] = set()

    def report(self, kind: str, where: str, message: str, repaired: bool = False) -> None:
        level, note = (logging.INFO, " (repaired)") if repaired else (logging.WARNING, "")
        logger.log(level, "fsck %s %s: %s%s", kind, printable(where), printable(message), note)
        self.problems.append(Problem(kind, where, message, repaired))

    def run(self) -> Report:
        self.check_root()
        queues = self.tree.queues()
        self.step(_names.WORKERS, lambda: self.check_claims(queues))
        self.step("workflows", self.check_graphs)
        for queue in queues:
            self.step(path(self.tree.queue_dir(queue)), functools.partial(self.walk_queue, queue))
        jobs = self.step(_names.JOBS, self.walk_jobs) or 0
        self.check_markers()
        self.step(_names.UNIQUE, self.check_unique_keys)
        self.step(_names.PERIODIC, self.check_periodic)
        self.step(_names.TMP, self.check_tmp)
        self.step(_names.WORKERS, self.check_workers)
        count = sum(len(v) for v in self.markers.values())
        return Report(tuple(self.problems), jobs, count)

    def check_graphs(self) -> None:
        """Workflow pushes of dead pushers, and dependency checks left by dead actors."""
        found, self.staged = check_workflows(self.tree, self.repair)
        for problem in (*found, *check_dependencies(self.tree, self.repair)):
            self.report(*problem)

    def step(self, where: str, check: Callable[[], T]) -> T | None:
        """Run one check; a directory it cannot use is reported, and fsck goes on."""
        try:
            return check()
        except (StoreError, OSError) as exc:
            self.report("unusable", where, f"cannot be checked: {exc}")
            return None

    def check_root(self) -> None:
        """The root holds the format file, its lock, and the five top directories."""
        files = {_names.FORMAT_FILE, _names.FORMAT_LOCK}
        for name in self.entries(()):
            wanted = "file" if name in files else "directory" if name in TOP_DIRS else None
            kind = self.kind((), name)
            if wanted is None or kind != wanted:
                self.report("foreign-file", name, f"a {kind} does not belong here")

    def kind(self, parts: Parts, name: str) -> str:
        with self.tree.open_or_none(parts) as fd:
            if fd is None:
                return "missing"
            try:
                return _durable.kind_of(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode)
            except OSError:
                return "missing"

    def check_claims(self, queues: list[str]) -> None:
        """Running jobs of dead workers: rescued by a repair, reported otherwise."""
        for queue in queues:
            if self.repair:
                for job_id in self.store.rescue(queue, self.me):
                    self.report("stale-claim", job_id, "running job of a dead worker", True)
            else:
                for job_id in self.stale_claims(queue):
                    self.report("stale-claim", job_id, "running job of a dead worker")

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
        names = self.entries(tree.queue_dir(queue))
        for name in names:
            if name not in QUEUE_ENTRIES:
                where = path(tree.queue_dir(queue), name)
                self.report("foreign-file", where, "not a state of the queue (a newer fsjobs'?)")
        self.check_flow(queue, names)
        for where, levels in ((Where.WAITING, 2), (Where.PENDING, 3)):
            for parts in self.buckets(tree.queue_dir(queue, where), levels):
                for name in self.entries(parts, dirs=False):
                    try:
                        marker = Marker.parse(name)
                    except ValueError:
                        self.report("foreign-file", path(parts, name), "not a marker name")
                        continue
                    self.markers[marker.job_id].append(Seen(queue, where, parts, name, marker))
                    self.check_attempts(marker, path(parts, name))
        running = tree.running_dir(queue)
        for name in self.entries(running, dirs=False):
            try:
                marker, worker = Marker.parse_running(name)
            except ValueError:
                self.report("foreign-file", path(running, name), "not a running marker")
                continue
            self.markers[marker.job_id].append(
                Seen(queue, Where.RUNNING, running, name, marker, worker)
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
                    self.markers[name].append(Seen(queue, where, (*top, day), name))

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

    # -- unique keys, tmp, workers -------------------------------------------------------

    def check_unique_keys(self) -> None:
        """At most one unfinished job per key, and each unfinished keyed job owns its key."""
        newest: dict[str, str] = {}
        for digest in self.entries((_names.UNIQUE,), dirs=True):
            key_dir = (_names.UNIQUE, digest)
            owners = set()
            with self.tree.open_or_none(key_dir) as fd:
                if fd is None:
                    continue
                gens = _unique.generations(fd)
                for gen in gens:
                    owner = _unique.read_generation(fd, gen)
                    if owner is None:
                        self.report("unique-key", path(key_dir, gen), "a malformed generation")
                    else:
                        owners.add(owner[0])
                        newest[digest] = owner[0]
            for name in sorted(set(self.entries(key_dir, dirs=False)) - set(gens)):
                self.report("foreign-file", path(key_dir, name), "not a generation of the key")
            unfinished = sorted(o for o in owners if self.unfinished(o))
            if len(unfinished) > 1:
                self.report("unique-key", digest, f"unfinished jobs sharing a key: {unfinished}")
        for job_id, key in sorted(self.keys.items()):
            digest = _unique.key_dir(key)[-1]
            if self.unfinished(job_id) and newest.get(digest) != job_id:
                where = path((_names.UNIQUE, digest))
                self.report("unique-key", where, f"unfinished job {job_id} does not own its key")

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
        for name in self.entries((_names.WORKERS,), dirs=False):
            worker, dot, kind = name.rpartition(".")
            if not dot or kind not in ("lock", "hb") or not _ids.WORKER_ID_RE.fullmatch(worker):
                self.report("foreign-file", path((_names.WORKERS,), name), "not a worker's file")
                continue
            if kind == "hb" and self.store.read_heartbeat(worker) is None:
                self.report(
                    "foreign-file", path((_names.WORKERS,), name), "not a heartbeat counter"
                )
            if kind != "lock" or worker in busy:
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
