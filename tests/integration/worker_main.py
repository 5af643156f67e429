"""
A worker process for the integration tests::

    python -m tests.integration.worker_main ROOT [--concurrency N] [--queues Q ...] [--lease S]
        [--grace S] [--clock-offset S] [--tick-every S --tick-log PATH]

It registers the tasks of `tests.integration.tasks` and runs a `Worker` until
SIGTERM (or SIGINT), which the Worker itself handles: it stops claiming, lets
running jobs finish, and `run()` returns, so the process exits with status 0.

The Worker installs its signal handlers only once it is serving. A SIGTERM that
arrives before that is remembered here and passed on with `Worker.stop()`, so a
test may stop a worker as soon as its lock file ``ROOT/workers/*-<pid>-*.lock``
exists and still expect a clean exit.

``--clock-offset S`` runs the Queue and the Worker with a wall clock S seconds
ahead of this host's (behind, if negative) and the host's real monotonic clock:
a host whose clock is wrong, for the clock-skew tests of ``tests/sharedfs``.

``--tick-every S --tick-log PATH`` also registers the periodic task of
`flow_tasks` (every S seconds, logging to PATH): the worker keeps its schedule.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import signal

import fsjobs
from fsjobs._clock import SYSTEM_CLOCK, Clock

from . import flow_tasks, tasks

_early_signal = False


def _remember(signum: int, frame: object) -> None:
    global _early_signal
    _early_signal = True


def remember_early_signals() -> None:
    """Until the Worker installs its own handlers, remember SIGTERM/SIGINT here."""
    signal.signal(signal.SIGTERM, _remember)
    signal.signal(signal.SIGINT, _remember)


async def run_until_signalled(worker: fsjobs.Worker) -> None:
    """Run the worker; a signal that came before it was serving stops it too."""
    run = asyncio.ensure_future(worker.run())
    while not run.done():
        if _early_signal:
            worker.stop()  # repeated until run() has started and sees it
        await asyncio.wait([run], timeout=0.05)
    await run


class SkewedClock:
    """This host's clocks, but a wall clock `offset` seconds off (monotonic stays real)."""

    def __init__(self, offset: float) -> None:
        self.offset = dt.timedelta(seconds=offset)

    def now(self) -> dt.datetime:
        return SYSTEM_CLOCK.now() + self.offset

    def monotonic(self) -> float:
        return SYSTEM_CLOCK.monotonic()


async def serve(
    root: str,
    queues: list[str],
    concurrency: int,
    lease: float,
    grace: float,
    clock_offset: float = 0.0,
    tick_every: float | None = None,
    tick_log: str | None = None,
) -> None:
    clock: Clock = SkewedClock(clock_offset) if clock_offset else SYSTEM_CLOCK
    queue = fsjobs.Queue(root, name=queues[0], clock=clock)
    try:
        tasks.register(queue)
        flow_tasks.register(queue)
        if tick_every is not None and tick_log is not None:
            flow_tasks.register_tick(queue, tick_every, tick_log)
        worker = fsjobs.Worker(
            queue,
            queues=queues,
            concurrency=concurrency,
            lease=lease,
            grace_period=grace,
            clock=clock,
            handle_signals=True,
        )
        await run_until_signalled(worker)
    finally:
        queue.close()


def main(argv: list[str] | None = None) -> None:
    remember_early_signals()
    parser = argparse.ArgumentParser(prog="python -m tests.integration.worker_main")
    parser.add_argument("root")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--queues", nargs="+", default=["default"])
    parser.add_argument("--lease", type=float, default=30.0)
    parser.add_argument("--grace", type=float, default=30.0)
    parser.add_argument(
        "--clock-offset", type=float, default=0.0, help="seconds added to the wall clock"
    )
    parser.add_argument("--tick-every", type=float, help="keep a periodic task of this period")
    parser.add_argument("--tick-log", help="where the periodic task logs its runs")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(process)d %(message)s")
    asyncio.run(
        serve(
            args.root,
            args.queues,
            args.concurrency,
            args.lease,
            args.grace,
            args.clock_offset,
            args.tick_every,
            args.tick_log,
        )
    )


if __name__ == "__main__":
    main()
