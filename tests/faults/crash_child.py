"""
The child side of the crash-point test (T2)::

    python -m tests.faults.crash_child

A fork server: it imports fsjobs once, then reads one JSON command per line on stdin,
forks a child per command and answers ``{"rc": <exit status>}`` on stdout when that
child has exited. Forking from this single-threaded process costs milliseconds, where
starting a fresh interpreter per crash point would cost a third of a second.

A child opens the store, does the command's unarmed setup, then patches the `os`
functions the store calls (`PATCHED`; fsjobs modules look them up on the shared `os`
module at each call) so that the k-th call exits the process with status 99 (`CRASHED`)
*before* doing anything, as a SIGKILL would. It then runs one store operation. If the
operation returns, the child disarms the patch, writes the ack file (JSON: what the
API call returned, and how many calls it made) and exits 0. An exception is written
to ``<ack>.err`` and the child exits 3.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import select
import signal
import sys
import traceback
import typing

from fsjobs import ErrorInfo, Job, JobStatus, Workflow, _slots
from fsjobs._clock import to_ms
from fsjobs._migrate import migrate
from fsjobs._queue_settings import UNSET, QueueSettings, parse_rate
from fsjobs.store import Ending, Outcome, Store

from ._fsck import patch_targets

CRASHED = 99
FAILED = 3
HUNG = -signal.SIGKILL
#: The functions that are wrapped: every call that can change the tree or its fds.
QUEUE = "default"
NOOP = "tests.faults.crash_child.noop"
#: A child that has not exited after this long is killed and reported as hung.
CHILD_TIMEOUT = 30.0


async def noop(n: int = 0) -> int:
    """The task of every job in the crash tests: the parent drains them with a Worker."""
    return n


class CrashAt:
    """Patch `PATCHED` on the `os` module so that call number `k` exits the process."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.calls = 0
        self.targets = patch_targets()
        self.originals = {name: getattr(mod, name) for name, mod in self.targets.items()}

    def _wrap(self, fn: typing.Callable[..., typing.Any]) -> typing.Callable[..., typing.Any]:
        def wrapper(*args: typing.Any, **kwargs: typing.Any) -> typing.Any:
            self.calls += 1
            if self.calls == self.k:
                os._exit(CRASHED)
            return fn(*args, **kwargs)

        return wrapper

    def __enter__(self) -> CrashAt:
        for name, fn in self.originals.items():
            setattr(self.targets[name], name, self._wrap(fn))
        return self

    def __exit__(self, *exc: object) -> None:
        for name, fn in self.originals.items():
            setattr(self.targets[name], name, fn)


def job_of(spec: dict[str, typing.Any], target: str | None = None) -> Job:
    """A noop job; with ``"after_target"``, one that depends on the scenario's target job."""
    return Job(
        func=NOOP,
        kwargs={"n": spec["n"]},
        unique_key=spec.get("unique_key"),
        max_attempts=spec.get("max_attempts", 3),
        depends_on=[target] if spec.get("after_target") and target else [],
    )


def diamond() -> Workflow:
    """The workflow of the ``push_workflow`` operation: top -> left, right -> bottom."""
    return (
        Workflow("diamond")
        .add("top", job_of({"n": 1}))
        .add("left", job_of({"n": 2}), after=["top"])
        .add("right", job_of({"n": 3}), after=["top"])
        .add("bottom", job_of({"n": 4}), after=["left", "right"])
    )


