"""The commands that run things: worker, and the demo."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from ._cli_base import EXIT_OK, Handler, Subparsers, add_parser, queue_list
from .queue import Queue
from .worker import Worker


def add_commands(sub: Subparsers) -> dict[str, Handler]:
    p = add_parser(sub, "worker", "run a worker for the tasks defined in MODULE...")
    p.add_argument("modules", nargs="+", metavar="MODULE", help="modules that define tasks")
    p.add_argument(
        "--queues",
        default=["default"],
        type=queue_list,
        metavar="Q[,Q...]",
        help="comma-separated queue names (default: default)",
    )
    p.add_argument("--concurrency", type=int, default=10)
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
    queue = Queue(args.root, queues[0])
    worker = Worker(
        queue, queues, args.concurrency, allow_import=args.allow_import, handle_signals=True
    )
    if args.until_empty:
        ran = await worker.run_until_empty()
        print(f"ran {ran} jobs")
    else:
        await worker.run()
    return EXIT_OK


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
