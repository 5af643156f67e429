"""
T2 for flow control: a crash at the k-th filesystem call of configure, pause, resume,
a slot's take and free, and a claim within caps (``tests.faults.crash_child``, the same
fork server and crash injection as ``test_crash_points``).

After each crash, the tree as the crash left it must hold either the old state or the
new one, never half of one: settings readable and equal to the old or the new caps (the
new ones if the call returned), the pause there or not. Then recovery, as a live worker
and ``fsck --repair`` would do it (rescue of the dead child's jobs and slots, a lease
later on the rescuer's clock for a slot left without owner), must leave no slot taken
and fsck clean, and a worker must drain the queue through its cap.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import pathlib
import shutil
import typing
from collections.abc import Iterator

import attrs
import pytest

import fsjobs
from fsjobs.store import Store
from fsjobs.testing import drain

from . import crash_child
from ._fsck import check, repair, report
from .crash_child import CRASHED, NOOP, QUEUE
from .test_crash_points import MAX_K, Zygote

pytestmark = pytest.mark.slow

LEASE = 30.0
OLD = {"concurrency": 3}


@pytest.fixture
def fork_server(tmp_path: pathlib.Path, subprocess_env: dict[str, str]) -> Iterator[Zygote]:
    z = Zygote(tmp_path, subprocess_env)
    try:
        yield z
    finally:
        z.close()


class ManualClock:
    def __init__(self) -> None:
        self.mono = 0.0

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    def monotonic(self) -> float:
        return self.mono


@attrs.frozen
class Scenario:
    name: str
    cmd: dict[str, typing.Any]
    #: the settings before (as `settings.json` holds them) and after the call
    before: dict[str, typing.Any] = attrs.Factory(dict)
    after: dict[str, typing.Any] | None = None
    paused_before: bool = False
    paused_after: bool | None = None
    #: push one job first (the claim scenario runs it)
    job: bool = False


SCENARIOS = [
    Scenario(
        "configure_new",
        {"op": "configure", "concurrency": 2, "rate": "5/s"},
        after={"concurrency": 2, "rate": "5/s"},
    ),
    Scenario("configure_one_key", {"op": "configure", "rate": "5/m"}, OLD, {**OLD, "rate": "5/m"}),
    Scenario("configure_remove_all", {"op": "configure", "concurrency": None}, OLD, {}),
    Scenario("pause", {"op": "pause"}, paused_after=True),
    Scenario("resume", {"op": "resume"}, paused_before=True, paused_after=False),
    Scenario("slot_take", {"op": "slot_take"}, {"concurrency": 2}, {"concurrency": 2}),
    Scenario("slot_free", {"op": "slot_free"}, {"concurrency": 2}, {"concurrency": 2}),
    Scenario(
        "claim_within_caps",
        {"op": "claim_limited"},
        {"concurrency": 1},
        {"concurrency": 1},
        job=True,
    ),
]


def setup(root: pathlib.Path, scenario: Scenario) -> list[str]:
    store = Store(root, staleness=0)
    try:
        acked = []
        if scenario.job:
            (job_id,) = store.push_many([(crash_child.job_of({"n": 1}), QUEUE)])
            acked.append(job_id)
        if scenario.before:
            store.configure(QUEUE, scenario.before.get("concurrency"), scenario.before.get("rate"))
        if scenario.paused_before:
            store.pause(QUEUE)
        store.open()
        return acked
    finally:
        store.close()


def settings_of(root: pathlib.Path) -> dict[str, typing.Any] | str:
    path = root / "queues" / QUEUE / "settings.json"
    try:
        return typing.cast(dict[str, typing.Any], json.loads(path.read_text()))
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        return f"unreadable: {exc}"


def slots(root: pathlib.Path) -> list[str]:
    top = root / "queues" / QUEUE / "slots"
    return sorted(os.listdir(top)) if top.exists() else []


async def _drain(root: pathlib.Path) -> int:
    queue = fsjobs.Queue(root, QUEUE, staleness=0)
    try:
        queue.task(name=NOOP)(crash_child.noop)
        return await drain(queue)
    finally:
        queue.close()


def verify(
    scenario: Scenario, root: pathlib.Path, acked: list[str], answer: dict[str, typing.Any] | None
) -> list[str]:
    problems = []
    # 1. As the crash left it: the old state or the new one.
    settings = settings_of(root)
    allowed = [scenario.before, scenario.after if scenario.after is not None else scenario.before]
    if answer is not None:
        allowed = allowed[1:]
    if settings not in allowed:
        problems.append(f"settings.json holds {settings}, not one of {allowed}")
    paused = (root / "queues" / QUEUE / "paused").exists()
    pauses = [scenario.paused_before, scenario.paused_after]
    if answer is not None and scenario.paused_after is not None:
        pauses = [scenario.paused_after]
    if paused not in [p for p in pauses if p is not None]:
        problems.append(f"paused is {paused}, not one of {pauses}")
    problems += [f"after the crash: {p}" for p in check(root, acked)]
    # 2. Recovery: jobs and slots of the dead child, as a worker's rescue does (a lease on
    # the rescuer's clock for a slot left without an owner), then fsck --repair.
    clock = ManualClock()
    store = Store(root, clock=clock, staleness=0)
    try:
        store.rescue(QUEUE, "recovery")
        store.rescue_slots(QUEUE, "recovery", LEASE)
        clock.mono += LEASE
        store.rescue_slots(QUEUE, "recovery", LEASE)
    finally:
        store.close()
    if slots(root):
        problems.append(f"slots still taken after recovery: {slots(root)}")
    problems += [f"after recovery: {p}" for p in repair(root)]
    # 3. A worker drains the queue through its caps (a stuck slot would stall it).
    if (root / "queues" / QUEUE / "paused").exists():
        Store(root, staleness=0).resume(QUEUE)
    asyncio.run(_drain(root))
    problems += [f"after the drain: {p}" for p in check(root, acked, after_recovery=True)]
    store = Store(root, staleness=0)
    try:
        for job_id in acked:
            if store.get(job_id).status is not fsjobs.JobStatus.COMPLETED:
                problems.append(f"job {job_id} is {store.get(job_id).status.value} after the drain")
    finally:
        store.close()
    if slots(root):
        problems.append(f"slots taken after the drain: {slots(root)}")
    return problems


def test_crash_at_every_call_of_flow_control(
    tmp_path: pathlib.Path, scratch: pathlib.Path, fork_server: Zygote
) -> None:
    crash_points = 0
    failures: list[str] = []
    per_op: dict[str, int] = {}
    for scenario in SCENARIOS:
        for k in range(1, MAX_K + 1):
            root = scratch / f"{scenario.name}-{k:03d}"
            root.mkdir()
            acked = setup(root, scenario)
            ack = tmp_path / f"{scenario.name}-{k:03d}.ack"
            cmd = {**scenario.cmd, "root": str(root), "k": k, "ack": str(ack), "worker": f"w{k}"}
            rc = fork_server.run(cmd)
            if rc not in (0, CRASHED):
                err = pathlib.Path(f"{ack}.err")
                detail = err.read_text() if err.exists() else f"exit status {rc}"
                failures.append(f"{scenario.name} k={k}: the child failed:\n{detail}")
                break
            answer = json.loads(ack.read_text()) if ack.exists() else None
            problems = verify(scenario, root, acked, answer)
            failures += [f"{scenario.name} k={k}: {p}" for p in problems]
            if not problems:
                shutil.rmtree(root)
            if rc == 0:
                per_op[scenario.name] = k - 1
                break
            crash_points += 1
        else:
            failures.append(f"{scenario.name}: still crashing after {MAX_K} calls")
    report(
        f"FIGURES T2-flow operations={len(SCENARIOS)} crash_points={crash_points} "
        f"invariant_failures={len(failures)}"
    )
    report("NOTES T2-flow calls_per_operation " + " ".join(f"{k}={v}" for k, v in per_op.items()))
    assert not failures, "\n".join(failures[:40])
