"""list_jobs pages with a cursor: every job exactly once, newest first, and says when it was cut."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

import fsjobs
from fsjobs import JobStatus
from fsjobs.testing import drain


@pytest.mark.asyncio
async def test_pages_cover_every_job_once_while_jobs_move(root: pathlib.Path) -> None:
    """Jobs that run between two pages are neither lost nor listed twice."""
    queue = fsjobs.Queue(root, staleness=0)
    other = fsjobs.Queue(root, "other", staleness=0)

    @queue.task(name="tests.paging.noop")
    def noop() -> None:
        return None

    ids = [await queue.push(noop.job()) for _ in range(7)]
    ids += [await other.push(fsjobs.Job(func="tests.paging.noop")) for _ in range(4)]
    first = await queue.list_jobs(limit=4, queue="*")
    assert first.cut and first.next_cursor == first[-1].id
    await drain(queue)  # the default queue's jobs move to completed/ between pages
    seen = [s.id for s in first]
    cursor = first.next_cursor
    while cursor is not None:
        page = await queue.list_jobs(limit=4, queue="*", cursor=cursor)
        seen += [s.id for s in page]
        cursor = page.next_cursor
    assert seen == sorted(ids, reverse=True)
    last = await queue.list_jobs(limit=11, queue="*")
    assert not last.cut and len(last) == 11
    completed = await queue.list_jobs(JobStatus.COMPLETED, limit=100)
    assert {s.id for s in completed} == set(ids[:7])


@pytest.mark.asyncio
async def test_a_bad_cursor_is_refused(root: pathlib.Path) -> None:
    with pytest.raises(fsjobs.InvalidJob):
        await fsjobs.Queue(root).list_jobs(cursor="../../etc")


def test_ls_says_on_stderr_that_more_jobs_follow(root: pathlib.Path) -> None:
    """``fsjobs ls`` keeps stdout a listing and names the cursor of the next page on stderr."""
    run = [sys.executable, "-m", "fsjobs", "--root", str(root)]
    for _ in range(3):
        subprocess.run([*run, "push", "tests.paging.noop"], check=True, capture_output=True)
    out = subprocess.run([*run, "ls", "--limit", "2"], capture_output=True, text=True, check=True)
    assert len(out.stdout.splitlines()) == 2
    cursor = out.stdout.splitlines()[-1].split()[0]
    assert f"more jobs follow: --cursor {cursor}" in out.stderr
    rest = subprocess.run(
        [*run, "ls", "--limit", "2", "--cursor", cursor], capture_output=True, text=True, check=True
    )
    assert len(rest.stdout.splitlines()) == 1 and rest.stderr == ""
