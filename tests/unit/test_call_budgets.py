"""
DESIGN.md §6's filesystem-call budgets, counted (counts do not vary from run to
run as times do): at most 25 calls per push and 30 per claim plus finish, in the
steady state of a store that has pushed and run jobs before (its directories
exist and its descriptors are cached). A queue with no settings pays nothing for
flow control (§9.7), so the budgets hold for it as they are.

Every call that touches the filesystem is counted: opens and closes, reads and
writes, fsyncs, renames, links, directory changes, stats and listings.
"""

from __future__ import annotations

import collections
import os
import pathlib
from collections.abc import Callable, Iterator

import pytest

import fsjobs
from fsjobs.store import Ending, Outcome, Store

FUNC = "tests.unit.test_call_budgets.task"
COUNTED = (
    "open",
    "close",
    "read",
    "write",
    "pwrite",
    "pread",
    "fsync",
    "rename",
    "link",
    "mkdir",
    "rmdir",
    "unlink",
    "ftruncate",
    "lseek",
    "stat",
    "fstat",
    "lstat",
    "listdir",
    "scandir",
    "statvfs",
    "fstatvfs",
    "utime",
)
PUSH_BUDGET = 25
CLAIM_FINISH_BUDGET = 30


@pytest.fixture
def count(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Callable[[], object]], int]]:
    calls: collections.Counter[str] = collections.Counter()
    counting = [False]
    for name in COUNTED:
        real = getattr(os, name)

        def wrapper(*args: object, _real: Callable[..., object] = real, _n: str = name,
                    **kwargs: object) -> object:  # fmt: skip
            if counting[0]:
                calls[_n] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(os, name, wrapper)

    def run(fn: Callable[[], object]) -> int:
        calls.clear()
        counting[0] = True
        try:
            fn()
        finally:
            counting[0] = False
        return sum(calls.values())

    yield run


@pytest.fixture
def warm(root: pathlib.Path) -> Iterator[Store]:
    """A store that has pushed, claimed and finished before, with a live worker."""
    store = Store(root, staleness=0)
    lock, hb = store.register_worker("w-1")
    store.push_many([(fsjobs.Job(func=FUNC, kwargs={"n": n}), "default") for n in range(20)])
    for name in store.ready("default")[:2]:
        claim = store.claim("default", name, "w-1")
        assert claim is not None
        store.finish(claim, Outcome(Ending.COMPLETED, result=1))
    yield store
    store.unregister_worker("w-1", lock, hb)
    store.close()


def test_a_push_stays_within_its_budget(
    warm: Store, count: Callable[[Callable[[], object]], int]
) -> None:
    job = fsjobs.Job(func=FUNC, kwargs={"n": 1})
    counts = [count(lambda: warm.push_many([(job, "default")])) for _ in range(20)]
    assert max(counts) <= PUSH_BUDGET, counts


def test_a_claim_and_its_finish_stay_within_their_budget(
    warm: Store, count: Callable[[Callable[[], object]], int]
) -> None:
    names = warm.ready("default")
    counts = []
    for name in names[:10]:

        def claim_and_finish(name: str = name) -> None:
            claim = warm.claim("default", name, "w-1")
            assert claim is not None
            assert warm.finish(claim, Outcome(Ending.COMPLETED, result={"ok": 1}))

        counts.append(count(claim_and_finish))
    assert max(counts) <= CLAIM_FINISH_BUDGET, counts
