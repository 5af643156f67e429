"""
Per-attempt logs: what a task prints and logs lands in ``attempts/<epoch>/log``,
whatever the application's logging configuration, without mixing jobs; a log
keeps its tail; ``queue.logs`` reads one attempt, every epoch that ran it joined.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pathlib
import sys
import typing
import uuid
from collections.abc import Iterator

import pytest

import fsjobs
from fsjobs import Backoff, Job, JobNotFound, Queue, Worker
from fsjobs._logs import LOG_KEEP, LogFile
from fsjobs.store import Ending, Outcome, Store

HANG_GUARD = 60.0


def name() -> str:
    return f"tests.unit.logs.t{uuid.uuid4().hex}"


@pytest.fixture
def queue(root: pathlib.Path) -> Iterator[Queue]:
    q = Queue(root, staleness=0)
    yield q
    q.close()


async def drain(queue: Queue, **options: typing.Any) -> int:
    async with asyncio.timeout(HANG_GUARD):
        return await Worker(queue, **options).run_until_empty()


class Records(logging.Handler):
    """The application's own handler: what its logging configuration lets through."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def app_logging() -> Iterator[Records]:
    """An application that logs WARNING and above only, with one logger disabled."""
    root = logging.getLogger()
    handler = Records()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    muted = logging.getLogger("tests.muted")
    muted.disabled = True
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        muted.disabled = False


@pytest.mark.asyncio
async def test_prints_stderr_and_logging_land_in_the_attempts_log_whatever_the_config(
    queue: Queue, app_logging: Records, capsys: pytest.CaptureFixture[str]
) -> None:
    @queue.task(name=name())
    async def chatty() -> None:
        print("printed")
        sys.stderr.write("to stderr\n")
        logging.getLogger("tests.app").info("info, below the app's level")
        logging.getLogger("tests.app").warning("a warning")
        logging.getLogger("tests.muted").error("from a disabled logger")
        logging.getLogger("tests.app").debug("debug: not captured")

    job_id = await chatty.enqueue()
    print("the test's own line")
    assert await drain(queue) == 1
    log = await queue.logs(job_id)
    lines = log.splitlines()
    assert lines[:2] == ["printed", "to stderr"]
    assert lines[2].endswith("INFO tests.app: info, below the app's level")
    assert lines[3].endswith("WARNING tests.app: a warning")
    assert lines[4].endswith("ERROR tests.muted: from a disabled logger")
    assert len(lines) == 5
    # The application's handlers see what its configuration lets through, as before.
    assert app_logging.messages == ["a warning"]
    out = capsys.readouterr()
    assert out.out == "the test's own line\n" and "printed" not in out.err


@pytest.mark.asyncio
async def test_a_thread_tasks_output_is_captured_and_other_threads_are_not(
    queue: Queue, capsys: pytest.CaptureFixture[str]
) -> None:
    @queue.task(name=name())
    def in_a_thread(n: int) -> None:
        for i in range(n):
            print(f"line {i}")
        sys.stdout.buffer.write(b"bytes too\n")
        logging.getLogger("tests.thread").info("logged")

    first, second = await in_a_thread.enqueue(n=2), await in_a_thread.enqueue(n=3)
    assert await drain(queue, concurrency=2) == 2
    assert (await queue.logs(first)).splitlines()[:3] == ["line 0", "line 1", "bytes too"]
    assert (await queue.logs(second)).splitlines()[:4] == [
        "line 0",
        "line 1",
        "line 2",
        "bytes too",
    ]
    assert "logged" in (await queue.logs(second)).splitlines()[4]
    assert capsys.readouterr().out == ""
    print("after the worker")
    assert capsys.readouterr().out == "after the worker\n", "stdout is the app's again"


@pytest.mark.asyncio
async def test_logs_are_per_attempt_numbered_from_one(queue: Queue) -> None:
    @queue.task(name=name(), max_attempts=3, backoff=Backoff(initial=0, jitter=0))
    def flaky(ctx: fsjobs.Context) -> str:
        print(f"attempt {ctx.attempt} says hello")
        if ctx.attempt < 2:
            raise ValueError("not yet")
        return "ok"

    silent = await queue.push(Job(func=name()))  # an unknown task: fails before it runs
    job_id = await flaky.enqueue()
    await drain(queue)
    assert await queue.result(job_id) == "ok"
    assert await queue.logs(job_id) == "attempt 2 says hello\n"
    assert await queue.logs(job_id, attempt=1) == "attempt 1 says hello\n"
    assert await queue.logs(job_id, attempt=3) == ""
    assert await queue.logs(silent) == ""
    with pytest.raises(ValueError):
        await queue.logs(job_id, attempt=0)
    with pytest.raises(JobNotFound):
        await queue.logs("0" * 22)


