"""
What the commands of the ``fsjobs`` command line share: exit codes, argument
types, and how a job is shown.
"""

from __future__ import annotations

import argparse
import math
import typing

from . import _names
from .errors import InvalidSettings
from .model import state_json
from .queue import Queue
from .states import JobState

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_PROBLEMS = 0, 1, 2, 3, 4

Handler = typing.Callable[[argparse.Namespace], typing.Coroutine[None, None, int]]
Subparsers: typing.TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def add_parser(sub: Subparsers, name: str, help: str) -> argparse.ArgumentParser:
    """A command's parser; it takes ``--root`` after its name as well as before it."""
    p = sub.add_parser(name, help=help)
    p.add_argument(
        "--root", default=argparse.SUPPRESS, help="queue root directory (default: $FSJOBS_ROOT)"
    )
    return p


def state_dict(state: JobState) -> dict[str, typing.Any]:
    """A job's state as JSON (`show --json`, `watch --json`, `ls --json`): `model.state_json`."""
    return state_json(state)


#: The longest duration the command line takes: longer ones are typos (and overflow dates).
MAX_DURATION = 100 * 365.25 * 86400


def duration(text: str) -> float:
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


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value < math.inf:  # also refuses NaN
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text!r}")
    return value


def queue_list(text: str) -> list[str]:
    """``a,b``: the names, in order; empty names (``a,,b``, ``,``) are refused."""
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(
            f"not a list of queue names: {text!r} (try --queues default,emails)"
        )
    for name in names:
        try:
            _names.check_name("queue", name)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return names


async def flow_notes(queue: Queue, names: typing.Iterable[str]) -> list[str]:
    """A line for each of these queues that is paused or capped (for stderr, after a listing)."""
    notes = []
    for name in sorted(set(names)):
        try:
            info = await queue.info(name)
        except InvalidSettings as exc:
            notes.append(f"queue {name} is not served: {exc}")
            continue
        caps = [
            f"{k}={v}" for k, v in (("concurrency", info.concurrency), ("rate", info.rate)) if v
        ]
        if info.paused:
            notes.append(f"queue {name} is paused (fsjobs resume {name})")
        if caps:
            notes.append(f"queue {name} is capped: {' '.join(caps)}")
    return notes
