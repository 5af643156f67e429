"""
The commands about jobs: push, show, history, logs, ls, watch, cancel, retry,
hold, release, and workflows.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import pathlib
import shutil
import sys
import typing

import aiofiles.threadpool

from ._cli_base import (
    EXIT_FAILED,
    EXIT_OK,
    Handler,
    Subparsers,
    add_parser,
    flow_notes,
    positive_int,
    positive_seconds,
    state_dict,
)
from ._json import loads
from ._text import printable, printable_lines
from .errors import JobNotFound
from .model import Job, converter
from .queue import Queue
from .states import JobState, JobStatus, WorkflowState


def add_commands(sub: Subparsers) -> dict[str, Handler]:
    p = add_parser(sub, "push", "push a job for TASK")
    p.add_argument("task", help="the task name, e.g. myapp.tasks.resize")
    p.add_argument("--kwargs", default="{}", help="keyword arguments as a JSON object")
    p.add_argument("--queue", default="default")
    p.add_argument("--priority", type=int, default=0, help="lower runs first")
    p.add_argument("--at", help="scheduled time, ISO 8601 with a timezone")
    p.add_argument("--unique-key")
    p.add_argument("--max-attempts", type=int, default=1)
    p.add_argument("--timeout", type=float)
    p.add_argument(
        "--upload",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="attach a file as upload NAME (repeatable)",
    )
    p.add_argument(
        "--depends-on",
        action="append",
        default=[],
        metavar="ID",
        help="run only once job ID has completed (repeatable)",
    )

    p = add_parser(sub, "show", "show one job (or workflow), with its dependency graph")
    p.add_argument("job_id", help="a job id, or a workflow id")
    p.add_argument("--json", action="store_true")

    p = add_parser(sub, "workflows", "list workflows, newest first")
    p.add_argument("--limit", type=positive_int, default=50, help="at most this many (>= 1)")
    p.add_argument("--json", action="store_true")

    p = add_parser(sub, "history", "every record of one job's journal, oldest first")
    p.add_argument("job_id")
    p.add_argument("--json", action="store_true", help="one JSON object per line")

    p = add_parser(sub, "logs", "what one attempt of a job printed and logged")
    p.add_argument("job_id")
    p.add_argument(
        "--attempt", type=positive_int, help="the attempt's number, from 1 (default: the newest)"
    )
    p.add_argument(
        "-f",
        "--follow",
        action="store_true",
        help="keep printing what the newest attempt writes until the job ends",
    )
    p.add_argument(
        "--interval", type=positive_seconds, default=0.5, help="seconds between looks (> 0)"
    )

    p = add_parser(sub, "ls", "list jobs, newest first")
    p.add_argument("--status", choices=[s.value for s in JobStatus])
    p.add_argument("--queue", default="*", help="a queue name, or * for all (default)")
    p.add_argument("--limit", type=positive_int, default=50, help="at most this many (>= 1)")
    p.add_argument("--cursor", help="go on after this id (the cursor the last page ended with)")
    p.add_argument("--json", action="store_true")

    p = add_parser(
        sub, "watch", "follow a job until it ends: a live bar in a terminal, else a line per change"
    )
    p.add_argument("job_id")
    p.add_argument(
        "--interval", type=positive_seconds, default=0.5, help="seconds between looks (> 0)"
    )
    p.add_argument("--timeout", type=float)
    p.add_argument("--json", action="store_true", help="one JSON object per line")

    for name, text in (
        ("cancel", "cancel a job (a running one is asked to stop)"),
        ("retry", "run a failed, timed-out or cancelled job again"),
        ("hold", "hold a job that has not started"),
        ("release", "release a held job"),
    ):
        p = add_parser(sub, name, text)
        p.add_argument("job_id")
        if name == "retry":
            p.add_argument("--attempts", type=int, default=1, help="how many more attempts")
        if name == "cancel":
            p.add_argument("--timeout", type=float, default=10.0)
    return {
        "push": _push,
        "show": _show,
        "workflows": _workflows,
        "history": _history,
        "logs": _logs,
        "ls": _ls,
        "watch": _watch,
        "cancel": _operate,
        "retry": _operate,
        "hold": _operate,
        "release": _operate,
    }


async def _push(args: argparse.Namespace) -> int:
    kwargs = loads(args.kwargs)
    if not isinstance(kwargs, dict):
        raise ValueError("--kwargs must be a JSON object")
    at = None if args.at is None else dt.datetime.fromisoformat(args.at)
    job = Job(
        func=args.task,
        kwargs=kwargs,
        priority=args.priority,
        scheduled_at=at,
        unique_key=args.unique_key,
        max_attempts=args.max_attempts,
        timeout=args.timeout,
        uploads=dict(_upload(u) for u in args.upload),
        depends_on=args.depends_on,
    )
    print(await Queue(args.root, args.queue).push(job))
    return EXIT_OK


def _upload(text: str) -> tuple[str, pathlib.Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise ValueError(f"--upload takes NAME=PATH, not {text!r}")
    return name, pathlib.Path(path)


async def _show(args: argparse.Namespace) -> int:
    queue = Queue(args.root)
    try:
        state = await queue.get(args.job_id)
    except JobNotFound:
        try:  # a workflow's id?
            wf = await queue.get_workflow(args.job_id)
        except JobNotFound:
            raise JobNotFound(args.job_id, f"no job or workflow {args.job_id!r}") from None
        if args.json:
            print(json.dumps(converter.unstructure(wf), indent=2))
        else:
            print("\n".join(workflow_graph(wf)))
        return EXIT_OK
    if args.json:
        print(json.dumps(state_dict(state), indent=2))
        return EXIT_OK
    for key, value in state_dict(state).items():
        if value is None or value == () or value == [] or key == "depends_on":
            continue
        if key == "error":
            value = f"{value['type']}: {value['message']}"
        text = value if isinstance(value, str) else json.dumps(value)
        print(f"{key:>16}: {printable(text)}")
    if state.workflow is not None:
        print()
        print("\n".join(workflow_graph(await queue.get_workflow(state.workflow), state.id)))
        return EXIT_OK
    children = await queue.io(queue.store.dependents, state.id)
    for label, ids in (("depends on", state.depends_on), ("dependents", children)):
        for i, job_id in enumerate(ids):
            status = await _status_of(queue, job_id)
            print(f"{label if i == 0 else '':>16}: {job_id} ({status})")
    return EXIT_OK


async def _status_of(queue: Queue, job_id: str) -> str:
    try:
        return (await queue.get(job_id)).status.value
    except JobNotFound:
        return "gone"


def workflow_graph(wf: WorkflowState, mark: str | None = None) -> list[str]:
    """
    The graph of a workflow as text: one line per step, parents first, indented by
    its depth (the longest chain of steps before it), with its status, its id and the
    steps it runs after; `mark` (a job id) is starred.
    """
    depth = wf.depths()
    labels = {n: "  " * depth[n] + ("└─ " if depth[n] else "") + n for n in wf.steps}
    width = max(map(len, labels.values()), default=0)
    lines = [f"workflow {wf.id} {printable(wf.name)}: {wf.status.value}"]
    for name, state in wf.steps.items():
        after = wf.after.get(name, ())
        star = "*" if state.id == mark else " "
        line = f" {star} {labels[name]:<{width}}  {state.status.value:<10} {state.id}"
        lines.append(printable(line + (f"  after {', '.join(after)}" if after else "")))
    return lines


async def _workflows(args: argparse.Namespace) -> int:
    found = await Queue(args.root).list_workflows(args.limit)
    if args.json:
        print(json.dumps([converter.unstructure(wf) for wf in found], indent=2))
        return EXIT_OK
    for wf in found:
        done = sum(1 for s in wf.steps.values() if s.status is JobStatus.COMPLETED)
        print(
            printable(
                f"{wf.id}  {wf.name:<16} {wf.status.value:<10} {done}/{len(wf.steps)} completed"
            )
        )
    return EXIT_OK


async def _history(args: argparse.Namespace) -> int:
    for event in await Queue(args.root).history(args.job_id):
        data: dict[str, typing.Any] = converter.unstructure(event)
        if args.json:
            print(json.dumps(data))
            continue
        attempt = "" if event.attempt is None else f" attempt {event.attempt}"
        fenced = " (fenced: does not count)" if event.fenced else ""
        detail = {k: v for k, v in event.data.items() if k not in ("attempt", "spec", "traceback")}
        error = event.data.get("error")
        if isinstance(error, dict):
            detail["error"] = f"{error.get('type')}: {error.get('message')}"
        line = f"{data['at']}  e{event.epoch:<3} {event.type:<10}{attempt}{fenced}"
        print(printable(line + (f"  {json.dumps(detail)}" if detail else "")))
    return EXIT_OK


async def _logs(args: argparse.Namespace) -> int:
    queue = Queue(args.root)
    if not args.follow:
        sys.stdout.write(printable_lines(await queue.logs(args.job_id, args.attempt)))
        return EXIT_OK
    if args.attempt is not None:
        raise ValueError("--follow follows the newest attempt: leave out --attempt")
    await _follow(queue, args.job_id, args.interval)
    return EXIT_OK


async def _follow(queue: Queue, job_id: str, interval: float) -> None:
    """
    Print the newest attempt's log as it grows, then each newer attempt's, until
    the job is final. The store opens each log and hands out a descriptor;
    aiofiles reads it without blocking the event loop.
    """
    store = queue.store
    attempt = 0
    done: dict[int, int] = {}  # epoch -> bytes printed
    while True:
        final = (await queue.get(job_id)).is_done  # before reading: nothing is missed
        ran = await queue.io(store.log_epochs, job_id)
        newest = max((a for _, a in ran), default=0)
        if newest != attempt:
            if attempt:
                print(f"fsjobs: attempt {newest} started", file=sys.stderr, flush=True)
            attempt = newest
        for epoch, number in ran:
            if number == attempt:
                done[epoch] = await _print_new(queue, job_id, epoch, done.get(epoch, 0), final)
        if final:
            return
        await asyncio.sleep(interval)


async def _print_new(queue: Queue, job_id: str, epoch: int, offset: int, final: bool) -> int:
    """
    Print the whole lines one epoch's log holds past `offset` (everything, once
    the job is `final`); returns the new offset.
    """
    fd = await queue.io(queue.store.open_log_reader, job_id, epoch)
    if fd is None:
        return offset
    f = aiofiles.threadpool.wrap(os.fdopen(fd, "rb"))
    try:
        size = os.fstat(fd).st_size
        if size < offset:  # cut back to its tail: go on from its new end
            print("fsjobs: the log was cut back to its last MiB", file=sys.stderr, flush=True)
            return size
        await f.seek(offset)
        data = await f.read()
    finally:
        await f.close()
    if not final:
        data = data[: data.rfind(b"\n") + 1]  # a line still being written waits
    if data:
        sys.stdout.write(printable_lines(data.decode("utf-8", "replace")))
        sys.stdout.flush()
    return offset + len(data)


async def _ls(args: argparse.Namespace) -> int:
    queue = Queue(args.root)
    page = await queue.list_jobs(args.status, args.limit, queue=args.queue, cursor=args.cursor)
    if args.json:
        print(json.dumps([state_dict(s) for s in page], indent=2))
    else:
        for s in page:
            print(
                f"{s.id}  {s.queue:<12} {s.status.value:<10} {s.attempts}/{s.max_attempts}  "
                f"{printable(s.func)}"
            )
    if page.next_cursor is not None:  # on stderr: stdout stays a clean listing
        print(f"fsjobs: more jobs follow: --cursor {page.next_cursor}", file=sys.stderr)
    names = {s.queue for s in page} if args.queue == "*" else {args.queue}
    for note in await flow_notes(queue, names):
        print(f"fsjobs: {printable(note)}", file=sys.stderr)
    return EXIT_OK


async def _watch(args: argparse.Namespace) -> int:
    queue = Queue(args.root)
    bar = not args.json and sys.stdout.isatty()
    state = None
    async for state in queue.watch(args.job_id, interval=args.interval, timeout=args.timeout):
        if args.json:
            print(json.dumps(state_dict(state)), flush=True)
        elif bar:
            width = shutil.get_terminal_size().columns
            # Redraw one line in place; clear what a longer previous line left.
            print("\r\x1b[K" + printable(_bar_line(state))[: width - 1], end="", flush=True)
        else:
            print(printable(_plain_line(state)), flush=True)
    if bar and state is not None:
        print()
    return EXIT_OK if state is not None and state.status is JobStatus.COMPLETED else EXIT_FAILED


def _plain_line(state: JobState) -> str:
    progress = "" if state.progress is None else f" {state.progress:5.1f}%"
    message = f" {state.progress_message}" if state.progress_message else ""
    return (
        f"{state.status.value:<10} attempt {state.attempts}/{state.max_attempts}{progress}{message}"
    )


def _bar_line(state: JobState, cells: int = 30) -> str:
    """``running   [#########.....................]  30.0% attempt 1/3 message``."""
    done = 100.0 if state.status is JobStatus.COMPLETED else (state.progress or 0.0)
    filled = round(cells * min(max(done, 0.0), 100.0) / 100)
    message = f" {state.progress_message}" if state.progress_message else ""
    return (
        f"{state.status.value:<10}[{'#' * filled}{'.' * (cells - filled)}] {done:5.1f}%"
        f" attempt {state.attempts}/{state.max_attempts}{message}"
    )


async def _operate(args: argparse.Namespace) -> int:
    """cancel, retry, hold, release: one line saying what happened; exit 1 if nothing did."""
    queue = Queue(args.root)
    if args.command == "cancel":
        done = await queue.cancel(args.job_id, timeout=args.timeout)
    elif args.command == "retry":  # raises (exit 1, one line) if the job cannot be retried
        await queue.retry(args.job_id, args.attempts)
        done = True
    elif args.command == "hold":
        done = await queue.hold(args.job_id)
    else:
        done = await queue.release(args.job_id)
    state = await queue.get(args.job_id)
    print(f"{args.job_id}: {state.status.value}")
    return EXIT_OK if done else EXIT_FAILED
