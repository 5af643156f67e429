"""
Executors in one process: which executor a job gets, the configuration errors
refused at decoration or push, per-queue caps, plain functions under
``allow_import``, and ``ctx.progress`` as a plain call. The process executor's
children are real processes; `tests/integration/test_executors.py` covers its
limits and its children's lives.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import pathlib
import subprocess
import sys
import threading
import typing
import uuid
from collections.abc import Iterator

import pytest

import fsjobs
from fsjobs import InvalidJob, Job, JobStatus, Limit, Queue, UnknownTask, Worker, tasks
from fsjobs._cli_run import queues_arg
from fsjobs._pacing import concurrency_of

HANG_GUARD = 60.0
MEMORY = Limit(Limit.Type.MEMORY, 512 * 2**20)


def name() -> str:
    return f"tests.unit.ex.t{uuid.uuid4().hex}"


def where() -> dict[str, typing.Any]:
    """Where it ran: the process and the thread (a top-level function: children import it)."""
    return {"pid": os.getpid(), "thread": threading.current_thread().name}


async def async_where() -> int:
    return os.getpid()


def files(ctx: fsjobs.Context, photo: bytes) -> dict[str, typing.Any]:
    """Read an upload by path and as bytes, write an output, and print (a child's view)."""
    (ctx.output_dir / "size.txt").write_text(str(len(photo)))
    print(f"printed by {os.getpid()}")
    logging.getLogger("tests.child").info("logged at INFO")
    subprocess.run(["echo", "a subprocess wrote this"], check=True)  # descriptor 1
    return {"pid": os.getpid(), "same": ctx.uploads["photo"].read_bytes() == photo}


def report(ctx: fsjobs.Context) -> str:
    """Report progress with a plain call; the result says what the call returned."""
    returned = ctx.progress(40, "plain call")
    return type(returned).__name__


@pytest.fixture
def queue(root: pathlib.Path) -> Iterator[Queue]:
    q = Queue(root, staleness=0)
    yield q
    q.close()


async def drain(queue: Queue, **options: typing.Any) -> int:
    async with asyncio.timeout(HANG_GUARD):
        return await Worker(queue, **options).run_until_empty()


# -- configuration errors, at decoration and at push -----------------------------------------------


def test_a_memory_limit_on_a_thread_or_async_task_is_refused_when_it_is_decorated(
    queue: Queue,
) -> None:
    with pytest.raises(InvalidJob, match="executor='process'"):
        queue.task(name=name(), executor="thread", limits=[MEMORY])(where)
    with pytest.raises(InvalidJob, match="executor='process'"):
        queue.task(name=name(), limits=[MEMORY])(async_where)  # async: the event loop
    with pytest.raises(InvalidJob, match="executor='process'"):
        Job(func="a.b", executor="thread", limits=[MEMORY])
    queue.task(name=name(), limits=[MEMORY])(where)  # sync, no executor: the worker decides


def test_process_or_thread_on_a_coroutine_function_is_refused_at_decoration_and_push(
    queue: Queue,
) -> None:
    for executor in ("process", "thread"):
        with pytest.raises(InvalidJob, match="coroutine function"):
            queue.task(name=name(), executor=executor)(async_where)
        with pytest.raises(InvalidJob, match="coroutine function"):
            Job.from_func(async_where, executor=executor)
    with pytest.raises(InvalidJob, match="not a coroutine function"):
        queue.task(name=name(), executor="async")(where)
    with pytest.raises(InvalidJob, match="executor must be one of"):
        Job(func="a.b", executor="fork")  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_a_job_whose_executor_cannot_run_its_task_is_refused_at_push(queue: Queue) -> None:
    coro = queue.task(name=name())(async_where)
    threaded = queue.task(name=name(), executor="thread")(where)
    with pytest.raises(InvalidJob, match="coroutine function"):
        await queue.push(coro.job().with_executor("process"))
    with pytest.raises(InvalidJob, match="executor='process'"):  # the job takes the task's
        threaded.job().with_limits([MEMORY])
    with pytest.raises(InvalidJob, match="executor='process'"):  # a raw job runs under it too
        await queue.push(Job(func=threaded.task_name, limits=[MEMORY]))
    await queue.push(Job(func=threaded.task_name, limits=[MEMORY], executor="process"))


def test_a_worker_default_executor_is_thread_or_process(queue: Queue) -> None:
    for bad in ("async", "fork"):
        with pytest.raises(ValueError, match="'thread' or 'process'"):
            Worker(queue, executor=bad)


# -- which executor runs a job ---------------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_jobs_executor_wins_then_the_tasks_then_the_workers_default(
    queue: Queue,
) -> None:
    plain = queue.task(name=name())(where)
    in_child = queue.task(name=name(), executor="process")(where)
    cases = {
        "default": (plain.job(), "thread"),
        "job says process": (plain.job().with_executor("process"), "process"),
        "task says process": (in_child.job(), "process"),
        "job overrides task": (in_child.job().with_executor("thread"), "thread"),
        "raw job, task's executor": (Job(func=in_child.task_name), "process"),
    }
    ids = {label: await queue.push(job) for label, (job, _) in cases.items()}
    assert await drain(queue, concurrency=2) == len(cases)
    for label, (_, expected) in cases.items():
        ran = await queue.result(ids[label])
        assert isinstance(ran, dict)
        got = "thread" if ran["pid"] == os.getpid() else "process"
        assert got == expected, label
        if got == "thread":
            assert ran["thread"].startswith("fsjobs-task-")

    # A worker whose default is "process" runs sync tasks that name no executor in a child.
    job_id = await queue.push(plain.job())
    assert await drain(queue, executor="process") == 1
    ran = await queue.result(job_id)
    assert isinstance(ran, dict) and ran["pid"] != os.getpid()


