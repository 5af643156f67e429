"""
The invariants of DESIGN.md §5, checked by walking a queue root (an ``fsck`` for the fault tests).

`check` never trusts the store's own bookkeeping alone: it lists every state directory
itself, parses every journal segment with `fsjobs.journal.parse`, and then asks the store
(`Store.get`, `Store.counts`) whether it agrees. It returns a list of readable problems;
an empty list means the tree is sound.
"""

from __future__ import annotations

import collections
import os
import pathlib
import typing
from collections.abc import Iterable

import attrs

from fsjobs import JobNotFound, JobStatus, _durable, journal
from fsjobs._durable import try_lock, unlock
from fsjobs._names import Marker
from fsjobs._state import was_rescued
from fsjobs.fsck import fsck
from fsjobs.store import Store

LIVE = ("waiting", "pending", "running")
#: the directory depth of marker names under each live state directory
DEPTH = {"waiting": 2, "pending": 3, "running": 0}


@attrs.define
class Found:
    """One marker: which queue, which state directory, its path relative to the root."""

    queue: str
    where: str
    path: str
    marker: Marker | None = None
    worker: str | None = None


@attrs.define
class Tree:
    markers: dict[str, list[Found]] = attrs.Factory(lambda: collections.defaultdict(list))
    #: job id -> [(epoch, parse result)] of its journal segments, in epoch order
    journals: dict[str, list[tuple[int, journal.ReadResult]]] = attrs.Factory(dict)
    problems: list[str] = attrs.Factory(list)
    torn_tails: int = 0

    def ids_in(self, *wheres: str) -> set[str]:
        return {i for i, fs in self.markers.items() if any(f.where in wheres for f in fs)}


def _files(top: pathlib.Path, depth: int) -> Iterable[pathlib.Path]:
    """Entries exactly `depth` directory levels below `top` (no symlink is followed)."""
    try:
        entries = list(os.scandir(top))
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in sorted(entries, key=lambda e: e.name):
        if depth == 0:
            yield pathlib.Path(entry.path)
        elif entry.is_dir(follow_symlinks=False):
            yield from _files(pathlib.Path(entry.path), depth - 1)


#: what flow control keeps in a queue's directory besides its state directories
FLOW_ENTRIES = frozenset({"paused", "settings.json", "slots", "rate"})


def walk(root: pathlib.Path) -> Tree:
    tree = Tree()
    queues = root / "queues"
    for qdir in sorted(queues.iterdir()) if queues.is_dir() else ():
        for sdir in sorted(qdir.iterdir()):
            where = sdir.name
            if where in FLOW_ENTRIES:
                continue  # a pause, caps, slots and rate tokens: no markers (fsck checks them)
            if where in LIVE:
                for path in _files(sdir, DEPTH[where]):
                    rel = str(path.relative_to(root))
                    try:
                        if where == "running":
                            marker, worker = Marker.parse_running(path.name)
                        else:
                            marker, worker = Marker.parse(path.name), None
                    except ValueError:
                        tree.problems.append(f"foreign file in a state directory: {rel}")
                        continue
                    if marker.attempt > marker.max_attempts:
                        tree.problems.append(f"attempts above the maximum: {rel}")
                    tree.markers[marker.job_id].append(Found(qdir.name, where, rel, marker, worker))
            else:  # a final directory: <status>/<day>/<id>
                for path in _files(sdir, 1):
                    tree.markers[path.name].append(
                        Found(qdir.name, where, str(path.relative_to(root)))
                    )
    jobs = root / "jobs"
    for jdir in _files(jobs, 1) if jobs.is_dir() else ():
        segs = []
        for seg in _files(jdir, 0):
            if not (len(seg.name) == 12 and seg.name.endswith(".jsonl") and seg.name[:6].isdigit()):
                continue  # a segment moved aside (.undone.*) is kept for inspection only
            result = journal.parse(seg.read_bytes())
            rel = seg.relative_to(root)
            if result.corrupt or result.unknown:
                tree.problems.append(f"journal damaged (not a torn tail): {rel}: {result}")
            elif result.problem is not None:
                tree.torn_tails += 1
            segs.append((int(seg.name[:6]), result))
        tree.journals[jdir.name] = segs
    return tree


