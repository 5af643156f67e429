"""The commands about a whole root: stats, prune, fsck, doctor."""

from __future__ import annotations

import argparse
import asyncio
import json

from . import _stats
from ._cli_base import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_PROBLEMS,
    Handler,
    Subparsers,
    add_parser,
    duration,
)
from ._migrate import migrate
from ._text import printable
from .doctor import Level, doctor
from .fsck import format_report, fsck
from .model import converter
from .queue import Queue
from .states import JobStatus


def add_commands(sub: Subparsers) -> dict[str, Handler]:
    p = add_parser(sub, "stats", "jobs per queue and status, oldest pending age, live workers")
    p.add_argument("--json", action="store_true")
    p.add_argument("--prometheus", action="store_true", help="the Prometheus text format")

    p = add_parser(sub, "prune", "delete final jobs that ended long enough ago")
    p.add_argument(
        "--older-than",
        required=True,
        type=duration,
        metavar="AGE",
        help="e.g. 30d, 12h, 15m, 90s (a bare number is seconds)",
    )
    p.add_argument(
        "--status",
        action="append",
        choices=[s.value for s in JobStatus if s.is_final],
        help="repeatable; default: completed, failed, timed_out, cancelled",
    )
    p.add_argument("--queue", default="*", help="a queue name, or * for all (default)")

    p = add_parser(sub, "fsck", "check the root against the format's invariants")
    p.add_argument("--repair", action="store_true", help="also fix what can be fixed safely")
    p.add_argument("--json", action="store_true")

    p = add_parser(sub, "doctor", "check that the root's filesystem and mount suit fsjobs")
    p.add_argument("--json", action="store_true")

    add_parser(sub, "migrate", "convert a format-1 root to format 2 in place (stop workers first)")
    return {
        "stats": _stats_command,
        "prune": _prune,
        "fsck": _fsck,
        "doctor": _doctor,
        "migrate": _migrate_root,
    }


async def _stats_command(args: argparse.Namespace) -> int:
    queue = Queue(args.root)
    stats = await queue.io(_stats.collect, queue.store)
    if args.prometheus:
        print(_stats.prometheus(stats), end="")
        return EXIT_OK
    result = {
        name: {
            "counts": {status.value: n for status, n in info.counts.items() if n},
            "oldest_pending_s": info.oldest_pending_s,
            "paused": info.info.paused,
            "concurrency": info.info.concurrency,
            "rate": info.info.rate,
            **({"settings_problem": info.settings_problem} if info.settings_problem else {}),
        }
        for name, info in stats.queues.items()
    }
    if args.json:
        print(json.dumps({"queues": result, "workers_alive": stats.workers_alive}, indent=2))
    else:
        for name, info in stats.queues.items():
            counts = "  ".join(f"{s.value}={n}" for s, n in info.counts.items() if n) or "empty"
            age = info.oldest_pending_s
            suffix = "" if age is None else f"  (oldest pending: {age:.1f} s)"
            flow = info.describe_flow()
            print(f"{name}: {counts}{suffix}{f'  [{flow}]' if flow else ''}")
            if info.settings_problem:
                print(f"  {printable(info.settings_problem)}")
        print(f"workers alive: {stats.workers_alive}")
    return EXIT_OK


async def _prune(args: argparse.Namespace) -> int:
    queue = Queue(args.root)
    count = await queue.prune(args.older_than, args.status, queue=args.queue)
    print(f"pruned {count} jobs")
    return EXIT_OK


async def _fsck(args: argparse.Namespace) -> int:
    queue = Queue(args.root)
    report = await queue.io(fsck, queue.store, repair=args.repair)
    if args.json:
        print(json.dumps(converter.unstructure(report), indent=2))
    else:
        print(format_report(report))
    return EXIT_OK if report.ok else EXIT_PROBLEMS


async def _doctor(args: argparse.Namespace) -> int:
    queue = Queue(args.root)
    checks = await queue.io(doctor, queue.store)
    if args.json:
        print(json.dumps(converter.unstructure(checks), indent=2))
    for check in [] if args.json else checks:
        print(f"{check.level.value:<5} {check.name}: {printable(check.detail)}")
    return EXIT_FAILED if any(c.level is Level.FAIL for c in checks) else EXIT_OK


async def _migrate_root(args: argparse.Namespace) -> int:
    done = await asyncio.to_thread(migrate, args.root)
    print(
        f"migrated {printable(args.root)}: {done.converted} jobs converted, {done.already} already"
    )
    return EXIT_OK
