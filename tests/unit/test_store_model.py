"""
A Hypothesis state machine: the store against a simple model.

Rules push (with priorities, schedules and unique keys), claim, complete, fail
(retryable or not), cancel, crash a worker (its process dies holding claims),
rescue, advance the clock and reopen the store. After every step, every job's
status and attempts on disk equal the model's, no unique key has two unfinished
jobs, and fsck finds nothing wrong.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile

import attrs
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)

from fsjobs import ErrorInfo, Job, JobStatus
from fsjobs._clock import to_ms
from fsjobs.fsck import fsck
from fsjobs.store import Claim, Ending, Outcome, Store
from fsjobs.testing import FakeClock

Q = "default"
WORKERS = ("w-a", "w-b")
FINAL = {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED}


@attrs.define
class ModelJob:
    status: JobStatus
    attempts: int
    max_attempts: int
    key: str | None
    ready_ms: int


class StoreMachine(RuleBasedStateMachine):
    jobs = Bundle("jobs")

    def __init__(self) -> None:
        super().__init__()
        self.root = tempfile.mkdtemp(prefix="fsjobs-model-")
        self.clock = FakeClock()
        self.store = self.open()
        self.model: dict[str, ModelJob] = {}
        self.locks: dict[str, tuple[int, int]] = {}
        self.claims: dict[str, list[Claim]] = {w: [] for w in WORKERS}
        self.owner: dict[str, str] = {}  # running job -> worker

    def open(self) -> Store:
        return Store(self.root, clock=self.clock, staleness=0, durable=False, unique_wait=0.2)

    def teardown(self) -> None:
        for worker in list(self.locks):
            self.stop_worker(worker)
        self.store.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def now_ms(self) -> int:
        return to_ms(self.clock.now())

    def stop_worker(self, worker: str) -> None:
        for claim in self.claims[worker]:
            self.store.close_claim(claim)
        self.claims[worker] = []
        lock, hb = self.locks.pop(worker)
        os.close(lock)
        os.close(hb)

    def unfinished_owner(self, key: str) -> str | None:
        for job_id, job in self.model.items():
            if job.key == key and job.status not in FINAL:
                return job_id
        return None

    # -- rules -----------------------------------------------------------------------

    @rule(
        target=jobs,
        priority=st.integers(-3, 3),
        delay=st.sampled_from([None, -5, 30, 600]),
        key=st.sampled_from([None, None, "k1", "k2"]),
        max_attempts=st.integers(1, 3),
    )
    def push(self, priority: int, delay: int | None, key: str | None, max_attempts: int) -> str:
        at = None if delay is None else self.clock.now() + dt.timedelta(seconds=delay)
        job = Job(
            func="tests.model.task",
            priority=priority,
            scheduled_at=at,
            unique_key=key,
            max_attempts=max_attempts,
        )
        owner = None if key is None else self.unfinished_owner(key)
        (job_id,) = self.store.push_many([(job, Q)])
        if owner is not None:
            assert job_id == owner, "a key with an unfinished job returns that job"
            return job_id
        assert job_id not in self.model
        waiting = at is not None and to_ms(at) > self.now_ms()
        ready = max(self.now_ms(), 0 if at is None else to_ms(at))
        status = JobStatus.SCHEDULED if waiting else JobStatus.PENDING
        self.model[job_id] = ModelJob(status, 0, max_attempts, key, ready)
        return job_id

    @rule(worker=st.sampled_from(WORKERS))
    def claim(self, worker: str) -> None:
        if worker not in self.locks:
            # A worker that starts under the id of a dead one rescues what that one left running.
            self.locks[worker] = self.store.register_worker(worker)
            for job_id in [j for j, w in self.owner.items() if w == worker]:
                self.model[job_id].status = JobStatus.PENDING
                del self.owner[job_id]
        self.store.promote(Q)
        ready = self.store.ready(Q, 1)
        due = [j for j in self.model.values() if j.status is JobStatus.PENDING]
        if not ready:
            assert not due, "a pending job is missing from ready()"
            return
        claim = self.store.claim(Q, ready[0], worker)
        assert claim is not None
        job = self.model[claim.job_id]
        assert job.status is JobStatus.PENDING
        if not claim.runnable:  # the last attempt was lost with a dead worker
            assert job.attempts == job.max_attempts
            self.store.finish(claim, Outcome(Ending.FAILED, error=ErrorInfo("WorkerLost", "")))
            job.status = JobStatus.FAILED
            return
        job.status, job.attempts = JobStatus.RUNNING, job.attempts + 1
        self.claims[worker].append(claim)
        self.owner[claim.job_id] = worker

    @precondition(lambda self: any(self.claims.values()))
    @rule(data=st.data(), outcome=st.sampled_from(["complete", "fail", "retry"]))
    def finish(self, data: st.DataObject, outcome: str) -> None:
        worker = data.draw(st.sampled_from([w for w in WORKERS if self.claims[w]]))
        claim = self.claims[worker].pop(data.draw(st.integers(0, len(self.claims[worker]) - 1)))
        job = self.model[claim.job_id]
        del self.owner[claim.job_id]
        if outcome == "complete":
            result = Outcome(Ending.COMPLETED, result={"n": job.attempts})
            job.status = JobStatus.COMPLETED
        elif outcome == "retry" and job.attempts < job.max_attempts:
            ready = self.now_ms() + 10_000
            result = Outcome(Ending.RETRY, error=ErrorInfo("E", "again"), retry_at_ms=ready)
            job.status, job.ready_ms = JobStatus.RETRYING, ready
        else:
            result = Outcome(Ending.FAILED, error=ErrorInfo("E", "no"))
            job.status = JobStatus.FAILED
        assert self.store.finish(claim, result) is True

    @rule(job_id=jobs)
    def cancel(self, job_id: str) -> None:
        job = self.model[job_id]
        status = self.store.cancel(job_id)
        if job.status in (JobStatus.PENDING, JobStatus.SCHEDULED, JobStatus.RETRYING):
            assert status is JobStatus.CANCELLED
            job.status = JobStatus.CANCELLED
        elif job.status is JobStatus.RUNNING:
            assert status is JobStatus.RUNNING  # a request; its owner acts on it
        else:
            assert status is job.status

    @precondition(lambda self: bool(self.locks))
    @rule(worker=st.sampled_from(WORKERS))
    def crash_worker(self, worker: str) -> None:
        """The worker's process dies: its claims stay on disk, its lock goes."""
        if worker in self.locks:
            self.stop_worker(worker)

    @rule()
    def rescue(self) -> None:
        orphans = {j for j, w in self.owner.items() if w not in self.locks}
        rescued = set(self.store.rescue(Q, "w-rescuer"))
        assert rescued == orphans, "exactly the jobs of dead workers are rescued"
        for job_id in rescued:
            self.model[job_id].status = JobStatus.PENDING
            del self.owner[job_id]

    @rule(seconds=st.sampled_from([1, 30, 700]))
    def advance_clock(self, seconds: int) -> None:
        self.clock.advance(seconds)
        now = self.now_ms()
        self.store.promote(Q)
        for job in self.model.values():
            if job.status in (JobStatus.SCHEDULED, JobStatus.RETRYING) and job.ready_ms <= now:
                job.status = JobStatus.PENDING

    @rule()
    def reopen(self) -> None:
        """A new process opens the same root: nothing is kept in memory that matters."""
        self.store.close()
        self.store = self.open()

    # -- invariants ---------------------------------------------------------------------

    @invariant()
    def disk_matches_model(self) -> None:
        for job_id, job in self.model.items():
            state = self.store.get(job_id)
            expected = job.status
            if expected is JobStatus.RETRYING and job.ready_ms <= self.now_ms():
                expected = JobStatus.RETRYING  # due, not promoted yet: still waiting on disk
            assert (state.status, state.attempts) == (expected, job.attempts), job_id
            assert state.attempts <= state.max_attempts

    @invariant()
    def one_unfinished_job_per_key(self) -> None:
        for key in ("k1", "k2"):
            unfinished = [
                j for j, m in self.model.items() if m.key == key and m.status not in FINAL
            ]
            assert len(unfinished) <= 1

    @invariant()
    def fsck_is_clean(self) -> None:
        report = fsck(self.store, horizon=1e9)
        orphans = {j for j, w in self.owner.items() if w not in self.locks}
        expected = {"dead-worker", "stale-claim"} if orphans else {"dead-worker"}
        assert {p.kind for p in report.problems} <= expected, report.problems
        stale = {p.path for p in report.problems if p.kind == "stale-claim"}
        assert stale == orphans


StoreMachine.TestCase.settings = settings(
    max_examples=int(os.environ.get("FSJOBS_MODEL_EXAMPLES", "25")),
    stateful_step_count=30,
    deadline=None,
)
TestStoreModel = StoreMachine.TestCase