def worker_alive(root: pathlib.Path, worker: str) -> bool:
    """True if some open file description holds the worker's OFD lock."""
    try:
        fd = os.open(root / "workers" / f"{worker}.lock", os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        if try_lock(fd):
            unlock(fd)
            return False
        return True
    finally:
        os.close(fd)


_STATUS_OF_DIR = {
    "pending": {JobStatus.PENDING},
    "running": {JobStatus.RUNNING},
    "waiting": {JobStatus.SCHEDULED, JobStatus.RETRYING},
}


def check(
    root: pathlib.Path,
    acked: Iterable[str] = (),
    *,
    after_recovery: bool = False,
    tree: Tree | None = None,
) -> list[str]:
    """
    The problems of the tree under `root`; [] if every invariant holds:

    1. every `acked` id has exactly one marker, and no id has two (in any states);
    2. every visible marker names a whole, readable job whose status matches the
       marker's directory (a crashed push leaves a whole job or nothing visible);
    3. every journal segment parses, damaged at most in a torn tail;
    4. attempts never exceed the maximum in a marker name;
    5. at most one unfinished job per unique key;
    6. the store's counts agree with the markers;
    7. with `after_recovery`: no running marker belongs to a worker that is not alive.
    """
    root = pathlib.Path(root)
    tree = walk(root) if tree is None else tree
    problems = list(tree.problems)
    for job_id, found in tree.markers.items():
        if len(found) > 1:
            problems.append(f"job {job_id} has {len(found)} markers: {[f.path for f in found]}")
    store = Store(root, staleness=0)
    try:
        per_key: dict[str, list[str]] = collections.defaultdict(list)
        for job_id, found in sorted(tree.markers.items()):
            f = found[0]
            try:
                state = store.get(job_id)
            except Exception as exc:
                problems.append(f"visible job {job_id} ({f.path}) is unreadable: {exc!r}")
                continue
            allowed = _STATUS_OF_DIR.get(f.where)
            if allowed is None:
                try:
                    allowed = {JobStatus(f.where)}
                except ValueError:
                    problems.append(f"marker in an unknown directory: {f.path}")
                    continue
            if state.status not in allowed:
                problems.append(
                    f"job {job_id}: get() says {state.status.value}, its marker is {f.path}"
                )
            if state.attempts > state.max_attempts:
                problems.append(f"job {job_id}: {state.attempts} of {state.max_attempts} attempts")
            if (f.where in LIVE or f.where in ("held", "blocked")) and state.unique_key is not None:
                per_key[state.unique_key].append(job_id)
            if after_recovery and f.where == "running":
                assert f.worker is not None
                if not worker_alive(root, f.worker):
                    problems.append(f"job {job_id} is left running by dead worker {f.worker}")
        for key, ids in per_key.items():
            if len(ids) > 1:
                problems.append(f"unique key {key!r} has {len(ids)} unfinished jobs: {ids}")
        for job_id in acked:
            if job_id not in tree.markers:
                try:
                    state = store.get(job_id)
                    problems.append(f"acked job {job_id} has no marker; get() says {state}")
                except JobNotFound:
                    problems.append(f"acked job {job_id} is lost")
        for queue in store.queues():
            counted = sum(store.counts(queue).values())
            seen = sum(1 for fs in tree.markers.values() for f in fs if f.queue == queue)
            if counted != seen:
                problems.append(f"queue {queue}: counts() total {counted}, markers {seen}")
    finally:
        store.close()
    return problems


def repair(root: pathlib.Path) -> list[str]:
    """
    Run ``fsjobs fsck --repair`` over the root (it rescues dead workers' jobs, cuts torn
    tails, removes dead workers' lock files); return what it found and could not repair.
    """
    store = Store(root, staleness=0)
    try:
        result = fsck(store, repair=True)
    finally:
        store.close()
    return [f"fsck: {p.kind} {p.path}: {p.message}" for p in result.unrepaired()]


def describe_journal(segments: list[tuple[int, journal.ReadResult]]) -> str:
    """A job's journal in one line, for a failure message: each epoch, its records and writers."""
    return "; ".join(
        f"epoch {epoch}: "
        + ", ".join(
            f"{r.type.value}({r.get_str('worker') or r.get_str('by') or ''})" for r in seg.records
        )
        for epoch, seg in segments
    )


def published_completions(segments: list[tuple[int, journal.ReadResult]]) -> int:
    """
    How many `completed` records of a job's journal count: those in segments whose
    next epoch was not opened by a rescue (a fenced owner's record never published).
    """
    return sum(
        1
        for i, (_, seg) in enumerate(segments)
        if not was_rescued(segments, i)
        for r in seg.records
        if r.type is journal.RecordType.COMPLETED
    )


#: every line `report` printed, for the terminal summary (tests/faults/conftest.py)
REPORTED: list[str] = []


def report(line: str) -> None:
    """
    Print a FIGURES/NOTES line, keep it for the terminal summary (shown with or
    without ``-s``), and append it to the file named by $FSJOBS_FIGURES.
    """
    print(f"\n{line}", flush=True)
    REPORTED.append(line)
    path = os.environ.get("FSJOBS_FIGURES")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")


#: The os functions the fault tests wrap: every call that can change the tree or its fds.
PATCHED = (
    "open",
    "write",
    "pwrite",
    "fsync",
    "rename",
    "link",
    "mkdir",
    "unlink",
    "rmdir",
    "ftruncate",
    "close",
)


def patch_targets() -> dict[str, typing.Any]:
    """
    The modules that hold each wrapped call, by name: the `PATCHED` os functions,
    and ``_syncfs`` of `fsjobs._durable` (push_many's one syncfs per batch).
    """
    targets: dict[str, typing.Any] = dict.fromkeys(PATCHED, os)
    if _durable._syncfs is not None:
        targets["_syncfs"] = _durable
    return targets
