"""
One store used by several threads at once, as a process with two workers (or a
worker and its periodic keeper) uses it: every listing must be whole.
"""

from __future__ import annotations

import errno
import os
import pathlib
import threading
import time

import pytest

import fsjobs
from fsjobs.store import Store

FUNC = "tests.unit.test_threads.task"


def test_threads_listing_one_queue_at_once_each_see_every_job_once(root: pathlib.Path) -> None:
    """
    A directory descriptor the store keeps is shared by its threads; a listing
    that read through a copy of it shared that copy's position with the others,
    and skipped or repeated names when two listed at once (a job claimed twice
    by one worker, or not seen at all).
    """
    store = Store(root, staleness=0)
    jobs = [(fsjobs.Job(func=FUNC, priority=n % 3, kwargs={"n": n}), "default") for n in range(30)]
    store.push_many(jobs)
    expected = store.ready("default", 100)
    assert len(expected) == 30 == len(set(expected))
    wrong: list[list[str]] = []
    start = threading.Barrier(4)

    def look() -> None:
        start.wait()
        for _ in range(300):
            seen = store.ready("default", 100)
            if seen != expected:
                wrong.append(seen)

    threads = [threading.Thread(target=look) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not wrong, f"{len(wrong)} of 1200 listings were wrong, e.g. {len(wrong[0])} names"


def test_a_name_listed_twice_is_claimed_once(root: pathlib.Path) -> None:
    """
    A claim whose source is gone counts as won when its running name exists (an
    NFS client may retransmit a rename that succeeded); a name listed twice must
    not be tried twice, or the worker would take its own claim for a second win.
    """
    store = Store(root, staleness=0)
    store.push_many([(fsjobs.Job(func=FUNC), "default")])
    (name,) = store.ready("default")
    lock, hb = store.register_worker("w-1")
    claims, tried, error = store.claim_many("default", [name, name], "w-1", 10)
    assert (len(claims), tried, error) == (1, 2, None)
    for claim in claims:
        store.close_claim(claim)
    store.unregister_worker("w-1", lock, hb)


def test_a_bucket_removed_by_another_host_lists_as_empty(
    root: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    Another host may empty and remove a time bucket between a worker's walk to
    it and its listing. A local filesystem lists the removed directory as empty;
    GlusterFS answers ESTALE, which killed a worker in the two-host soak. Both
    must read as "nothing here", and the worker's look at the queue go on.
    """
    store = Store(root, staleness=0)
    store.push_many([(fsjobs.Job(func=FUNC), "default")])
    assert len(store.ready("default")) == 1
    real_open = os.open

    def stale_dot(path: str, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
        if path == "." and dir_fd is not None:
            raise OSError(errno.ESTALE, "Stale file handle", ".")
        return real_open(path, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "open", stale_dot)
    assert store.ready("default") == []
    monkeypatch.setattr(os, "open", real_open)
    assert len(store.ready("default")) == 1


def test_a_fresh_empty_priority_directory_is_not_removed_under_a_pusher(
    root: pathlib.Path,
) -> None:
    """
    A pusher makes ``pending/<prio>/`` and then the bucket inside it; a worker
    woken by the first mkdir listed at once, found the priority directory
    empty and removed it, and the push lost that race ten times in a row
    ("bucket keeps vanishing"). A priority directory goes only once its last
    change is as old as a bucket's grace.
    """
    store = Store(root, staleness=0)
    store.push_many([(fsjobs.Job(func=FUNC), "default")])
    pending = root / "queues" / "default" / "pending"
    fresh = pending / "2147483600"
    fresh.mkdir()
    assert len(store.ready("default")) == 1
    assert fresh.is_dir(), "a worker's look removed a priority directory a pusher had just made"
    old = time.time() - 60
    os.utime(fresh, (old, old))
    store.ready("default")
    assert not fresh.exists(), "an old empty priority directory is cleaned up"
