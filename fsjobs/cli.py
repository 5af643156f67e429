"""
The ``fsjobs`` command line (also ``python -m fsjobs``).

The root comes from ``--root`` (before or after the command's name) or
``FSJOBS_ROOT``. Read commands take ``--json``. Errors are one line on stderr,
never a traceback. Text that comes from jobs or from the disk is printed
escaped (`fsjobs._text.printable`). The commands live by kind in ``_cli_jobs``,
``_cli_root``, ``_cli_run`` and ``_cli_flow``.

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
import os
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

from . import _cli_flow, _cli_jobs, _cli_root, _cli_run
from ._cli_base import EXIT_FAILED, EXIT_NOT_FOUND, EXIT_USAGE, Handler
from ._cli_run import ModuleMissing
from ._text import printable
from .errors import FsJobsError, JobNotFound


def _version() -> str:
    try:
        return version("fsjobs")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0.0.0"


def parser() -> tuple[argparse.ArgumentParser, dict[str, Handler]]:
    """The argument parser of every command, and each command's handler."""
    top = argparse.ArgumentParser(
        prog="fsjobs",
        description="Background jobs in a directory of plain files.",
        epilog="exit codes: 0 success, 1 operation failed, 2 usage error, 3 no such job, "
        "4 fsck found problems left unrepaired (doctor: 1 when a check fails)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    top.add_argument("--version", action="version", version=f"fsjobs {_version()}")
    top.add_argument(
        "--root",
        default=os.environ.get("FSJOBS_ROOT"),
        help="queue root directory (default: $FSJOBS_ROOT)",
    )
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    handlers: dict[str, Handler] = {}
    for module in (_cli_run, _cli_jobs, _cli_root, _cli_flow):
        handlers.update(module.add_commands(sub))
    sub.add_parser("demo", help="run a demo on a temporary directory")
    return top, handlers


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit code."""
    top, handlers = parser()
    args = top.parse_args(argv)
    if args.command == "demo":
        from ._demo import main as demo

        return demo()
    if not args.root:
        print("fsjobs: no queue root: pass --root DIR or set FSJOBS_ROOT", file=sys.stderr)
        return EXIT_USAGE
    try:
        return asyncio.run(handlers[args.command](args))
    except ModuleMissing as exc:
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
