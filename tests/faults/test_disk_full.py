"""
T8: a full disk, for real: a queue on a small tmpfs (needs root and ``mount``).

Two scenarios, each on its own tmpfs:

* ``reserve=0`` (``Queue(root, reserve_bytes=0)``, 5 MiB with a 3 MiB ballast file): a
  worker starts, then jobs are pushed (due in an hour of a fake clock, so it runs
  nothing yet) until a push fails; a filler file takes the last free bytes, so the disk
  is completely full (other programs fill disks too), and more pushes, single and
  batched, are tried. Every rejected push must fail cleanly (``StoreFull``, or
  ``PushError``/``OSError`` caused by ENOSPC) and leave nothing visible. Then the jobs
  fall due and the running worker must drain them on the full disk (DESIGN.md §4.4.4:
  "renames need no free space, so a full disk never stalls draining"); if it cannot,
  the test records exactly what failed, and whether a worker started on the full disk
  fares better. Then the filler and the ballast go: pushes work again, and the queue
  drains.
* ``reserve=default`` (64 MiB reserve, on a tmpfs of 64 MiB + 1 MiB): pushes succeed until
  the free space falls below the reserve, then fail with ``StoreFull``; the reserve
  leaves a worker room to drain.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import errno
import logging
import os
import pathlib
import re
import subprocess
import time
import traceback
from collections.abc import Callable, Iterator

import attrs
import pytest

import fsjobs
from fsjobs import JobStatus
from fsjobs.testing import FakeClock, drain

from ._fsck import check, repair, report, walk

pytestmark = [pytest.mark.slow, pytest.mark.asyncio]

FUNC = "tests.faults.test_disk_full.work"
MiB = 1024 * 1024
DEFAULT_RESERVE = 64 * MiB
DRAIN_TIMEOUT = 60.0
#: a worker that has completed nothing for this long is stalled
STALL_AFTER = 10.0
#: how long a worker is watched on the full disk after its first failed claim, and how
#: many claims it may try meanwhile (it pauses 1 s after each; a busy loop makes hundreds)
PROBE = 2.0
PROBE_CLAIM_LIMIT = 10


async def work(n: int, pad: str) -> int:
    return n


Mount = Callable[[str, int], pathlib.Path]


@pytest.fixture
def tmpfs(tmp_path: pathlib.Path) -> Iterator[Mount]:
    """Mount small tmpfs filesystems (skip without root or mount); unmount them all."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (run as root to test a real full disk)")
    mounted: list[pathlib.Path] = []

    def mount(name: str, size: int) -> pathlib.Path:
        path = tmp_path / name
        path.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
        mounted.append(path)
        return path

    try:
        yield mount
    finally:
        for path in reversed(mounted):
            done = subprocess.run(["umount", str(path)], capture_output=True, check=False)
            if done.returncode != 0:
                subprocess.run(["umount", "-l", str(path)], check=False)


def fill(path: pathlib.Path) -> int:
    """Write `path` until the filesystem is full; return the bytes written."""
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        for size in (1 << 20, 1 << 16, 1 << 12, 1 << 9, 1):
            while True:
                try:
                    n = os.write(fd, b"\0" * size)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
                written += n
                if n < size:
                    break
    finally:
        os.close(fd)
    return written


def _job(n: int, scheduled_at: dt.datetime | None) -> fsjobs.Job:
    return fsjobs.Job(func=FUNC, kwargs={"n": n, "pad": "x" * 1500}, scheduled_at=scheduled_at)


def _is_full_error(exc: BaseException) -> bool:
    """StoreFull, or an OSError/PushError whose cause chain holds ENOSPC/EDQUOT."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, fsjobs.StoreFull):
            return True
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


@attrs.define
class Figures:
    rejected_cleanly: int = 0
    partial_visible: int = 0
    stalled: int = 0
    failures: list[str] = attrs.Factory(list)
    notes: list[str] = attrs.Factory(list)


class Pusher:
    """Pushes jobs and keeps the acknowledged ids and how rejections looked."""

    def __init__(
        self,
        queue: fsjobs.Queue,
        root: pathlib.Path,
        figures: Figures,
        scheduled_at: dt.datetime | None = None,
    ) -> None:
        self.queue, self.root, self.figures = queue, root, figures
        self.scheduled_at = scheduled_at
        self.acked: list[str] = []
        self.n = 0
        self.rejections: collections.Counter[str] = collections.Counter()

    async def push(self, batch: int = 1) -> bool:
        """One push (or push_many of `batch`); False if it was rejected."""
        jobs = [_job(self.n + i, self.scheduled_at) for i in range(batch)]
        self.n += batch
        try:
            if batch == 1:
                self.acked.append(await self.queue.push(jobs[0]))
            else:
                self.acked += await self.queue.push_many(jobs)
            return True
        except Exception as exc:
            published = exc.published_ids if isinstance(exc, fsjobs.PushError) else []
            self.acked += published
            cause = exc.__cause__
            kind = type(exc).__name__ + (f"<-{type(cause).__name__}" if cause else "")
            self.rejections[kind] += 1
            visible = set(walk(self.root).markers) - set(self.acked)
            self.figures.partial_visible += len(visible)
            if not _is_full_error(exc):
                self.figures.failures.append(f"a push failed, but not for lack of space: {exc!r}")
            elif visible:
                self.figures.failures.append(f"a rejected push left jobs visible: {visible}")
            else:
                self.figures.rejected_cleanly += 1
            return False


async def _drain(queue: fsjobs.Queue) -> str | None:
    """Run the queue's jobs in a new worker; None, or why the worker did not end well."""
    try:
        async with asyncio.timeout(DRAIN_TIMEOUT):
            await drain(queue, concurrency=4)
    except TimeoutError:
        return f"the drain did not end within {DRAIN_TIMEOUT} s"
    except Exception as exc:
        return f"a new worker raised {exc!r} at {_where(exc)}"
    return None


