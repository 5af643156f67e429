"""The commands about jobs: push, show, history, ls, watch, cancel, retry, hold, release."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import pathlib
import shutil
import sys
import typing

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
from ._text import printable
from .model import Job, converter
from .queue import Queue
from .states import JobState, JobStatus


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

    p = add_parser(sub, "show", "show one job")
    p.add_argument("job_id")
    p.add_argument("--json", action="store_true")

    p = add_parser(sub, "history", "every record of one job's journal, oldest first")
    p.add_argument("job_id")
    p.add_argument("--json", action="store_true", help="one JSON object per line")

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
        "history": _history,
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
    )
    print(await Queue(args.root, args.queue).push(job))
    return EXIT_OK


def _upload(text: str) -> tuple[str, pathlib.Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise ValueError(f"--upload takes NAME=PATH, not {text!r}")
    return name, pathlib.Path(path)


async def _show(args: argparse.Namespace) -> int:
    state = await Queue(args.root).get(args.job_id)
    if args.json:
        print(json.dumps(state_dict(state), indent=2))
        return EXIT_OK
    for key, value in state_dict(state).items():
        if value is None or value == () or value == []:
            continue
        if key == "error":
            value = f"{value['type']}: {value['message']}"
        text = value if isinstance(value, str) else json.dumps(value)
        print(f"{key:>16}: {printable(text)}")
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