def test_an_attempt_that_ran_in_two_epochs_has_both_logs_joined(root: pathlib.Path) -> None:
    """A worker that stops gives its job back, attempt restored; the next claim runs it again."""
    store = Store(root, staleness=0)
    try:
        (job_id,) = store.push_many([(Job(func="a.b"), "default")])
        for text, ending in (("given back\n", Ending.GIVE_BACK), ("ran\n", Ending.COMPLETED)):
            claim = store.claim("default", store.ready("default")[0], "w1")
            assert claim is not None and claim.marker.attempt == 1
            log = LogFile(fd=store.open_log(claim))
            log.write(text.encode())
            log.close()
            assert store.finish(claim, Outcome(ending))
        assert [a for _, a in store.log_epochs(job_id)] == [1, 1]
        assert store.logs(job_id) == store.logs(job_id, 1) == "given back\nran\n"
    finally:
        store.close()


def test_a_log_keeps_its_tail(tmp_path: pathlib.Path) -> None:
    """Past twice its size it is cut back while it runs; at the end to at most `keep` bytes."""
    fd = os.open(tmp_path / "log", os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    log = LogFile(fd=fd)
    lines = [f"line {i:07d}\n".encode() for i in range(300_000)]  # 13 bytes each, 3.7 MiB
    for line in lines:
        log.write(line)
        assert os.fstat(fd).st_size <= 2 * LOG_KEEP + len(line)
    log.close()
    data = (tmp_path / "log").read_bytes()
    assert len(data) <= LOG_KEEP
    first, _, rest = data.partition(b"\n")
    assert first.startswith(b"[fsjobs: the first ")
    assert first.endswith(b" bytes of this log were dropped]")
    assert rest.endswith(lines[-1])
    assert rest.splitlines(keepends=True) == lines[-len(rest.splitlines()) :], "whole lines"
    assert len(rest) > LOG_KEEP - 200


@pytest.mark.asyncio
async def test_output_after_the_attempt_ended_is_dropped(queue: Queue, root: pathlib.Path) -> None:
    """An asyncio task the task left behind prints later: nothing is written, no file reopened."""
    attempt_over, printed = asyncio.Event(), asyncio.Event()

    async def straggler() -> None:
        await attempt_over.wait()
        print("too late")
        printed.set()

    stragglers: set[asyncio.Task[None]] = set()

    @queue.task(name=name())
    async def leaves_a_task_behind() -> None:
        stragglers.add(asyncio.create_task(straggler()))  # runs on after the attempt

    job_id = await leaves_a_task_behind.enqueue()
    assert await drain(queue) == 1
    attempt_over.set()
    await asyncio.wait_for(printed.wait(), HANG_GUARD)
    assert await queue.logs(job_id) == ""
    assert not list(root.glob("jobs/*/*/attempts/*/log")), "no log was created"


@pytest.mark.asyncio
async def test_two_concurrent_async_tasks_logs_do_not_mix(queue: Queue) -> None:
    both = asyncio.Barrier(2)

    @queue.task(name=name())
    async def talk(me: str) -> None:
        await both.wait()
        for i in range(20):
            print(f"{me} {i}")
            logging.getLogger("tests.talk").warning("%s warns %d", me, i)
            await asyncio.sleep(0)

    ann, bob = await talk.enqueue(me="ann"), await talk.enqueue(me="bob")
    assert await drain(queue, concurrency=2) == 2
    for job_id, me, other in ((ann, "ann", "bob"), (bob, "bob", "ann")):
        text = await queue.logs(job_id)
        assert [line for line in text.splitlines() if " warns " not in line] == [
            f"{me} {i}" for i in range(20)
        ]
        assert sum(f"{me} warns" in line for line in text.splitlines()) == 20
        assert other not in text
