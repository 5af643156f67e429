"""
The ``fsjobs`` command line (also ``python -m fsjobs``).

The root comes from ``--root`` or ``FSJOBS_ROOT``. Read commands take
``--json``. Errors are one line on stderr, never a traceback. Text that comes
from jobs or from the disk is printed escaped (`fsjobs._text.printable`).

Exit codes:
  0  success
  1  the operation failed (an fsjobs error: bad input, unusable directory, ...);
     also ``worker`` when a task module exists but importing it fails
  2  usage error (bad arguments); also ``worker`` when a task module named on the
     command line does not exist
  3  no such job
  4  fsck found problems it did not repair
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import importlib
import json
import logging
import math
import os
import pathlib
import shutil
import sys
import typing
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

from ._clock import to_ms
from ._json import loads
from ._text import printable
from .doctor import Level, doctor
from .errors import FsJobsError, JobNotFound
from .fsck import format_report, fsck
from .model import Job, converter
from .queue import Queue
from .states import JobState, JobStatus
from .worker import Worker

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_PROBLEMS = 0, 1, 2, 3, 4


def _version() -> str:
    try:
        return version("fsjobs")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0.0.0"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fsjobs",
        description="Background jobs in a directory of plain files.",
        epilog="exit codes: 0 success, 1 operation failed, 2 usage error, 3 no such job, "
        "4 fsck found problems left unrepaired (doctor: 1 when a check fails)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"fsjobs {_version()}")
    parser.add_argument(
        "--root",
        default=os.environ.get("FSJOBS_ROOT"),
        help="queue root directory (default: $FSJOBS_ROOT)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("worker", help="run a worker for the tasks defined in MODULE...")
    p.add_argument("modules", nargs="+", metavar="MODULE", help="modules that define tasks")
    p.add_argument(
        "--queues",
        default=["default"],
        type=_queue_list,
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

    p = sub.add_parser("push", help="push a job for TASK")
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

    p = sub.add_parser("show", help="show one job")
    p.add_argument("job_id")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("history", help="every record of one job's journal, oldest first")
    p.add_argument("job_id")
    p.add_argument("--json", action="store_true", help="one JSON object per line")

    p = sub.add_parser("ls", help="list jobs, newest first")
    p.add_argument("--status", choices=[s.value for s in JobStatus])
    p.add_argument("--queue", default="*", help="a queue name, or * for all (default)")
    p.add_argument("--limit", type=_positive_int, default=50, help="at most this many (>= 1)")
    p.add_argument("--cursor", help="go on after this id (the cursor the last page ended with)")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("stats", help="jobs per queue and status, oldest pending age, live workers")
    p.add_argument("--json", action="store_true")
    p.add_argument("--prometheus", action="store_true", help="the Prometheus text format")

    p = sub.add_parser(
        "watch", help="follow a job until it ends: a live bar in a terminal, else a line per change"
    )
    p.add_argument("job_id")
    p.add_argument(
        "--interval", type=_positive_seconds, default=0.5, help="seconds between looks (> 0)"
    )
    p.add_argument("--timeout", type=float)
    p.add_argument("--json", action="store_true", help="one JSON object per line")

    for name, text in (
        ("cancel", "cancel a job (a running one is asked to stop)"),
        ("retry", "run a failed, timed-out or cancelled job again"),
        ("hold", "hold a job that has not started"),
        ("release", "release a held job"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("job_id")
        if name == "retry":
            p.add_argument("--attempts", type=int, default=1, help="how many more attempts")
        if name == "cancel":
            p.add_argument("--timeout", type=float, default=10.0)

    p = sub.add_parser("prune", help="delete final jobs that ended long enough ago")
    p.add_argument(
        "--older-than",
        required=True,
        type=_duration,
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

    p = sub.add_parser("fsck", help="check the root against the format's invariants")
    p.add_argument("--repair", action="store_true", help="also fix what can be fixed safely")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("doctor", help="check that the root's filesystem and mount suit fsjobs")
    p.add_argument("--json", action="store_true")

    sub.add_parser("demo", help="run a demo on a temporary directory")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "demo":
        from ._demo import main as demo

        return demo()
    if not args.root:
        print("fsjobs: no queue root: pass --root DIR or set FSJOBS_ROOT", file=sys.stderr)
        return EXIT_USAGE
    handler = _COMMANDS[args.command]
    try:
        return asyncio.run(handler(args))
    except _ModuleMissing as exc:
        print(f"fsjobs: {printable(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except JobNotFound as exc:
        print(f"fsjobs: {printable(exc)}", file=sys.stderr)
        return EXIT_NOT_FOUND
    except (FsJobsError, ValueError, TypeError, OSError, ImportError) as exc:
        print(f"fsjobs: {printable(exc)}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


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


class _ModuleMissing(ImportError):
    """A task module named on the command line does not exist (a usage error)."""


def _import_task_module(module: str) -> None:
    """Import a module named on the command line: ImportError becomes one clear line."""
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module == exc.name or module.startswith(f"{exc.name}.")):
            raise _ModuleMissing(
                f"no task module {module!r} (is it on PYTHONPATH or in this directory?)"
            ) from None
        raise ImportError(f"importing task module {module!r} failed: {exc}") from None
    except ImportError as exc:
        raise ImportError(f"importing task module {module!r} failed: {exc}") from None


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


def _state_dict(state: JobState) -> dict[str, typing.Any]:
    data: dict[str, typing.Any] = converter.unstructure(state)
    data["duration"] = state.duration
    data["is_done"] = state.is_done
    return data


async def _show(args: argparse.Namespace) -> int:
    state = await Queue(args.root).get(args.job_id)
    if args.json:
        print(json.dumps(_state_dict(state), indent=2))
        return EXIT_OK
    for key, value in _state_dict(state).items():
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
    page = await Queue(args.root).list_jobs(
        args.status, args.limit, queue=args.queue, cursor=args.cursor
    )
    if args.json:
        print(json.dumps([_state_dict(s) for s in page], indent=2))
    else:
        for s in page:
            print(
                f"{s.id}  {s.queue:<12} {s.status.value:<10} {s.attempts}/{s.max_attempts}  "
                f"{printable(s.func)}"
            )
    if page.next_cursor is not None:  # on stderr: stdout stays a clean listing
        print(f"fsjobs: more jobs follow: --cursor {page.next_cursor}", file=sys.stderr)
    return EXIT_OK


async def _stats(args: argparse.Namespace) -> int:
    queue = Queue(args.root)
    store = queue.store
    now_ms = to_ms(queue.clock.now())
    result: dict[str, dict[str, typing.Any]] = {}
    for name in await queue.io(store.queues):
        per_status = await queue.counts(queue=name)
        oldest = await queue.io(store.oldest_pending_ms, name)
        result[name] = {
            "counts": {status.value: n for status, n in per_status.items() if n},
            "oldest_pending_s": None if oldest is None else max(0, now_ms - oldest) / 1000,
        }
    alive = await queue.io(store.workers_alive)
    if args.prometheus:
        print(_prometheus(result, alive), end="")
    elif args.json:
        print(json.dumps({"queues": result, "workers_alive": alive}, indent=2))
    else:
        for name, info in result.items():
            counts = "  ".join(f"{k}={v}" for k, v in info["counts"].items()) or "empty"
            age = info["oldest_pending_s"]
            suffix = "" if age is None else f"  (oldest pending: {age:.1f} s)"
            print(f"{name}: {counts}{suffix}")
        print(f"workers alive: {alive}")
    return EXIT_OK


def _prometheus(result: dict[str, dict[str, typing.Any]], alive: int) -> str:
    """The Prometheus text exposition format (version 0.0.4)."""
    lines = [
        "# HELP fsjobs_jobs Jobs by queue and status.",
        "# TYPE fsjobs_jobs gauge",
    ]
    for name, info in result.items():
        for status in JobStatus:
            lines.append(
                f'fsjobs_jobs{{queue="{name}",status="{status.value}"}} '
                f"{info['counts'].get(status.value, 0)}"
            )
    lines += [
        "# HELP fsjobs_oldest_pending_seconds How long the oldest due job has waited.",
        "# TYPE fsjobs_oldest_pending_seconds gauge",
    ]
    for name, info in result.items():
        age = info["oldest_pending_s"]
        lines.append(f'fsjobs_oldest_pending_seconds{{queue="{name}"}} {age or 0}')
    lines += [
        "# HELP fsjobs_workers_alive Workers holding their lock file.",
        "# TYPE fsjobs_workers_alive gauge",
        f"fsjobs_workers_alive {alive}",
    ]
    return "\n".join(lines) + "\n"


async def _watch(args: argparse.Namespace) -> int:
    queue = Queue(args.root)
    bar = not args.json and sys.stdout.isatty()
    state = None
    async for state in queue.watch(args.job_id, interval=args.interval, timeout=args.timeout):
        if args.json:
            print(json.dumps(_state_dict(state)), flush=True)
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


#: The longest duration the command line takes: longer ones are typos (and overflow dates).
MAX_DURATION = 100 * 365.25 * 86400


def _duration(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    number, unit = (text[:-1], text[-1]) if text and text[-1] in units else (text, "s")
    try:
        value = float(number) * units[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (try 30d, 12h, 90s)") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (try 30d, 12h, 90s)")
    if value < 0:
        raise argparse.ArgumentTypeError("a duration cannot be negative")
    if value > MAX_DURATION:
        raise argparse.ArgumentTypeError(f"{text!r} is more than 100 years")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value < math.inf:  # also refuses NaN
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text!r}")
    return value


def _queue_list(text: str) -> list[str]:
    """``a,b``: the names, in order; empty names (``a,,b``, ``,``) are refused."""
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(
            f"not a list of queue names: {text!r} (try --queues default,emails)"
        )
    return names


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


_COMMANDS: dict[str, typing.Callable[[argparse.Namespace], typing.Coroutine[None, None, int]]] = {
    "worker": _worker,
    "push": _push,
    "show": _show,
    "history": _history,
    "ls": _ls,
    "stats": _stats,
    "watch": _watch,
    "cancel": _operate,
    "retry": _operate,
    "hold": _operate,
    "release": _operate,
    "prune": _prune,
    "fsck": _fsck,
    "doctor": _doctor,
}
