"""
A worker process for the integration tests::

    python -m tests.integration.worker_main ROOT [--concurrency N] [--queues Q ...] [--lease S]

It registers the tasks of `tests.integration.tasks` and runs a `Worker` until
SIGTERM (or SIGINT), which the Worker itself handles: it stops claiming, lets
running jobs finish, and `run()` returns, so the process exits with status 0.

The Worker installs its signal handlers only once it is serving. A SIGTERM that
arrives before that is remembered here and passed on with `Worker.stop()`, so a
test may stop a worker as soon as its lock file ``ROOT/workers/*-<pid>-*.lock``
exists and still expect a clean exit.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

import fsjobs

from . import tasks

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


async def serve(root: str, queues: list[str], concurrency: int, lease: float, grace: float) -> None:
    queue = fsjobs.Queue(root, name=queues[0])
    try:
        tasks.register(queue)
        worker = fsjobs.Worker(
            queue, queues=queues, concurrency=concurrency, lease=lease, grace_period=grace
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
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(process)d %(message)s")
    asyncio.run(serve(args.root, args.queues, args.concurrency, args.lease, args.grace))


if __name__ == "__main__":
    main()
