"""
A worker process for the executor tests::

    python -m tests.integration.exec_worker ROOT [--executor thread|process]
        [--concurrency N] [--lease S] [--allow-import PREFIX ...]

It runs the plain functions of `tests.integration.exec_tasks` (through
``allow_import``) until SIGTERM, like `worker_main`, with the options the
process executor needs that the ``fsjobs worker`` command does not have
(``--lease``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging

import fsjobs

from .worker_main import remember_early_signals, run_until_signalled


async def serve(args: argparse.Namespace) -> None:
    queue = fsjobs.Queue(args.root)
    try:
        worker = fsjobs.Worker(
            queue,
            concurrency=args.concurrency,
            lease=args.lease,
            executor=args.executor,
            allow_import=args.allow_import,
            handle_signals=True,
        )
        await run_until_signalled(worker)
    finally:
        queue.close()


def main() -> None:
    remember_early_signals()
    parser = argparse.ArgumentParser(prog="python -m tests.integration.exec_worker")
    parser.add_argument("root")
    parser.add_argument("--executor", default="process")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--lease", type=float, default=30.0)
    parser.add_argument("--allow-import", nargs="*", default=["tests.integration.exec_tasks"])
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(message)s")
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