@pytest.mark.asyncio
async def test_a_memory_limit_under_a_thread_default_fails_at_once_naming_the_executor(
    queue: Queue,
) -> None:
    task = queue.task(name=name(), max_attempts=3)(where)
    job_id = await queue.push(task.job().with_limits([MEMORY]))
    assert await drain(queue) == 1
    state = await queue.get(job_id)
    assert (state.status, state.attempts) == (JobStatus.FAILED, 1), "no retries"
    assert state.error is not None and state.error.type == "fsjobs.errors.InvalidJob"
    assert "executor='process'" in state.error.message
    assert "'thread'" in state.error.message


@pytest.mark.asyncio
async def test_the_executor_is_stored_and_the_root_lists_the_feature(
    queue: Queue, root: pathlib.Path
) -> None:
    """An older fsjobs, which would not know the spec key, refuses the root instead."""
    plain = await queue.push(Job(func="a.b"))
    assert "executor" not in json.loads((root / "fsjobs.json").read_text())["features"]
    assert "executor" not in (await queue.history(plain))[0].data["spec"]  # type: ignore[operator]
    job_id = await queue.push(Job(func="a.b", executor="process", limits=[MEMORY]))
    features = json.loads((root / "fsjobs.json").read_text())["features"]
    assert "executor@0.2" in features
    spec = (await queue.history(job_id))[0].data["spec"]
    assert isinstance(spec, dict) and spec["executor"] == "process"
    assert fsjobs._spec.job_from_spec(spec).executor == "process"


@pytest.mark.asyncio
async def test_uploads_output_dir_and_logs_work_in_a_child(queue: Queue) -> None:
    task = queue.task(name=name(), executor="process")(files)
    job_id = await queue.push(task.job().with_uploads({"photo": b"\x89PNG" * 1000}))
    assert await drain(queue) == 1
    state = await queue.get(job_id)
    assert isinstance(state.result, dict) and state.result["same"] is True, state.error
    child = state.result["pid"]
    assert child != os.getpid()
    assert state.outputs == ("size.txt",)
    assert await queue.read_output(job_id, "size.txt") == b"4000"
    lines = (await queue.logs(job_id)).splitlines()
    assert lines[0] == f"printed by {child}"
    assert lines[1].endswith("INFO tests.child: logged at INFO")
    assert lines[2:] == ["a subprocess wrote this"]


@pytest.mark.asyncio
async def test_a_memory_limit_below_the_childs_size_fails_the_attempt_naming_both(
    queue: Queue,
) -> None:
    task = queue.task(
        name=name(), executor="process", max_attempts=2, backoff=fsjobs.Backoff(initial=0)
    )(where)
    job_id = await queue.push(task.job().with_limits([Limit(Limit.Type.MEMORY, 2**20)]))
    assert await drain(queue) == 2
    state = await queue.get(job_id)
    assert (state.status, state.attempts) == (JobStatus.FAILED, 2)
    assert state.error is not None and state.error.type == "MemoryError"
    message = state.error.message
    assert "MEMORY limit of 1048576 bytes" in message, message
    assert "bytes (" in message.split("below the ")[1], "and the child's size"


# -- per-queue concurrency -------------------------------------------------------------------------


