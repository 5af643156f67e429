"""
What fsck checks of job folders: each folder's journal (a torn tail is cut, a
corrupt line quarantines a job that has not run), that every entry is one the
layout names, of the kind it names, that what the journal points at (uploads, a
result file) is there, and that a marker without a folder or a folder without a
marker is what it seems before anything is removed.
"""

from __future__ import annotations

import os
import re
import stat
import time

import attrs

from . import _durable, _ids, _names, _read, _transitions, _uploads, journal
from ._json import loads
from ._names import Marker
from ._paths import Parts
from ._state import Segments, spec_in
from ._transitions import Where
from ._tree import Tree, path, record
from .errors import StoreError
from .journal import RecordType
from .model import MAX_RESULT_BYTES

Problem = tuple[str, str, str]

_DIRS = frozenset({_names.UPLOADS, _names.ATTEMPTS, "dependents"})
_FILES = re.compile(r"^(\d{6}\.jsonl(\.undone\.[0-9a-f]+)?|cancel(\.\d{6}\.done)?)$")
_ATTEMPT_FILES = frozenset({_names.RESULT_FILE, "log"})


def problems(tree: Tree, job_id: str, segments: Segments) -> list[Problem]:
    """Entries of the job's folder the layout does not name, and missing uploads or results."""
    folder = Tree.job_dir(job_id)
    found: list[Problem] = []
    kinds = _kinds(tree, folder)
    for name, kind in kinds.items():
        where = path(folder, name)
        if kind == "symlink":
            found.append(("symlink", where, "symlinks are never followed"))
        elif name == _names.FORMAT1_JOURNAL:
            found.append(("format-1", where, "run `fsjobs migrate`"))
        elif name in _DIRS:
            if kind != "directory":
                found.append(("foreign-file", where, f"a {kind} where a directory belongs"))
        elif not _FILES.fullmatch(name) or kind != "file":
            found.append(("foreign-file", where, f"a {kind} does not belong in a job's folder"))
    if kinds.get(_names.ATTEMPTS) == "directory":
        found += _attempts(tree, folder)
    spec = spec_in(segments)
    uploads = spec.get("uploads") if spec is not None else None
    if isinstance(uploads, list) and uploads:
        present = _kinds(tree, (*folder, _names.UPLOADS))
        for name in map(str, uploads):
            if present.get(name) != "file":
                where = path((*folder, _names.UPLOADS), name)
                found.append(("upload-missing", where, "an upload of the job is missing"))
    for rel in _result_files(segments):
        found += _result(tree, folder, rel)
    return found


def _result(tree: Tree, folder: Parts, rel: str) -> list[Problem]:
    """A result file the journal points at must be there and hold JSON."""
    parts = tuple(rel.split("/"))
    where = path(folder, rel)
    if len(parts) != 3 or parts[0] != _names.ATTEMPTS or not parts[1].isdigit():
        return [("result-missing", where, "the journal names a result file outside attempts/")]
    try:
        with tree.dirs.open((*folder, *parts[:2])) as fd:
            loads(_durable.read_file(fd, parts[2], MAX_RESULT_BYTES))
    except (OSError, StoreError):
        return [("result-missing", where, "the job's result file is missing or not a file")]
    except (ValueError, UnicodeDecodeError) as exc:
        return [("result-corrupt", where, f"the job's result file is not JSON: {exc}")]
    return []


def _kinds(tree: Tree, parts: Parts) -> dict[str, str]:
    """Name -> kind of each entry of a directory (empty if it is not a real directory)."""
    out: dict[str, str] = {}
    try:
        with tree.dirs.open(parts) as fd:
            for name in _durable.listdir(fd):
                try:
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                except FileNotFoundError:
                    continue
                out[name] = _durable.kind_of(st.st_mode)
    except (FileNotFoundError, StoreError):
        return {}
    return out


def _attempts(tree: Tree, folder: Parts) -> list[Problem]:
    found: list[Problem] = []
    top = (*folder, _names.ATTEMPTS)
    for epoch, kind in _kinds(tree, top).items():
        where = path(top, epoch)
        if not (epoch.isdigit() and len(epoch) == 6) or kind != "directory":
            found.append(("foreign-file", where, f"a {kind} where an attempt's folder belongs"))
            continue
        for name, inner in _kinds(tree, (*top, epoch)).items():
            ok = (name == _names.OUTPUTS and inner == "directory") or (
                name in _ATTEMPT_FILES and inner == "file"
            )
            if not ok:
                found.append(("foreign-file", path((*top, epoch), name), f"a {inner} out of place"))
            elif name == _names.OUTPUTS:
                outputs = (*top, epoch, name)
                for output, kind in _kinds(tree, outputs).items():
                    if kind != "file" or not _names.NAME_RE.fullmatch(output):
                        why = f"a {kind} among the outputs: never listed or read"
                        found.append(("foreign-file", path(outputs, output), why))
    return found


def _result_files(segments: Segments) -> list[str]:
    """The result files the journal's completed records point at."""
    return [
        rel
        for _, seg in segments
        for r in seg.records
        if r.type is RecordType.COMPLETED and (rel := r.get_str("result_file")) is not None
    ]


@attrs.define
class Seen:
    queue: str
    where: Where
    parts: Parts
    name: str
    marker: Marker | None = None
    worker: str | None = None

    @property
    def path(self) -> str:
        return path(self.parts, self.name)


