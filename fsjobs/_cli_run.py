"""The commands that run things: worker, and the demo."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from ._cli_base import EXIT_OK, Handler, Subparsers, add_parser, positive_int, queue_list
from .queue import Queue
from .worker import Worker


def add_commands(sub: Subparsers) -> dict[str, Handler]:
    p = add_parser(sub, "worker", "run a worker for the tasks defined in MODULE...")
    p.add_argument("modules", nargs="+", metavar="MODULE", help="modules that define tasks")
    p.add_argument(
        "--queues",
        default=["default"],
        type=queues_arg,
        metavar="Q[,Q...]|Q=N[,Q=N...]",
        help="comma-separated queue names (default: default), or name=N pairs that cap how "
        "many jobs of each queue run at once (a=10,b=2)",
    )
    p.add_argument(
        "--concurrency",
        type=positive_int,
        default=None,
        help="the most jobs running at once (default: 10, or the sum of the Q=N caps)",
    )
    p.add_argument(
        "--executor",
        choices=["thread", "process"],
        default="thread",
        help="where sync tasks that name no executor run (default: thread)",
    )
    p.add_argument("--until-empty", action="store_true", help="exit when no job is due")
    p.add_argument(
        "--allow-import",
        action="append",
        default=[],
        metavar="PREFIX",
        help="also import task modules named in jobs that start with PREFIX",
    )
    p.add_argument("-v", "--verbose", action="store_true")
    return {"worker": _worker}


async def _worker(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    sys.path.insert(0, os.getcwd())
    for module in args.modules:
        _import_task_module(module)
    queues = args.queues
    queue = Queue(args.root, next(iter(queues)))
    worker = Worker(
        queue,
        queues,
        args.concurrency,
        allow_import=args.allow_import,
        handle_signals=True,
        executor=args.executor,
    )
    if args.until_empty:
        ran = await worker.run_until_empty()
        print(f"ran {ran} jobs")
    else:
        await worker.run()
    return EXIT_OK


def queues_arg(text: str) -> list[str] | dict[str, int]:
    """``a,b`` (names) or ``a=10,b=2`` (names with per-queue caps), not a mix."""
    entries = [entry.strip() for entry in text.split(",")]
    if not any("=" in e for e in entries):
        return queue_list(text)
    if not all("=" in e for e in entries):
        raise argparse.ArgumentTypeError(
            f"give every queue a cap or none: {text!r} (try --queues default=10,video=2)"
        )
    caps: dict[str, int] = {}
    for entry in entries:
        name, _, number = entry.partition("=")
        (name,) = queue_list(name)
        if name in caps:
            raise argparse.ArgumentTypeError(f"queue {name!r} is given twice in {text!r}")
        try:
            caps[name] = positive_int(number.strip())
        except argparse.ArgumentTypeError as exc:
            raise argparse.ArgumentTypeError(f"queue {name!r}: {exc}") from None
    return caps


class ModuleMissing(ImportError):
    """A task module named on the command line does not exist (a usage error)."""


def _import_task_module(module: str) -> None:
    """Import a module named on the command line: ImportError becomes one clear line."""
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module == exc.name or module.startswith(f"{exc.name}.")):
            raise ModuleMissing(
                f"no task module {module!r} (is it on PYTHONPATH or in this directory?)"
            ) from None
        raise ImportError(f"importing task module {module!r} failed: {exc}") from None
    except ImportError as exc:
        raise ImportError(f"importing task module {module!r} failed: {exc}") from None
