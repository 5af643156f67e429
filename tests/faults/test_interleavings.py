"""
Deterministic interleavings found by the torture test (T1), replayed at one syscall.

A rival worker is run at an exact point of a push: right after the pusher closes the
marker it created with ``O_EXCL`` in ``pending/`` (its commit point), the rival claims
and completes the job and then lists the queue head twice, which removes the emptied
second bucket and then its hour directory. That is what three workers polling every
10 ms do to a pusher whose thread is descheduled for a few milliseconds.
"""

from __future__ import annotations

import os
import pathlib
import typing
from collections.abc import Callable, Iterator

import pytest

import fsjobs
from fsjobs import JobStatus
from fsjobs._names import Marker
from fsjobs.store import Outcome, Store

from ._fsck import check

pytestmark = pytest.mark.slow

Q = "default"
FUNC = "tests.faults.test_interleavings.nothing"


class AfterCommit:
    """Run `rival` once, right after the close of each new pending marker's descriptor."""

    def __init__(self, rival: Callable[[], None]) -> None:
        self.rival = rival
        self.markers: set[int] = set()
        self.ran = 0
        self.open, self.close = os.open, os.close

    def _open(self, path: typing.Any, flags: int, *args: typing.Any, **kwargs: typing.Any) -> int:
        fd = self.open(path, flags, *args, **kwargs)
        if flags & os.O_EXCL and isinstance(path, str):
            try:
                Marker.parse(path)
            except ValueError:
                return fd
            self.markers.add(fd)
        return fd

    def _close(self, fd: int) -> None:
        self.close(fd)
        if fd in self.markers:
            self.markers.discard(fd)
            self.ran += 1
            self.rival()

    def __enter__(self) -> AfterCommit:
        os.open, os.close = self._open, self._close  # type: ignore[assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        os.open, os.close = self.open, self.close  # type: ignore[assignment]


@pytest.fixture
def stores(root: pathlib.Path) -> Iterator[tuple[Store, Store]]:
    pusher, rival = Store(root, staleness=0), Store(root, staleness=0)
    try:
        yield pusher, rival
    finally:
        pusher.close()
        rival.close()


def _claim_complete_and_prune(rival: Store) -> Callable[[], None]:
    def run() -> None:
        for path in rival.ready(Q):
            claim = rival.claim(Q, path, "rival-worker")
            assert claim is not None
            assert rival.finish(claim, Outcome(JobStatus.COMPLETED, result=None))
        rival.ready(Q)  # removes the emptied second bucket
        rival.ready(Q)  # and then the emptied hour directory

    return run


@pytest.mark.parametrize("batch", [1, 3], ids=["push", "push_many_3"])
def test_a_push_whose_job_is_claimed_at_once_still_returns_its_ids(
    batch: int, root: pathlib.Path, stores: tuple[Store, Store]
) -> None:
    pusher, rival = stores
    jobs = [(fsjobs.Job(func=FUNC, kwargs={"n": n}), Q) for n in range(batch)]
    published: list[str] = []
    with AfterCommit(_claim_complete_and_prune(rival)) as hook:
        try:
            ids = pusher.push_many(jobs, published)
        except OSError as exc:
            pytest.fail(
                f"push_many raised {exc!r} after publishing {published}: each of them is "
                "committed (and was even run), yet the caller is told the push failed"
            )
    assert hook.ran == batch
    assert ids == published
    for job_id in ids:
        assert pusher.get(job_id).status is JobStatus.COMPLETED
    assert check(root, ids) == []