def operation(store: Store, cmd: dict[str, typing.Any]) -> typing.Callable[[], dict[str, object]]:
    """Do the command's setup (not counted); return the operation to run armed."""
    op = cmd["op"]
    if op == "push":
        items = [(job_of(spec, cmd.get("target")), QUEUE) for spec in cmd["jobs"]]

        def push() -> dict[str, object]:
            published: list[str] = []
            ids = store.push_many(items, published)
            return {"ids": ids, "published": published}

        return push
    if op == "push_workflow":

        def push_workflow() -> dict[str, object]:
            return {"wf": store.push_workflow(diamond(), QUEUE)}

        return push_workflow
    if op == "claim_finish":
        worker = cmd["worker"]
        store.register_worker(worker)  # held until the process dies
        status = JobStatus(cmd["status"])

        def claim_finish() -> dict[str, object]:
            names = store.ready(QUEUE)
            claim = store.claim(QUEUE, names[0], worker)
            if claim is None:
                return {"claimed": None}
            if status is JobStatus.RETRYING:
                outcome = Outcome(
                    Ending.RETRY,
                    error=ErrorInfo("Boom", "planned failure", ""),
                    retry_at_ms=to_ms(dt.datetime.now(dt.UTC)),
                )
            else:
                outcome = Outcome(Ending(status.value), result=cmd["result"])
            won = store.finish(claim, outcome)
            return {"claimed": claim.job_id, "won": won}

        return claim_finish
    if op == "claim_finish_many":  # every pending job claimed, then finished as one batch
        worker = cmd["worker"]
        store.register_worker(worker)

        def claim_finish_many() -> dict[str, object]:
            claims = [store.claim(QUEUE, name, worker) for name in store.ready(QUEUE)]
            won = store.finish_many(
                [(c, Outcome(Ending.COMPLETED, result=cmd["result"])) for c in claims if c]
            )
            return {"claimed": sorted(c.job_id for c in claims if c), "won": won}

        return claim_finish_many
    if op == "call":  # a one-job operation of the store: cancel, hold, release_hold, retry
        method = getattr(store, cmd["method"])

        def call() -> dict[str, object]:
            return {"returned": repr(method(cmd["target"]))}

        return call
    if op == "sweep":

        def sweep() -> dict[str, object]:
            return {"settled": store.sweep([QUEUE])}

        return sweep
    if op == "rescue":

        def rescue() -> dict[str, object]:
            return {"ids": store.rescue(QUEUE, cmd["worker"])}

        return rescue
    if op in FLOW_OPS:
        return flow_operation(store, cmd)
    if op == "migrate":

        def run_migrate() -> dict[str, object]:
            done = migrate(cmd["root"])
            return {"converted": done.converted, "already": done.already}

        return run_migrate
    raise ValueError(f"unknown operation {op!r}")


FLOW_OPS = ("configure", "pause", "resume", "slot_take", "slot_free", "claim_limited")


def flow_operation(
    store: Store, cmd: dict[str, typing.Any]
) -> typing.Callable[[], dict[str, object]]:
    """The flow-control operations (`tests.faults.test_flow_crash_points`)."""
    op = cmd["op"]
    if op == "configure":
        concurrency = cmd.get("concurrency", "unset")
        rate = cmd.get("rate", "unset")

        def configure() -> dict[str, object]:
            settings = store.configure(
                QUEUE,
                UNSET if concurrency == "unset" else concurrency,
                UNSET if rate == "unset" else rate,
            )
            return {"settings": settings.to_json().decode()}

        return configure
    if op in ("pause", "resume"):
        method = getattr(store, op)
        return lambda: {"changed": method(QUEUE)}
    worker = cmd["worker"]
    store.register_worker(worker)  # held until the process dies: then the worker is dead
    if op == "slot_take":

        def take() -> dict[str, object]:
            slot = _slots.take_slot(store.tree, QUEUE, 2, worker)
            return {"slot": None if slot is None else slot.k}

        return take
    if op == "slot_free":
        slot = _slots.take_slot(store.tree, QUEUE, 2, worker)
        assert slot is not None
        return lambda: {"freed": store.free_slot(slot)}
    settings = QueueSettings(concurrency=1, rate=parse_rate("100/s"))

    def claim_limited() -> dict[str, object]:
        got = store.claim_limited(QUEUE, store.ready(QUEUE), worker, 1, settings)
        return {"claimed": [c.job_id for c in got.claims], "slots": len(got.slots)}

    return claim_limited


def child(cmd: dict[str, typing.Any]) -> typing.NoReturn:
    ack = cmd["ack"]
    try:
        store = Store(cmd["root"], staleness=0)
        run = operation(store, cmd)
        with CrashAt(cmd["k"]) as crash:
            answer = run()
        answer["calls"] = crash.calls
        tmp = f"{ack}.tmp"
        with open(tmp, "w") as f:
            json.dump(answer, f)
        os.rename(tmp, ack)
    except BaseException:
        with open(f"{ack}.err", "w") as f:
            f.write(traceback.format_exc())
        os._exit(FAILED)
    os._exit(0)


def serve_one(cmd: dict[str, typing.Any]) -> int:
    pid = os.fork()
    if pid == 0:
        child(cmd)
    pidfd = os.pidfd_open(pid)
    try:
        exited, _, _ = select.select([pidfd], [], [], CHILD_TIMEOUT)
        if not exited:
            os.kill(pid, signal.SIGKILL)
    finally:
        os.close(pidfd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) if exited else HUNG


def main() -> None:
    while True:
        # Wake up now and then so that an orphaned server notices its parent is gone.
        ready, _, _ = select.select([sys.stdin], [], [], 5.0)
        if not ready:
            if os.getppid() == 1:
                return
            continue
        line = sys.stdin.readline()
        if not line:
            return
        rc = serve_one(json.loads(line))
        sys.stdout.write(json.dumps({"rc": rc}) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
