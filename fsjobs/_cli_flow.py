"""The commands about flow control and schedules: pause, resume, configure, schedules."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import typing

from ._cli_base import EXIT_OK, Handler, Subparsers, add_parser, queue_list
from ._json import JSON
from ._queue_settings import UNSET, Unset, check_concurrency, parse_rate
from ._schedule import Schedule
from ._text import printable
from .errors import InvalidSettings
from .queue import Queue
from .states import QueueInfo


def add_commands(sub: Subparsers) -> dict[str, Handler]:
    for name, text in (
        ("pause", "stop workers on every host from claiming from QUEUE (running jobs finish)"),
        ("resume", "let workers claim from QUEUE again"),
    ):
        p = add_parser(sub, name, text)
        p.add_argument("queue", type=_one_queue, metavar="QUEUE")

    p = add_parser(sub, "configure", "cap QUEUE across all workers and hosts; show its caps")
    p.add_argument("queue", type=_one_queue, metavar="QUEUE")
    p.add_argument(
        "--concurrency",
        type=_concurrency,
        default=UNSET,
        metavar="N|none",
        help="at most N of its jobs running at once; none: no cap",
    )
    p.add_argument(
        "--rate",
        type=_rate,
        default=UNSET,
        metavar="N/s|N/m|N/h|none",
        help="at most N claims per second, minute or hour; none: no cap",
    )
    p.add_argument("--json", action="store_true")

    p = add_parser(sub, "schedules", "the periodic schedules workers keep, last and next tick")
    p.add_argument("--json", action="store_true")
    return {
        "pause": _pause_resume,
        "resume": _pause_resume,
        "configure": _configure,
        "schedules": _schedules,
    }


def _one_queue(text: str) -> str:
    names = queue_list(text)
    if len(names) != 1:
        raise argparse.ArgumentTypeError(f"one queue name, not {text!r}")
    return names[0]


def _concurrency(text: str) -> int | None:
    if text.strip().lower() == "none":
        return None
    try:
        return check_concurrency(int(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _rate(text: str) -> str | None:
    if text.strip().lower() == "none":
        return None
    try:
        return str(parse_rate(text))
    except InvalidSettings as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _info_text(info: QueueInfo) -> str:
    caps = (
        f"concurrency={'none' if info.concurrency is None else info.concurrency} "
        f"rate={'none' if info.rate is None else info.rate}"
    )
    return f"{'paused' if info.paused else 'running'}  {caps}"


async def _pause_resume(args: argparse.Namespace) -> int:
    queue = Queue(args.root)
    if args.command == "pause":
        changed = await queue.pause(args.queue)
        print(f"{args.queue}: paused{'' if changed else ' (already)'}")
    else:
        changed = await queue.resume(args.queue)
        print(f"{args.queue}: resumed{'' if changed else ' (was not paused)'}")
    return EXIT_OK


async def _configure(args: argparse.Namespace) -> int:
    queue = Queue(args.root)
    concurrency: int | Unset | None = args.concurrency
    rate: str | Unset | None = args.rate
    if concurrency is UNSET and rate is UNSET:
        info = await queue.info(args.queue)  # nothing to change: show what is
    else:
        info = await queue.configure(args.queue, concurrency=concurrency, rate=rate)
    if args.json:
        print(json.dumps({"queue": args.queue, **_info_json(info)}, indent=2))
    else:
        print(f"{args.queue}: {_info_text(info)}")
    return EXIT_OK


def _info_json(info: QueueInfo) -> dict[str, JSON]:
    return {"paused": info.paused, "concurrency": info.concurrency, "rate": info.rate}


async def _schedules(args: argparse.Namespace) -> int:
    queue = Queue(args.root)
    now = queue.clock.now()
    rows = [
        await _schedule_row(queue, name, body, now)
        for name, body in await queue.io(queue.store.schedules)
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    if not rows:
        print("no schedules: no worker has kept one under this root yet")
    for row in rows:
        if "problem" in row:
            print(f"{printable(row['name'])}: {printable(row['problem'])}")
            continue
        print(
            printable(
                f"{row['name']}: {row['schedule']} ({row['timezone']}) -> queue {row['queue']}"
                f"  last tick: {row['last_tick'] or 'none found'}"
                f"  next tick: {row['next_tick'] or 'none'}"
            )
        )
    return EXIT_OK


async def _schedule_row(
    queue: Queue, name: str, body: dict[str, JSON] | str, now: dt.datetime
) -> dict[str, typing.Any]:
    """One schedule as ``fsjobs schedules`` shows it; its next tick computed now."""
    if isinstance(body, str):
        return {"name": name, "problem": body}
    try:
        every = body.get("every")
        cron = body.get("cron")
        timezone = body.get("timezone")
        schedule = Schedule(
            cron=cron if isinstance(cron, str) else None,
            every=every if isinstance(every, int) else None,
            timezone=timezone if isinstance(timezone, str) else "UTC",
        )
    except InvalidSettings as exc:
        return {"name": name, "problem": f"periodic/{name}.json: {exc}"}
    last = await queue.io(queue.store.last_tick, name, schedule, now)
    following = schedule.following(now)
    return {
        "name": name,
        "schedule": schedule.describe(),
        "timezone": schedule.timezone,
        "queue": body.get("queue"),
        "task": body.get("task"),
        "catch_up": body.get("catch_up"),
        "last_tick": None if last is None else last.isoformat(),
        "next_tick": None if following is None else following.isoformat(),
        "written_by": body.get("worker"),
        "written_at": body.get("written_at"),
    }
