"""
T3: I/O errors at the k-th filesystem call (SQLite's ioerr loop), in this process.

For each store operation, error kind and mode, and for k = 1, 2, ... until the operation
runs past k calls without meeting the fault, a fresh root is set up and the `os`
functions the store uses are wrapped (only for this thread, only during the call) so
that call k raises ``OSError(ENOSPC | EIO | ESTALE | EDQUOT)``, or so that a write
writes only half of its buffer and returns that short count (then, for `short+ENOSPC`,
the next write fails with ENOSPC, as on a disk that just filled up). ``once`` faults
call k only; ``persistent`` faults every call from k on (a disk that went bad).

Then: the call either returned (and what it acknowledged must be in the store, whole)
or raised an fsjobs error or an OSError that carries an errno (anything else is an
*unclear error*); the invariants of `_fsck.check` hold as the fault left the tree,
and again after recovery (a rescue from a fresh worker id, then ``fsjobs fsck --repair``,
whose unrepaired findings count as failures), and after a drain every acknowledged job
has completed.
"""

from __future__ import annotations

import collections
import datetime as dt
import errno
import os
import pathlib
import shutil
import threading
import traceback
import typing
from collections.abc import Callable

import attrs
import pytest

import fsjobs
from fsjobs import ErrorInfo, JobStatus
from fsjobs._clock import to_ms
from fsjobs.store import Claim, Ending, Outcome, Store

from ._fsck import check, patch_targets, repair, report, walk

pytestmark = pytest.mark.slow

Q = "default"
FUNC = "tests.faults.test_io_errors.nothing"
WORKER = "faulty-worker"
WRITES = ("write", "pwrite")
MAX_K = 400


@attrs.frozen
class Kind:
    name: str
    errno: int | None  # None: a short write
    modes: tuple[str, ...]


KINDS = (
    Kind("ENOSPC", errno.ENOSPC, ("once", "persistent")),
    Kind("EIO", errno.EIO, ("once", "persistent")),
    Kind("ESTALE", errno.ESTALE, ("once", "persistent")),
    Kind("EDQUOT", errno.EDQUOT, ("once",)),
    Kind("short", None, ("once", "persistent")),
    Kind("short+ENOSPC", errno.ENOSPC, ("once",)),
)