class JobChecks:
    """
    fsck's checks of job folders and their journals, for `fsck._Checker`: what
    it needs of the checker is declared here.
    """

    tree: Tree
    repair: bool
    horizon: float
    settle: float
    markers: dict[str, list[Seen]]
    keys: dict[str, str]
    #: steps staged by live workflow pushes: their folders are not garbage
    staged: set[str]

    def report(self, kind: str, where: str, message: str, repaired: bool = False) -> None:
        raise NotImplementedError  # pragma: no cover - _Checker's

    def entries(self, parts: Parts, *, dirs: bool | None = None) -> list[str]:
        raise NotImplementedError  # pragma: no cover - _Checker's

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
        segments = _read.segments(self.tree, job_id)
        spec = spec_in(segments)
        if spec is not None and isinstance(key := spec.get("unique_key"), str):
            self.keys[job_id] = key
        for kind, where, message in problems(self.tree, job_id, segments):
            self.report(kind, where, message)
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
            self.check_unpublished(job_id, segments)
            return
        final = [s for s in seen if s.where.is_final]
        if len(seen) == 1 and final and segments and not damaged and self.settled(final[0]):
            newest = segments[-1][1].records
            if not any(r.type in journal.TERMINAL for r in newest):
                where = final[0].where
                fixed = self.repair and self.record_terminal(job_id, where, segments[-1][0] + 1)
                message = f"{where.value}, but its newest journal segment has no record of it"
                self.report("no-terminal-record", job_id, message, fixed)

    def check_folder(self, job_id: str, seen: list[Seen]) -> None:
        """
        A marker whose job folder is gone: restored from the marker (a power cut
        lost the folder's name), or, if the marker does not hold the job's spec,
        quarantined once it has settled.
        """
        segment = self.inode(Tree.job_dir(job_id), _names.segment_name(0))
        if segment is not None:
            for s in seen:  # a format-2 marker is a hard link of segment 0 (an empty one: format 1)
                marker = self.inode(s.parts, s.name, nonempty=True)
                if marker is not None and marker != segment:
                    self.report(
                        "marker-content", s.path, "a marker that is not its job's segment 0"
                    )
            return
        if all(s.where is Where.CORRUPT for s in seen):
            return  # already quarantined: nothing more to do
        if len(seen) == 1 and _read.marker_segment(self.tree, seen[0].parts, seen[0].name):
            # The marker holds the spec: the folder can be made again, if its place is free.
            restored = self.repair and _read.restore_folder(
                self.tree, job_id, seen[0].parts, seen[0].name
            )
            self.report("no-job-folder", job_id, "its marker holds the spec", restored)
            return
        fixed = self.quarantine(job_id, seen, "its job folder is missing")
        self.report("no-job-folder", job_id, "a marker without its job's journal", fixed)

    def inode(self, parts: Parts, name: str, *, nonempty: bool = False) -> tuple[int, int] | None:
        """(device, inode) of a regular file (with `nonempty`: of a non-empty one), else None."""
        with self.tree.open_or_none(parts) as fd:
            if fd is None:
                return None
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except OSError:
                return None
        if not stat.S_ISREG(st.st_mode) or (nonempty and st.st_size == 0):
            return None
        return st.st_dev, st.st_ino

    def quarantine(self, job_id: str, seen: list[Seen], why: str) -> bool:
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

    def settled(self, seen: Seen) -> bool:
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

    def check_unpublished(self, job_id: str, segments: Segments) -> None:
        """
        A job folder without any marker: a push in progress, or one that died; or
        a published job whose marker is lost, which is never removed. Only a
        journal that holds nothing but its ``pushed`` record, whose marker's
        directories are sound, is an unpublished push.
        """
        if self.staging_alive(job_id):
            return
        age = time.time() - _ids.id_time_ms(job_id) / 1000
        if age < self.horizon:
            return  # may be a push in progress on another host
        folder = path(Tree.job_dir(job_id))
        records = [r for _, seg in segments for r in seg.records]
        named = records[0].get_str("marker") if records else None
        if len(records) > 1 or (records and (named is None or not self.sound(named))):
            self.report("lost-marker", folder, "a published job whose marker is gone: not removed")
            return
        removed = False
        if self.repair:
            self.tree.discard_job(job_id)
            removed = True
        self.report("unpublished", folder, f"never published ({age:.0f} s old)", removed)

    def sound(self, marker_path: str) -> bool:
        """Each directory on the way to a marker is a real one, or absent (nothing planted)."""
        parts = tuple(marker_path.split("/"))[:-1]
        for i in range(1, len(parts) + 1):
            try:
                with self.tree.dirs.open(parts[:i]):
                    pass
            except FileNotFoundError:
                return True
            except (StoreError, OSError):
                return False
        return True

    def staging_alive(self, job_id: str) -> bool:
        """True if a push (or retry) of the job may still be at work: its staging file in
        tmp/ is locked, or younger than the horizon; or tmp/ cannot be looked at; or
        it is a step of a live workflow push."""
        if job_id in self.staged:
            return True
        try:
            tmp_fd = self.tree.dirs.cached((_names.TMP,), create=False)
        except FileNotFoundError:
            return False
        except (StoreError, OSError):
            return True  # cannot tell: never remove what may be a push at work
        for name in _durable.listdir(tmp_fd):
            if f".{job_id}." not in name and not name.startswith(f"retry.{job_id}."):
                continue
            if name.startswith("dead."):
                continue
            if self.alive_in_tmp(tmp_fd, name):
                return True
        return False

    def alive_in_tmp(self, tmp_fd: int, name: str) -> bool:
        """
        A tmp/ entry belongs to a live process: it is locked, or younger than the
        horizon; an upload stage's folder lives as long as its lock file does.
        """
        owner = _uploads.folder_owner(name)
        if owner is not None and self.alive_in_tmp(tmp_fd, owner):
            return True
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