def _where(exc: BaseException) -> str:
    """The innermost fsjobs frame of a traceback: file:line and the code."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "fsjobs" in f.filename]
    if not frames:
        return "?"
    f = frames[-1]
    return f"{pathlib.Path(f.filename).name}:{f.lineno} {f.line}"


async def _left(queue: fsjobs.Queue, ids: list[str]) -> list[str]:
    """The ids that are not completed."""
    out = []
    for job_id in ids:
        state = await queue.get(job_id)
        if state.status is not JobStatus.COMPLETED:
            out.append(f"{job_id} {state.status.value}")
    return out


async def _wait_drained(queue: fsjobs.Queue, ids: list[str], worker: asyncio.Task[None]) -> bool:
    """Poll until every id completed; False once nothing has moved for STALL_AFTER s."""
    left = await _left(queue, ids)
    moved = time.monotonic()
    while left and not worker.done():
        if time.monotonic() - moved > STALL_AFTER:
            return False
        await asyncio.sleep(0.05)
        now = await _left(queue, ids)
        if len(now) < len(left):
            moved = time.monotonic()
        left = now
    return not left


def _errors(caplog: pytest.LogCaptureFixture) -> dict[str, int]:
    """The distinct errors fsjobs logged, most frequent first."""
    errors = collections.Counter(
        _exc_line(r) if r.exc_info else _plain(r.getMessage())[:200]
        for r in caplog.records
        if r.levelno >= logging.ERROR and r.name.startswith("fsjobs")
    )
    return dict(errors.most_common(4))


def _exc_line(record: logging.LogRecord) -> str:
    assert record.exc_info is not None
    exc = record.exc_info[1]
    assert exc is not None
    return f"{_plain(record.getMessage())[:70]}: {exc!r} at {_where(exc)}"


def _plain(message: str) -> str:
    """A log message without its job ids, worker ids and paths, so that repeats count."""
    ids_and_paths = r"\b[0-9a-z]{22}\b|(?<!\S)(?:queues|jobs|tmp|/)\S*|\S+-\d+-[0-9a-z]{6}\b"
    return re.sub(ids_and_paths, "…", message)


async def _no_reserve(mount: Mount, figures: Figures, caplog: pytest.LogCaptureFixture) -> None:
    mnt = mount("full", 5 * MiB)
    root = mnt / "queue"
    # The jobs are scheduled an hour ahead on a fake clock, so that a worker can be
    # running (registered, beating) before the disk fills, yet claim nothing until then.
    clock = FakeClock(dt.datetime.now(dt.UTC))
    later = clock.now() + dt.timedelta(hours=1)
    queue = fsjobs.Queue(root, reserve_bytes=0, staleness=0, clock=clock)
    running = fsjobs.Worker(queue, concurrency=4, handle_signals=False)
    serving = asyncio.create_task(running.run())
    try:
        queue.task(name=FUNC)(work)
        pusher = Pusher(queue, root, figures, scheduled_at=later)
        # Freed at the end, when space comes back: enough for every job's claim to
        # write a new journal segment (a block each) while the queue drains.
        ballast = mnt / "ballast"
        ballast.write_bytes(b"\0" * (3 * MiB))
        # 1. Push until the disk refuses, then fill what is left: the disk is full.
        while await pusher.push(1 if pusher.n % 4 else 3):
            assert pusher.n < 100_000, "the tmpfs never filled up"
        filler = mnt / "filler"
        fill(filler)
        for batch in (1, 3, 1, 5, 1):
            if await pusher.push(batch):
                figures.failures.append("reserve=0: a push succeeded on a full disk")
        figures.notes.append(
            f"reserve=0 acked={len(pusher.acked)} rejections={dict(pusher.rejections)}"
        )
        problems = check(root, pusher.acked)
        figures.failures += [f"reserve=0, after the rejected pushes: {p}" for p in problems]
        # 2. The jobs fall due on the full disk. A claim writes one record into a new
        # journal segment, which needs a block: with no reserve left, the running
        # worker must pause cleanly (no busy loop, no leftovers, nothing lost), and
        # drain once space is back (step 4). The default reserve avoids the pause.
        caplog.clear()
        clock.advance(3600)
        paused = await _wait_for_pause(caplog)
        failed_claims = sum(1 for r in caplog.records if "after claiming" in r.getMessage())
        empty = sum(
            1
            for segments in walk(root).journals.values()
            for _, seg in segments
            if seg.valid_bytes == 0 and seg.problem is None
        )
        figures.notes.append(
            f"reserve=0 worker_paused_on_zero_free={paused} failed_claims_in_probe={failed_claims}"
            f" empty_segments_left={empty}"
        )
        if not paused:
            figures.failures.append(f"reserve=0: no pause; what failed: {_errors(caplog)}")
        if failed_claims > PROBE_CLAIM_LIMIT or empty:
            figures.stalled += 1
            figures.failures.append(
                f"reserve=0: a busy loop on the full disk: {failed_claims} failed claims, "
                f"{empty} empty segments left behind"
            )
        problems = check(root, pusher.acked)
        figures.failures += [f"reserve=0, while paused: {p}" for p in problems]
        # 3. A worker started on the full disk refuses cleanly, leaving nothing behind.
        before = sorted(p.name for p in (root / "workers").iterdir())
        trouble = await _drain(queue)
        after = sorted(p.name for p in (root / "workers").iterdir())
        figures.notes.append(f"reserve=0 new_worker_on_full_disk={trouble or 'ok'}")
        if trouble is not None and "StoreFull" not in trouble:
            figures.failures.append(f"reserve=0: a new worker on the full disk: {trouble}")
        if after != before:
            figures.failures.append(f"reserve=0: a refused worker left {set(after) - set(before)}")
        # 4. Free space: pushes work again, and everything drains.
        filler.unlink()
        ballast.unlink()
        pusher.scheduled_at = None
        if not await pusher.push(1) or not await pusher.push(3):
            figures.failures.append("reserve=0: pushes still fail after space was freed")
        if not await _wait_drained(queue, pusher.acked, serving):
            figures.failures.append(
                f"reserve=0: even with free space the running worker did not drain the queue: "
                f"counts {await _counts(queue)}; what failed: {_errors(caplog)}"
            )
        figures.failures += [f"reserve=0, at the end: {p}" for p in repair(root)]
        figures.failures += [f"reserve=0, at the end: {p}" for p in check(root, pusher.acked)]
    finally:
        running.stop()
        try:
            await asyncio.wait_for(serving, DRAIN_TIMEOUT)  # cancelled if it hangs
        finally:
            queue.close()


async def _wait_for_pause(caplog: pytest.LogCaptureFixture) -> bool:
    """Wait (bounded) for the worker's first failed claim; then watch it for PROBE seconds."""
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while not any("after claiming" in r.getMessage() for r in caplog.records):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    caplog.clear()
    await asyncio.sleep(PROBE)  # an observation window for a busy loop, not a sync point
    return True