def test_a_mapping_of_queues_caps_each_and_the_total_at_their_sum(queue: Queue) -> None:
    worker = Worker(queue, queues={"a": 10, "b": 2})
    assert (worker.queues, worker.queue_limits, worker.concurrency) == (
        ["a", "b"],
        {"a": 10, "b": 2},
        12,
    )
    assert Worker(queue, queues={"a": 10, "b": 2}, concurrency=4).concurrency == 4
    assert concurrency_of(["a", "b"], None) == ({}, 10)
    for bad in ({"a": 0}, {"a": True}, {}):
        with pytest.raises(ValueError):
            concurrency_of(bad, None)
    with pytest.raises(TypeError):
        concurrency_of("a", None)


def test_the_command_line_takes_names_or_names_with_caps() -> None:
    assert queues_arg("a,b") == ["a", "b"]
    assert queues_arg("a=10, b=2") == {"a": 10, "b": 2}
    for bad in ("a=10,b", "a=0", "a=x", "a=1,a=2", "=3"):
        with pytest.raises(argparse.ArgumentTypeError):
            queues_arg(bad)


# -- plain functions -------------------------------------------------------------------------------


def test_allow_import_prefixes_match_whole_dotted_components() -> None:
    assert tasks.covered("pkg.mod.fn", ["pkg"])
    assert tasks.covered("pkg.mod.fn", ["pkg."])
    assert tasks.covered("pkg.mod.fn", ["pkg.mod.fn"])
    assert not tasks.covered("pkgx.fn", ["pkg"])
    assert not tasks.covered("pkg.module.fn", ["pkg.mod"])
    assert not tasks.covered("pkg.mod.fn", [""])


@pytest.fixture
def plain_package(tmp_path: pathlib.Path) -> Iterator[str]:
    """A package on sys.path, not imported yet, with a plain function and a context one."""
    package = f"plainpkg{uuid.uuid4().hex[:8]}"
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / package / "jobs.py").write_text(
        "import fsjobs\n\n"
        "def add(a: int, b: int) -> int:\n    return a + b\n\n"
        "def whoami(ctx: fsjobs.Context, greeting: str) -> str:\n"
        "    return f'{greeting} from attempt {ctx.attempt} of {ctx.job_id}'\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        yield package
    finally:
        sys.path.remove(str(tmp_path))
        for module in [m for m in sys.modules if m.split(".")[0] == package]:
            del sys.modules[module]


@pytest.mark.asyncio
async def test_a_plain_function_runs_only_under_its_prefix(
    queue: Queue, plain_package: str
) -> None:
    add = await queue.push(Job(func=f"{plain_package}.jobs.add", kwargs={"a": 2, "b": 3}))
    hello = await queue.push(
        Job(func=f"{plain_package}.jobs.whoami", kwargs={"greeting": "hi"}, max_attempts=2)
    )
    assert await drain(queue, allow_import=[plain_package[:-1]]) == 2  # not a whole component
    for job_id in (add, hello):
        state = await queue.get(job_id)
        assert (state.status, state.attempts) == (JobStatus.FAILED, 1)
        assert state.error is not None and state.error.type == "fsjobs.errors.UnknownTask"
    assert plain_package not in sys.modules, "nothing was imported"

    for job_id in (add, hello):
        await queue.retry(job_id)
    assert await drain(queue, allow_import=[plain_package]) == 2
    assert await queue.result(add) == 5
    assert await queue.result(hello) == f"hi from attempt 2 of {hello}"


def test_a_plain_function_must_be_importable_by_its_name() -> None:
    def local() -> None: ...

    with pytest.raises(InvalidJob, match="inside a function"):
        Job.from_func(local)
    assert Job.from_func(where).func == "tests.unit.test_executors.where"
    with pytest.raises(UnknownTask):
        tasks.lookup("tests.unit.test_executors.no_such_function", ["tests.unit"])


# -- progress from sync code -----------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("executor", ["thread", "process"])
async def test_a_sync_tasks_progress_is_a_plain_call(queue: Queue, executor: str) -> None:
    task = queue.task(name=name(), executor=executor)(report)
    job_id = await task.enqueue()
    assert await drain(queue) == 1
    state = await queue.get(job_id)
    assert (state.result, state.progress, state.progress_message) == ("Done", 40, "plain call")


def test_progress_returns_an_awaitable_that_has_already_finished() -> None:
    reports: list[tuple[float | None, str | None]] = []
    ctx = fsjobs.Context(
        job_id="j",
        attempt=1,
        max_attempts=1,
        queue="q",
        output_dir_factory=pathlib.Path,
        progress_sink=lambda p, m: reports.append((p, m)),
    )
    done = ctx.progress(10, "recorded at once")
    assert reports == [(10, "recorded at once")]
    assert asyncio.run(_await(done)) is None
    with pytest.raises(ValueError):
        ctx.progress(101)


async def _await(awaitable: typing.Awaitable[None]) -> None:
    return await awaitable
