"""
Tasks the HTTP tests serve. A test registers them on its own queue with
`register` (the registry is per process, the root per test); ``fsjobs serve``
and ``fsjobs worker`` processes import `tests.http.served`, which registers them
on ``$FSJOBS_ROOT``.
"""

from __future__ import annotations

import asyncio
import pathlib

import fsjobs

ADD = "tests.http.add"
ECHO_UPLOAD = "tests.http.echo_upload"
REPORT = "tests.http.report"
BOOM = "tests.http.boom"
GATED = "tests.http.gated"


async def add(ctx: fsjobs.Context, a: int, b: int = 0) -> int:
    """a + b."""
    return a + b


def echo_upload(ctx: fsjobs.Context, name: str) -> dict[str, object]:
    """The size and first bytes of upload `name`, and the same bytes as an output."""
    data = ctx.uploads[name].read_bytes()
    (ctx.output_dir / f"copy-of-{name}").write_bytes(data)
    return {"size": len(data), "head": data[:16].decode("latin-1")}


async def report(ctx: fsjobs.Context, title: str) -> str:
    """Writes an output file named after nothing the client sent."""
    (pathlib.Path(ctx.output_dir) / "report.txt").write_text(f"report: {title}\n")
    await ctx.progress(100, "written")
    return "ok"


async def boom(ctx: fsjobs.Context, message: str) -> None:
    """Prints `message` (into the attempt's log), then fails with it."""
    print(f"about to fail: {message}")
    raise ValueError(message)


async def gated(ctx: fsjobs.Context, gate: str) -> str:
    """Reports 30 %, then waits until the file `gate` exists (a test opens it), then ends."""
    await ctx.progress(30, "waiting for the gate")
    while not pathlib.Path(gate).exists():
        await asyncio.sleep(0.02)
    return "through"


def register(queue: fsjobs.Queue) -> None:
    """Register every task above on `queue` (replacing an earlier test's registration)."""
    for name, fn in (
        (ADD, add),
        (ECHO_UPLOAD, echo_upload),
        (REPORT, report),
        (BOOM, boom),
        (GATED, gated),
    ):
        queue.task(name=name)(fn)
