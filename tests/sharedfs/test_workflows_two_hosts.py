"""
Workflows on two "hosts" (one GlusterFS volume mounted twice, ``scripts/sharedfs``): the
kill -9 torture with workflows (tests/faults/test_kill9_workflows.py), with the three
workers and the pusher each started on a random host and restarted on a random host after
each SIGKILL. A child is released by whichever host finishes its last parent: exactly
once, and never before its parents; nothing acknowledged is lost, no workflow is half
pushed.

``$FSJOBS_SHAREDFS_WORKFLOW_KILLS`` sets the number of kills (40; ``nox -s sharedfs``
sets 200); ``$FSJOBS_FAULT_SEED`` replays a schedule.
"""

from __future__ import annotations

import collections
import os
import pathlib
import time
from collections.abc import Iterable

import pytest

from tests.faults import test_kill9_workflows as t1w
from tests.faults._fsck import check

from .conftest import Shared, record_figures
from .test_two_hosts import SETTLE, SplitChildren

pytestmark = [pytest.mark.sharedfs, pytest.mark.slow]

KILLS = int(os.environ.get("FSJOBS_SHAREDFS_WORKFLOW_KILLS", "40"))


def settled(root: pathlib.Path, acked: Iterable[str]) -> list[str]:
    """The invariant check, repeated until the tree reads the same through this mount."""
    acked = list(acked)
    give_up = time.monotonic() + SETTLE
    while True:
        problems = check(root, acked, after_recovery=True)
        if not problems or time.monotonic() > give_up:
            return problems
        time.sleep(0.2)


def test_kill9_workflow_torture_across_hosts(
    shared: Shared, tmp_path: pathlib.Path, subprocess_env: dict[str, str]
) -> None:
    children = SplitChildren(tmp_path, subprocess_env, shared)
    children.next_hosts = ["a", "b"]  # worker-0 on A, worker-1 on B, the rest anywhere

    def clean_workers_on_both_hosts() -> None:
        children.next_hosts = ["a", "b", "a"]

    try:
        figures, problems = t1w.torture(
            children,
            KILLS,
            shared.b,  # read through the other mount than most writes
            lambda acked: settled(shared.a, acked),
            staleness=None,  # the network filesystem's own bound
            before_drain=clean_workers_on_both_hosts,
        )
    finally:
        children.kill_all()
    hosts = collections.Counter(children.host_of[k.pid] for k in children.kills[:KILLS])
    record_figures(
        "kill9_workflow_torture", **figures, killed_on_a=hosts["a"], killed_on_b=hosts["b"]
    )
    t1w.assert_no_problems(children, problems)
