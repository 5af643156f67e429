"""
Deterministic interleavings found by the torture test (T1), replayed at one syscall.

A rival worker is run at an exact point of a push: right after the pusher links the
marker into ``pending/`` (its commit point), the rival claims and completes the job and
then lists the queue head twice, which removes the emptied second bucket and then its
hour directory. That is what three workers polling every 10 ms do to a pusher whose
thread is descheduled for a few milliseconds. Workers leave a bucket alone until its time
is `BUCKET_GRACE_MS` past, so the rival's clock runs a minute ahead (another host whose
clock is off): the race must still be survived when it does happen, and the test checks
that it happened.
"""

from __future__ import annotations

import datetime as dt
import os
import pathlib
import typing
from collections.abc import Callable, Iterator

import pytest

import fsjobs
from fsjobs import JobStatus
from fsjobs._names import Marker
from fsjobs.store import Ending, Outcome, Store
from fsjobs.testing import FakeClock

from ._fsck import check

pytestmark = pytest.mark.slow

Q = "default"
FUNC = "tests.faults.test_interleavings.nothing"


class AfterCommit:
    """Run `rival` once right after each ``link`` that publishes a marker; count its rmdirs."""

    def __init__(self, rival: Callable[[], None]) -> None:
        self.rival = rival
        self.ran = 0
        self.removed: list[str] = []
        self.link, self.rmdir = os.link, os.rmdir

    def _link(
        self, src: typing.Any, dst: typing.Any, *args: typing.Any, **kwargs: typing.Any
    ) -> None:
        self.link(src, dst, *args, **kwargs)
        try:
            Marker.parse(dst)
        except (TypeError, ValueError):
            return
        self.ran += 1
        self.rival()

    def _rmdir(self, path: typing.Any, *args: typing.Any, **kwargs: typing.Any) -> None:
        self.rmdir(path, *args, **kwargs)
        self.removed.append(str(path))

    def __enter__(self) -> AfterCommit:
        os.link, os.rmdir = self._link, self._rmdir  # type: ignore[assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        os.link, os.rmdir = self.link, self.rmdir  # type: ignore[assignment]


@pytest.fixture
def stores(root: pathlib.Path) -> Iterator[tuple[Store, Store]]:
    ahead = FakeClock(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1))
    pusher, rival = Store(root, staleness=0), Store(root, staleness=0, clock=ahead)
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
            assert rival.finish(claim, Outcome(Ending.COMPLETED, result=None))
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
    assert hook.removed, "the rival never removed a bucket: the race was not replayed"
    assert ids == published
    for job_id in ids:
        assert pusher.get(job_id).status is JobStatus.COMPLETED
    assert check(root, ids) == []
