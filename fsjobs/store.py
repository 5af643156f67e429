"""
The store: the only code that touches files, as one front over its steps.

Each public method is one synchronous, durable step of the protocol in
``docs/format.md``; the async API runs each of them in a thread, one hop per
operation. The steps live in their own modules, each small enough to read at
once:

======================  =========================================================
`_tree`                 paths, the safe walk, the format file, shared moves
`_transitions`          where a marker goes, decided without I/O
`_push`, `_unique`      push (one commit point), unique keys
`_uploads`              uploads written before their push, renamed into the job
`_claim`, `_finish`     the head of a queue, claim, progress, outcomes
`_liveness`             worker locks and heartbeats, rescue
`_read`                 state and history of a job, listings and counts
`_logs`                 each attempt's log: opened for its task, read back
`_operate`              cancel, hold, release, retry, prune
`_depends`, `_deptree`  dependencies: blocked jobs released (or cancelled) once
`_workflows`            workflows: a graph of jobs pushed all or nothing
`_flow`, `_slots`       pause, caps, claims within them (slots, rate tokens)
`_ticks`                periodic schedules' files and their ticks' keys
======================  =========================================================

The rules that make it safe with many processes and many hosts: state lives in
names (a transition is one rename or one ``O_EXCL`` create that exactly one
actor wins, never a rename onto an existing name); each change of hands bumps
the epoch in the marker's name, and only the winner of that rename writes the
journal segment of that epoch; everything acknowledged is fsynced, file then
directory.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import pathlib
import secrets
import time
from collections.abc import Iterable, Iterator, Sequence

from . import (
    _claim,
    _depends,
    _deptree,
    _durable,
    _finish,
    _flow,
    _format,
    _inotify,
    _listing,
    _liveness,
    _logs,
    _names,
    _operate,
    _push,
    _read,
    _slots,
    _ticks,
    _uploads,
    _workflows,
)
from ._claim import Claim
from ._clock import SYSTEM_CLOCK, Clock
from ._finish import Outcome
from ._flow import FlowState
from ._json import JSON
from ._names import Marker
from ._queue_settings import QueueSettings, Rate, Unset
from ._schedule import Schedule
from ._slots import Limited, Slot
from ._transitions import Ending, Where
from ._tree import Tree
from ._uploads import UploadStage
from .model import Job
from .states import Event, JobPage, JobState, JobStatus, WorkflowState
from .workflow import Workflow

__all__ = ["Claim", "Ending", "FlowState", "Limited", "Outcome", "Slot", "Store", "UploadStage"]

logger = logging.getLogger("fsjobs.store")


class Store:
    """One root directory: every operation on it, each a synchronous durable step."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        clock: Clock = SYSTEM_CLOCK,
        staleness: float | None = None,
        reserve_bytes: int = 64 * 1024 * 1024,
        unique_wait: float = 3.0,
        durable: bool = True,
    ) -> None:
        """No I/O here: the root is opened (and, for a write, created) by the first operation."""
        self.tree = Tree(
            root,
            clock=clock,
            staleness=staleness,
            reserve_bytes=reserve_bytes,
            unique_wait=unique_wait,
            durable=durable,
        )
        self.root = self.tree.root
        self.clock = clock
        self._leases = _liveness.Leases()
        self._looks = _flow.Looks()
        self._slot_watch = _slots.SlotWatch()

    def open(self) -> None:
        """Create the root and its format file now (they are otherwise made by the first write)."""
        self.tree.for_writing()

    def close(self) -> None:
        self.tree.close()

    @property
    def staleness(self) -> float:
        return self.tree.staleness

    @property
    def durable(self) -> bool:
        return self.tree.durable

    @property
    def reserve_bytes(self) -> int:
        return self.tree.reserve_bytes

    @property
    def writable(self) -> bool:
        """False while the root uses a feature this fsjobs does not know."""
        return self.tree.writable

    def refresh_format(self) -> _format.RootFormat | None:
        """Re-read ``fsjobs.json`` (workers do at every heartbeat); None if there is no root."""
        return self.tree.refresh_format()

    def add_feature(self, name: str) -> None:
        """Record in ``fsjobs.json`` that the root uses a feature (before its first file)."""
        self.tree.add_feature(name)

    # -- push --------------------------------------------------------------------------

    def push_many(
        self,
        items: Sequence[tuple[Job, str]],
        published: list[str] | None = None,
        stages: Sequence[UploadStage | None] = (),
    ) -> list[str]:
        """Push (job, queue) pairs durably; see `_push.push_many`."""
        return _push.push_many(self.tree, items, published, stages)

    def stage_uploads(self) -> UploadStage:
        """A locked folder in tmp/ to write uploads into before their push (see `_uploads`)."""
        return _uploads.stage(self.tree)

    def create_upload(self, stage: UploadStage, name: str) -> int:
        """A new upload file in `stage`: a write-only descriptor that the caller closes."""
        return _uploads.create(self.tree, stage, name)

    def discard_uploads(self, stage: UploadStage) -> None:
        """End a stage (after its push, or instead of it): its leftovers go, its lock drops."""
        _uploads.discard(self.tree, stage)

    def push_workflow(self, wf: Workflow, queue: str) -> str:
        """Push every step of `wf` (to `queue` unless a step says otherwise), or none."""
        return _workflows.push(self.tree, wf, queue)

    def check_space(self) -> None:
        self.tree.for_writing()
        self.tree.check_space()

    # -- claim, run, finish -------------------------------------------------------------

    def promote(self, queue: str) -> int:
        return _claim.promote(self.tree, queue)

    def ready(self, queue: str, limit: int = 1000) -> list[str]:
        return _claim.ready(self.tree, queue, limit)

    def promote_and_list(self, queue: str, limit: int) -> list[str]:
        return _claim.promote_and_list(self.tree, queue, limit)

    def claim(self, queue: str, name_path: str, worker: str) -> Claim | None:
        return _claim.claim(self.tree, queue, name_path, worker)

    def claim_many(
        self, queue: str, paths: Sequence[str], worker: str, want: int
    ) -> tuple[list[Claim], int, Exception | None]:
        return _claim.claim_many(self.tree, queue, paths, worker, want)

    def close_claim(self, claim: Claim) -> None:
        """Close a claim's descriptors without publishing anything (a fenced job)."""
        _claim.close(claim)

    def progress(self, claim: Claim, percent: float | None, message: str | None) -> None:
        _claim.progress(self.tree, claim, percent, message)

    def upload_paths(self, claim: Claim) -> dict[str, pathlib.Path]:
        return _claim.upload_paths(self.tree, claim)

    def read_upload(self, claim: Claim, name: str) -> bytes:
        return _claim.read_upload(self.tree, claim, name)

    def output_dir(self, claim: Claim) -> pathlib.Path:
        return _claim.output_dir(self.tree, claim)

    def open_log(self, claim: Claim) -> int:
        """A descriptor of the claimed attempt's log, for appending; the caller closes it."""
        return _logs.open_for_attempt(self.tree, claim)

    def finish(self, claim: Claim, outcome: Outcome) -> bool:
        return _finish.finish(self.tree, claim, outcome)

    def finish_many(self, items: Sequence[tuple[Claim, Outcome]]) -> list[bool | Exception]:
        return _finish.finish_many(self.tree, items)

    # -- liveness ---------------------------------------------------------------------------

    def register_worker(self, worker: str) -> tuple[int, int]:
        return _liveness.register(self.tree, worker)

    def unregister_worker(self, worker: str, lock_fd: int, hb_fd: int) -> None:
        _liveness.unregister(self.tree, worker, lock_fd, hb_fd)

    @staticmethod
    def beat(hb_fd: int, counter: int) -> None:
        _liveness.beat(hb_fd, counter)

    def read_heartbeat(self, worker: str) -> int | None:
        return _liveness.read_heartbeat(self.tree, worker)

    def rescue(self, queue: str, me: str, lease: float | None = None) -> list[str]:
        return _liveness.rescue(self.tree, self._leases, queue, me, lease)

    def worker_alive(self, worker: str) -> bool | None:
        return _liveness.alive(self.tree, worker)

    def workers_alive(self) -> int:
        return _liveness.workers_alive(self.tree) if self.tree.for_reading() else 0

    def running(self, queue: str) -> list[tuple[Marker, str]]:
        return self.tree.running(queue) if self.tree.for_reading() else []

    def sweep(self, queues: Iterable[str]) -> int:
        """
        Take over the dependency checks and workflow pushes whose actor died (a
        worker does this every rescue interval); free when the root uses neither.
        """
        fmt = self.tree.format if self.tree.for_reading() else None
        if fmt is not None and not {"depends_on", "workflows"} <= fmt.names:
            fmt = self.tree.refresh_format()  # a process started before their first use
        if fmt is None or not self.tree.writable:
            return 0
        done = 0
        try:  # upkeep: an error here must not stop a worker; the next sweep tries again
            if "depends_on" in fmt.names:
                done += sum(_depends.sweep(self.tree, q) for q in queues)
            if "workflows" in fmt.names:
                done += len(_workflows.sweep(self.tree))
        except Exception:
            logger.exception("sweeping dependency checks and workflow pushes failed")
        return done

    def owned(self, queue: str, me: str) -> set[str]:
        return _operate.owned(self.tree, queue, me)

    def cancel_requested(self, job_ids: Iterable[str]) -> set[str]:
        return _operate.cancel_requested(self.tree, job_ids)

    # -- reading ------------------------------------------------------------------------------

    def get(self, job_id: str) -> JobState:
        return _read.get(self.tree, job_id)

    def get_workflow(self, wf_id: str) -> WorkflowState:
        return _workflows.get(self.tree, wf_id)

    def list_workflows(self, limit: int = 100) -> list[WorkflowState]:
        return _workflows.list_workflows(self.tree, limit)

    def dependents(self, job_id: str) -> list[str]:
        """The ids of the jobs pushed depending on `job_id`."""
        return _deptree.dependents(self.tree, job_id) if self.tree.for_reading() else []

    def parent_results(self, job_id: str) -> dict[str, JSON]:
        """What `Context.parents` holds for the job (see `_depends.parent_results`)."""
        return _depends.parent_results(self.tree, job_id)

    def history(self, job_id: str) -> list[Event]:
        return _read.history(self.tree, job_id)

    def read_output(self, job_id: str, name: str) -> bytes:
        return _read.read_output(self.tree, job_id, name)

    def open_output(self, job_id: str, name: str) -> int:
        """A read-only descriptor of an output file, for streaming; the caller closes it."""
        return _read.open_output(self.tree, job_id, name)

    def logs(self, job_id: str, attempt: int | None = None) -> str:
        """The log of one attempt (1-based; None: the newest), every epoch that ran it joined."""
        return _logs.read(self.tree, job_id, attempt)

    def log_epochs(self, job_id: str) -> list[tuple[int, int]]:
        """(epoch, attempt number) of each epoch that ran the job, oldest first."""
        return _logs.attempt_epochs(self.tree, job_id)

    def open_log_reader(self, job_id: str, epoch: int) -> int | None:
        """A read-only descriptor of one epoch's log, for streaming; None if it has none."""
        return _logs.open_epoch_log(self.tree, job_id, epoch)

    def queues(self) -> list[str]:
        return self.tree.queues() if self.tree.for_reading() else []

    def job_ids(self, queue: str, where: Where | str) -> Iterator[str]:
        """Ids in one state directory, lazily (final ones newest first, by day then id)."""
        if not self.tree.for_reading():
            return iter(())
        return _listing.job_ids(self.tree, queue, Where(where))

    def list_jobs(
        self,
        queues: list[str] | None,
        status: JobStatus | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> JobPage:
        """A page of jobs of `queues` (None: every queue), newest first (`_listing.list_jobs`)."""
        if not self.tree.for_reading():
            return JobPage([], None)
        names = self.tree.queues() if queues is None else queues
        return _listing.list_jobs(self.tree, names, status, limit, cursor)

    def counts(self, queue: str) -> dict[JobStatus, int]:
        if not self.tree.for_reading():
            return dict.fromkeys(JobStatus, 0)
        return _listing.counts(self.tree, queue)

    def oldest_pending_ms(self, queue: str) -> int | None:
        return _listing.oldest_pending_ms(self.tree, queue) if self.tree.for_reading() else None

    def next_due_ms(self, queue: str) -> int | None:
        return _listing.next_due_ms(self.tree, queue) if self.tree.for_reading() else None

    # -- operator actions ----------------------------------------------------------------------

    def cancel(self, job_id: str) -> JobStatus:
        return _operate.cancel(self.tree, job_id)

    def hold(self, job_id: str) -> JobStatus:
        return _operate.hold(self.tree, job_id)

    def release_hold(self, job_id: str) -> JobStatus | None:
        return _operate.release_hold(self.tree, job_id)

    def retry(self, job_id: str, more_attempts: int = 1) -> None:
        _operate.retry(self.tree, job_id, more_attempts)

    def prune(self, queue: str, cutoff: dt.datetime, statuses: Iterable[JobStatus]) -> int:
        return _operate.prune(self.tree, queue, cutoff, statuses)

    # -- flow control: pause, caps, slots, rate tokens ----------------------------------------

    def pause(self, queue: str) -> bool:
        """Pause `queue` (workers stop claiming from it); True if this call paused it."""
        return _flow.pause(self.tree, self._looks, queue)

    def resume(self, queue: str) -> bool:
        """Resume `queue`; True if this call resumed it."""
        return _flow.resume(self.tree, self._looks, queue)

    def configure(
        self,
        queue: str,
        concurrency: int | Unset | None,
        rate: str | Rate | Unset | None,
    ) -> QueueSettings:
        """Change the given caps of `queue` (None removes one); returns all of them."""
        return _flow.configure(self.tree, self._looks, queue, concurrency, rate)

    def flow(self, queue: str, max_age: float = _flow.LOOK_INTERVAL) -> FlowState:
        """The queue's pause and caps, looked at afresh at most every `max_age` seconds."""
        return _flow.look(self.tree, self._looks, queue, max_age)

    def claim_limited(
        self, queue: str, paths: Sequence[str], worker: str, want: int, settings: QueueSettings
    ) -> Limited:
        """`claim_many` within a queue's caps: a slot and a rate token before each claim."""
        return _slots.claim_limited(self.tree, self._looks, queue, paths, worker, want, settings)

    def free_slot(self, slot: Slot) -> bool:
        return _slots.free_slot(self.tree, slot)

    def slots_held_by(self, queue: str, worker: str) -> list[Slot]:
        return _slots.held_by(self.tree, queue, worker) if self.tree.for_reading() else []

    def rescue_slots(self, queue: str, me: str, lease: float | None = None) -> list[str]:
        """Free the slots of dead or silent workers, and those left without an owner."""
        return _slots.rescue_slots(self.tree, self._slot_watch, self._leases, queue, me, lease)

    # -- periodic schedules ---------------------------------------------------------------------

    def write_schedule(self, name: str, body: dict[str, JSON]) -> None:
        _ticks.write_schedule(self.tree, name, body)

    def schedules(self) -> list[tuple[str, dict[str, JSON] | str]]:
        return _ticks.read_schedules(self.tree)

    def key_taken(self, key: str) -> bool:
        return self.tree.for_reading() and _ticks.key_taken(self.tree, key)

    def last_tick(self, name: str, schedule: Schedule, now: dt.datetime) -> dt.datetime | None:
        return _ticks.last_tick(self.tree, name, schedule, now)

    def prune_tick_keys(self, queues: Iterable[str], cutoff: dt.datetime) -> int:
        return _ticks.prune_keys(self.tree, queues, cutoff)

    # -- wake-ups --------------------------------------------------------------------------------

    def ring(self, queue: str, where: Where = Where.PENDING) -> None:
        self.tree.ring(queue, where)

    def watch(self, queues: Iterable[str]) -> _inotify.Watcher | None:
        return self.tree.watch(queues)

    # -- probes (fsjobs doctor) ---------------------------------------------------------------

    def free_bytes(self) -> int:
        self.tree.for_writing()
        st = os.statvfs(self.tree.dirs.root_fd)
        return st.f_bavail * st.f_frsize

    def probe_locks(self) -> bool:
        """
        Whether OFD locks exclude: a lock held through one open file description
        must keep a second one out. Rescue and unique keys rely on it.
        """
        self.tree.for_writing()
        tmp = self.tree.dirs.cached((_names.TMP,))
        name = f"probe-{secrets.token_hex(8)}.lock"
        first = os.open(name, _durable.O_NEW_RW, _durable.FILE_MODE, dir_fd=tmp)
        try:
            second = os.open(name, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=tmp)
            try:
                return _durable.try_lock(first) and not _durable.try_lock(second)
            finally:
                os.close(second)
        finally:
            os.close(first)
            _durable.unlink_quiet(tmp, name)

    def probe_clock_skew(self) -> float:
        """
        Seconds by which the filesystem's clock (a new file's mtime, set by the
        NFS server) is ahead of this host's; 0 when it falls inside our own window.
        """
        self.tree.for_writing()
        tmp = self.tree.dirs.cached((_names.TMP,))
        name = f"probe-{secrets.token_hex(8)}.clock"
        before = time.time()
        fd = os.open(name, _durable.O_NEW, _durable.FILE_MODE, dir_fd=tmp)
        try:
            os.fsync(fd)
            mtime = os.fstat(fd).st_mtime
        finally:
            os.close(fd)
            _durable.unlink_quiet(tmp, name)
        after = time.time()
        # The kernel stamps files with a coarse clock, up to a tick behind time.time().
        if before - 0.02 <= mtime <= after:
            return 0.0
        return mtime - (before + after) / 2
