"""The commands that run things: worker and serve (the demo lives in ``_demo``)."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys

from ._cli_base import EXIT_OK, Handler, Subparsers, add_parser, positive_int, queue_list
from .queue import Queue
from .tasks import registered
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

    p = add_parser(sub, "serve", "serve the HTTP API and dashboard for the tasks in MODULE...")
    p.add_argument("modules", nargs="+", metavar="MODULE", help="modules that define tasks")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default: 8000)")
    p.add_argument(
        "--host",
        help="address to bind (default: 127.0.0.1 without a token, 0.0.0.0 with one)",
    )
    p.add_argument(
        "--token-file",
        metavar="FILE",
        type=argparse.FileType("r", encoding="utf-8"),
        help="a file holding the token every request must carry (Authorization: Bearer)",
    )
    p.add_argument(
        "--no-access-log", action="store_true", help="do not log a line for each request"
    )
    return {"worker": _worker, "serve": _serve}


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


async def _serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from .http import create_app
    except ImportError as exc:
        raise ImportError(
            f"fsjobs serve needs the http extra: pip install 'fsjobs[http]' ({exc})"
        ) from None
    token = None
    if args.token_file is not None:  # opened by argparse: the operator's file, not the root's
        with args.token_file as f:
            token = f.read().strip()
        if not token:
            raise ValueError(f"the token file {args.token_file.name} is empty")
    host = args.host or ("0.0.0.0" if token else "127.0.0.1")  # noqa: S104 - with a token only
    if token is None and host not in ("127.0.0.1", "::1", "localhost"):
        print(
            f"fsjobs: warning: serving {host} without a token: anyone who reaches it can "
            "push, cancel and read jobs (use --token-file)",
            file=sys.stderr,
        )
    sys.path.insert(0, os.getcwd())
    for module in args.modules:
        _import_task_module(module)
    queue = Queue(args.root)
    served = sorted(
        t.task_name for t in registered() if getattr(t.queue, "root", None) == queue.root
    )
    if not served:
        print(
            f"fsjobs: warning: no task of {' '.join(args.modules)} is registered on a queue of "
            f"{queue.root}: every submission will be 404",
            file=sys.stderr,
        )
    else:
        print(f"fsjobs: serving {len(served)} tasks: {', '.join(served)}", file=sys.stderr)
    app = create_app(queue, token=token)
    config = uvicorn.Config(
        app,
        host=host,
        port=args.port,
        lifespan="off",
        log_level="info",
        access_log=not args.no_access_log,
        # an event stream stays open until its job ends: do not wait for it for ever
        timeout_graceful_shutdown=GRACE,
    )
    # uvicorn stops gracefully on SIGTERM/SIGINT, then raises the signal again for the
    # handler that was there before it: this one, so that a clean stop exits 0 (as a worker).
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _stopped)
    await uvicorn.Server(config).serve()
    queue.close()
    return EXIT_OK


#: seconds `serve` waits for open requests (event streams) when it stops
GRACE = 5


def _stopped(signum: int, frame: object) -> None:
    """The handler uvicorn hands a stop signal back to once it has shut down: nothing to do."""


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