async def _counts(queue: fsjobs.Queue) -> dict[str, int]:
    return {s.value: n for s, n in (await queue.counts()).items() if n}


async def _default_reserve(
    mount: Mount, figures: Figures, caplog: pytest.LogCaptureFixture
) -> None:
    mnt = mount("reserve", DEFAULT_RESERVE + 1 * MiB)
    root = mnt / "queue"
    queue = fsjobs.Queue(root, staleness=0)  # reserve_bytes: the default
    try:
        assert queue.store.reserve_bytes == DEFAULT_RESERVE
        queue.task(name=FUNC)(work)
        pusher = Pusher(queue, root, figures)
        while await pusher.push(1 if pusher.n % 4 else 3):
            assert pusher.n < 100_000, "the reserve was never reached"
        for batch in (1, 3):
            if await pusher.push(batch):
                figures.failures.append("reserve=64MiB: a push succeeded below the reserve")
        if set(pusher.rejections) != {"StoreFull"}:
            figures.failures.append(f"below the reserve, pushes raised {pusher.rejections}")
        figures.notes.append(
            f"reserve=64MiB acked={len(pusher.acked)} rejections={dict(pusher.rejections)}"
        )
        problems = check(root, pusher.acked)
        figures.failures += [f"reserve=64MiB, after the rejected pushes: {p}" for p in problems]
        caplog.clear()
        trouble = await _drain(queue)
        left = await _left(queue, pusher.acked)
        if trouble or left:
            figures.stalled += 1
            figures.failures.append(
                f"reserve=64MiB: the worker did not drain the queue: {trouble or 'it returned'}, "
                f"{len(left)} jobs left; what failed: {_errors(caplog)}"
            )
        figures.failures += [f"reserve=64MiB, at the end: {p}" for p in repair(root)]
        figures.failures += [f"reserve=64MiB, at the end: {p}" for p in check(root, pusher.acked)]
    finally:
        queue.close()


async def test_disk_full(tmpfs: Mount, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="fsjobs")
    figures = Figures()
    await _no_reserve(tmpfs, figures, caplog)
    await _default_reserve(tmpfs, figures, caplog)
    report(
        f"FIGURES T8 pushes_rejected_cleanly={figures.rejected_cleanly} "
        f"partial_jobs_visible={figures.partial_visible} workers_stalled={figures.stalled}"
    )
    for note in figures.notes:
        report(f"NOTES T8 {note}")
    assert not figures.failures, "\n".join(figures.failures)
    assert figures.rejected_cleanly > 0