class Inject:
    """Wrap `PATCHED` on the `os` module: the k-th call (of this thread) misbehaves."""

    def __init__(self, kind: Kind, mode: str, k: int) -> None:
        self.kind, self.mode, self.k = kind, mode, k
        self.thread = threading.get_ident()
        self.calls = 0
        self.fired = 0
        self.short_done = False
        #: descriptors this thread wrote through and has not closed yet
        self.writers: set[int] = set()
        self.targets = patch_targets()
        self.originals = {name: getattr(mod, name) for name, mod in self.targets.items()}

    def _eligible(self, name: str, args: tuple[typing.Any, ...]) -> bool:
        """Whether this call can fail this way on a real filesystem (only those count)."""
        if self.kind.errno is None:
            return name in WRITES
        if name == "close":  # a close reports a deferred write error: only after writes
            return args[0] in self.writers
        if self.kind.errno in (errno.ENOSPC, errno.EDQUOT):
            if name == "open":
                return bool(args[1] & os.O_CREAT)
            return name not in ("unlink", "rmdir", "ftruncate")  # these free space
        return True

    def _wrap(self, name: str, fn: Callable[..., typing.Any]) -> Callable[..., typing.Any]:
        def wrapper(*args: typing.Any, **kwargs: typing.Any) -> typing.Any:
            if threading.get_ident() != self.thread:
                return fn(*args, **kwargs)
            try:
                result = self._call(name, fn, args, kwargs)
            finally:
                if name == "close":
                    self.writers.discard(args[0])
            if name in WRITES:
                self.writers.add(args[0])
            return result

        return wrapper

    def _call(
        self, name: str, fn: Callable[..., typing.Any], args: typing.Any, kwargs: typing.Any
    ) -> typing.Any:
        if not self._eligible(name, args):
            return fn(*args, **kwargs)
        if self.kind.name == "short+ENOSPC":
            return self._short_then_full(name, fn, args, kwargs)
        self.calls += 1
        if self.calls < self.k or (self.calls > self.k and self.mode == "once"):
            return fn(*args, **kwargs)
        self.fired += 1
        if self.kind.errno is None:
            return self._short(fn, args, kwargs)
        err = OSError(self.kind.errno, f"{os.strerror(self.kind.errno)} (injected)")
        if name == "close":
            fn(*args, **kwargs)  # Linux releases the descriptor even when close fails
        raise err

    def _short_then_full(
        self, name: str, fn: Callable[..., typing.Any], args: typing.Any, kwargs: typing.Any
    ) -> typing.Any:
        if name not in WRITES:
            return fn(*args, **kwargs)
        self.calls += 1
        if self.calls == self.k:
            self.fired += 1
            self.short_done = True
            return self._short(fn, args, kwargs)
        if self.short_done and self.calls == self.k + 1:
            raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} (injected)")
        return fn(*args, **kwargs)

    @staticmethod
    def _short(fn: Callable[..., typing.Any], args: typing.Any, kwargs: typing.Any) -> int:
        fd, data, *rest = args
        view = memoryview(data)
        half = max(1, len(view) // 2) if len(view) else 0
        return int(fn(fd, view[:half], *rest, **kwargs))

    def __enter__(self) -> Inject:
        for name, fn in self.originals.items():
            setattr(self.targets[name], name, self._wrap(name, fn))
        return self

    def __exit__(self, *exc: object) -> None:
        for name, fn in self.originals.items():
            setattr(self.targets[name], name, fn)


# -- operations ------------------------------------------------------------------------


def _job(n: int, key: str | None = None) -> fsjobs.Job:
    return fsjobs.Job(func=FUNC, kwargs={"n": n}, unique_key=key, max_attempts=5)


def _retry_now() -> int:
    return to_ms(dt.datetime.now(dt.UTC)) - 1000


@attrs.define
class Run:
    """One faulted call: its setup's acked jobs, what it returned or raised."""

    acked: list[str] = attrs.Factory(list)
    target: str | None = None
    claim: Claim | None = None
    returned: object = None
    error: BaseException | None = None
    #: what a successful call acknowledged, as job id -> status it must show
    expect: dict[str, JobStatus] = attrs.Factory(dict)
    published: list[str] = attrs.Factory(list)
    #: several claims, for a group finish
    claims: list[Claim] = attrs.Factory(list)


class Op(typing.Protocol):
    def setup(self, store: Store) -> Run: ...
    def call(self, store: Store, run: Run) -> None: ...


class Push:
    def __init__(self, name: str, *keys: str | None) -> None:
        self.name, self.keys = name, keys

    def setup(self, store: Store) -> Run:
        return Run()

    def call(self, store: Store, run: Run) -> None:
        items = [(_job(n, key), Q) for n, key in enumerate(self.keys)]
        ids = store.push_many(items, run.published)
        run.returned = ids
        run.expect = dict.fromkeys(ids, JobStatus.PENDING)


def _pending_job(store: Store) -> str:
    (job_id,) = store.push_many([(_job(100), Q)])
    return job_id


class ClaimOp:
    name = "claim"

    def setup(self, store: Store) -> Run:
        job_id = _pending_job(store)
        return Run(acked=[job_id], target=job_id)

    def call(self, store: Store, run: Run) -> None:
        listing = store.ready(Q)
        if not listing:
            # ESTALE on a listing reads as "this directory is gone" (another host
            # removed an emptied bucket): the worker sees nothing this time, and
            # the job must still be pending for the next look.
            assert run.target is not None
            run.returned = "not listed"
            run.expect = {run.target: JobStatus.PENDING}
            return
        (path,) = listing
        run.claim = store.claim(Q, path, WORKER)
        run.returned = run.claim
        if run.claim is not None and run.target is not None:
            run.expect = {run.target: JobStatus.RUNNING}


class FinishOp:
    def __init__(self, status: JobStatus) -> None:
        self.status = status
        self.name = f"finish_{status.value}"

    def setup(self, store: Store) -> Run:
        job_id = _pending_job(store)
        (path,) = store.ready(Q)
        claim = store.claim(Q, path, WORKER)
        assert claim is not None
        return Run(acked=[job_id], target=job_id, claim=claim)

    def call(self, store: Store, run: Run) -> None:
        assert run.claim is not None and run.target is not None
        if self.status is JobStatus.RETRYING:
            outcome = Outcome(
                Ending(self.status.value),
                error=ErrorInfo("Boom", "planned", ""),
                retry_at_ms=_retry_now(),
            )
        else:
            outcome = Outcome(Ending(self.status.value), result={"n": 100})
        run.returned = won = store.finish(run.claim, outcome)
        if won:
            run.expect = {run.target: self.status}


class FinishManyOp:
    """Three claims finished as one group commit (two syncfs calls on a local disk)."""

    name = "finish_many_3"

    def setup(self, store: Store) -> Run:
        ids = [_pending_job(store) for _ in range(3)]
        claims = [store.claim(Q, path, WORKER) for path in store.ready(Q)]
        assert all(claims)
        return Run(acked=ids, claims=[c for c in claims if c])

    def call(self, store: Store, run: Run) -> None:
        items = [(c, Outcome(Ending.COMPLETED, result={"n": 100})) for c in run.claims]
        run.returned = results = store.finish_many(items)
        run.expect = {
            c.job_id: JobStatus.COMPLETED
            for c, won in zip(run.claims, results, strict=True)
            if won is True
        }


class RescueOp:
    name = "rescue"

    def setup(self, store: Store) -> Run:
        job_id = _pending_job(store)
        (path,) = store.ready(Q)
        claim = store.claim(Q, path, "dead-worker")  # never held its lock: dead
        assert claim is not None
        store.close_claim(claim)
        return Run(acked=[job_id], target=job_id)

    def call(self, store: Store, run: Run) -> None:
        run.returned = ids = store.rescue(Q, "rescuer")
        run.expect = dict.fromkeys(ids, JobStatus.PENDING)


class CallOp:
    """A one-job operation (cancel, hold, release_hold, retry) on a job set up for it."""

    def __init__(
        self,
        name: str,
        method: str,
        setup: Callable[[Store], Run],
        acked: JobStatus,
        final_ok: frozenset[JobStatus],
    ) -> None:
        self.name, self.method, self._setup = name, method, setup
        self.acked, self.final_ok = acked, final_ok

    def setup(self, store: Store) -> Run:
        return self._setup(store)

    def call(self, store: Store, run: Run) -> None:
        assert run.target is not None
        run.returned = getattr(store, self.method)(run.target)
        run.expect = {run.target: self.acked}


def _pending(store: Store) -> Run:
    job_id = _pending_job(store)
    return Run(acked=[job_id], target=job_id)


def _running_on_dead_worker(store: Store) -> Run:
    return RescueOp().setup(store)


def _held(store: Store) -> Run:
    job_id = _pending_job(store)
    assert store.hold(job_id) is JobStatus.HELD
    return Run(acked=[job_id], target=job_id)


def _failed(store: Store) -> Run:
    job_id = _pending_job(store)
    (path,) = store.ready(Q)
    claim = store.claim(Q, path, "setup-worker")
    assert claim is not None
    assert store.finish(claim, Outcome(Ending.FAILED, error=ErrorInfo("Boom", "", "")))
    return Run(acked=[job_id], target=job_id)


DONE = JobStatus.COMPLETED
OPS: tuple[Op, ...] = (
    Push("push", None),
    Push("push_unique", "the-key"),
    Push("push_many_3", None, None, None),
    ClaimOp(),
    FinishOp(JobStatus.COMPLETED),
    FinishOp(JobStatus.RETRYING),
    FinishManyOp(),
    RescueOp(),
    CallOp(
        "cancel_pending",
        "cancel",
        _pending,
        JobStatus.CANCELLED,
        frozenset({DONE, JobStatus.CANCELLED}),
    ),
    CallOp(
        "cancel_running",
        "cancel",
        _running_on_dead_worker,
        JobStatus.RUNNING,
        frozenset({DONE, JobStatus.CANCELLED}),
    ),
    CallOp("hold", "hold", _pending, JobStatus.HELD, frozenset({DONE, JobStatus.HELD})),
    CallOp(
        "release_hold", "release_hold", _held, JobStatus.PENDING, frozenset({DONE, JobStatus.HELD})
    ),
    CallOp("retry", "retry", _failed, JobStatus.PENDING, frozenset({DONE, JobStatus.FAILED})),
)


# -- checks ---------------------------------------------------------------------------


def _state(store: Store, job_id: str) -> fsjobs.JobState | None:
    try:
        return store.get(job_id)
    except Exception:
        return None


def _is_clear(exc: BaseException) -> bool:
    """An fsjobs error, or an OSError that says which errno it is and what failed."""
    if isinstance(exc, fsjobs.FsJobsError):
        return True
    return isinstance(exc, OSError) and exc.errno is not None and bool(str(exc))


def _drain(store: Store) -> None:
    """Claim and end every due job with the store alone, as a worker would (no task runs)."""
    for _ in range(50):
        store.promote(Q)
        paths = store.ready(Q)
        if not paths:
            return
        for path in paths:
            claim = store.claim(Q, path, "drainer")
            if claim is None:
                continue
            if claim.cancel_requested:
                store.finish(claim, Outcome(Ending.CANCELLED))
            elif claim.runnable:
                store.finish(claim, Outcome(Ending.COMPLETED, result=None))
            else:
                store.finish(claim, Outcome(Ending.FAILED, error=ErrorInfo("WorkerLost", "")))


@attrs.define
class Tally:
    points: int = 0
    errors: int = 0
    unclear: list[str] = attrs.Factory(list)
    failures: list[str] = attrs.Factory(list)
    lost_acked: int = 0
    #: how an injected ENOSPC/EDQUOT reached a pusher: exception type -> count
    full_as: collections.Counter[str] = attrs.Factory(collections.Counter)
    #: errors raised although the transition was published (the caller cannot tell)
    error_but_published: int = 0


def run_point(root: pathlib.Path, op: Op, kind: Kind, mode: str, k: int, tally: Tally) -> bool:
    """One faulted call and every check after it; False once the fault was not met."""
    where = f"{op.name} {kind.name} {mode} k={k}"
    root.mkdir()
    store = Store(root, staleness=0)
    try:
        run = op.setup(store)
        inject = Inject(kind, mode, k)
        try:
            with inject:
                op.call(store, run)
        except Exception as exc:
            run.error = exc
        if not inject.fired:
            if run.error is not None:
                tally.failures.append(f"{where}: failed with no fault: {run.error!r}")
            return False
        tally.points += 1
        problems: list[str] = []
        acked = [*run.acked, *run.published]
        if run.error is not None:
            tally.errors += 1
            if not _is_clear(run.error):
                tb = "".join(traceback.format_exception(run.error)[-3:])
                tally.unclear.append(f"{where}: {run.error!r}\n{tb}")
            if kind.errno in (errno.ENOSPC, errno.EDQUOT) and isinstance(op, Push):
                tally.full_as[type(run.error).__name__] += 1
            if isinstance(op, Push):
                unacked = set(walk(root).markers) - set(run.published)
                tally.error_but_published += len(unacked)
            if mode == "once" and isinstance(op, ClaimOp | FinishOp) and run.target is not None:
                state = _state(store, run.target)
                if state is not None and state.status is JobStatus.RUNNING:
                    problems.append(f"the job stays running after a failed {op.name}")
                if state is not None and state.status.is_final:
                    tally.error_but_published += 1
        else:
            if isinstance(op, ClaimOp) and run.returned is None:
                problems.append("claim returned None with no rival: the job was lost to it")
            if isinstance(op, FinishOp) and run.returned is not True:
                problems.append(f"finish returned {run.returned} with no rival")
            acked += list(run.expect)
        for job_id, want in run.expect.items():
            state = _state(store, job_id)
            if state is None or state.status is not want:
                problems.append(f"acknowledged {want.value} but the job is {state}")
        if (  # the claim succeeded: the worker runs the job and finishes it
            isinstance(op, ClaimOp)
            and run.claim is not None
            and not run.claim.closed
            and not store.finish(run.claim, Outcome(Ending.COMPLETED, result=None))
        ):
            problems.append("finishing the faulted claim found it fenced")
        problems += [f"after the fault: {p}" for p in check(root, acked)]
        store.rescue(Q, "recovery")
        problems += [f"after rescue: {p}" for p in repair(root)]
        problems += [f"after rescue: {p}" for p in check(root, acked, after_recovery=True)]
        _drain(store)
        problems += [f"after the drain: {p}" for p in check(root, acked, after_recovery=True)]
        for job_id in dict.fromkeys(acked):
            state = _state(store, job_id)
            ok = {DONE}
            if isinstance(op, CallOp) and job_id == run.target:
                final_acked = {JobStatus.CANCELLED, JobStatus.HELD} & {op.acked}
                ok = set(op.final_ok if run.error else final_acked or {DONE})
                if op.name == "cancel_running" and not run.error:
                    ok = {JobStatus.CANCELLED}
            if state is None or state.status not in ok:
                tally.lost_acked += 1
                problems.append(f"acknowledged job {job_id} did not complete: {state}")
        tally.failures += [f"{where}: {p}" for p in problems]
        return True
    finally:
        store.close()


def test_io_errors_at_every_filesystem_call(scratch: pathlib.Path) -> None:
    tally = Tally()
    n = 0
    for kind in KINDS:
        for mode in kind.modes:
            for op in OPS:
                for k in range(1, MAX_K + 1):
                    n += 1
                    root = scratch / f"r{n}"
                    failures = len(tally.failures)
                    met = run_point(root, op, kind, mode, k, tally)
                    if len(tally.failures) == failures:
                        shutil.rmtree(root)  # keep only the roots that show a failure
                    if not met:
                        break
                else:
                    tally.failures.append(f"{op.name} {kind.name} {mode}: still faulting at k={k}")
    report(
        f"FIGURES T3 error_kinds={len(KINDS)} points={tally.points} "
        f"unclear_errors={len(tally.unclear)} invariant_failures={len(tally.failures)} "
        f"lost_acked={tally.lost_acked}"
    )
    report(
        f"NOTES T3 errors_raised={tally.errors} error_but_published={tally.error_but_published} "
        "full_push_errors=" + ",".join(f"{k}:{v}" for k, v in sorted(tally.full_as.items()))
    )
    assert not tally.unclear, "\n".join(tally.unclear[:20])
    assert not tally.failures, "\n".join(tally.failures[:40])
    assert tally.lost_acked == 0
