"""
The worker processes of the benchmark: ``python -m benchmarks.child KIND PARAMS``.

Each kind is one worker set-up; PARAMS is a JSON object. The last line on
stdout is a JSON object: what the worker measured itself (``start``/``end``
wall-clock times around the drain, ``ran``) and its peak RSS (``rss_kb``, from
VmHWM). Serving kinds run until SIGTERM and create the file ``ready`` once
they can claim, so the parent does not time their start-up.
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import sys
import time
import typing

Params = dict[str, typing.Any]


def _fsjobs_worker(p: Params, *, handle_signals: bool = False) -> typing.Any:
    os.environ["FSJOBS_ROOT"] = p["root"]
    import benchmarks.noop  # noqa: F401  (registers the tasks)
    import fsjobs

    queue = fsjobs.Queue(p["root"], p.get("queue", "default"))
    return fsjobs.Worker(queue, concurrency=p.get("concurrency", 10), handle_signals=handle_signals)


async def fsjobs_drain(p: Params) -> Params:
    """One worker at concurrency 10 until its queue has no due job (W2)."""
    worker = _fsjobs_worker(p)
    start = time.time()
    ran = await worker.run_until_empty()
    return {"ran": ran, "start": start, "end": time.time()}


async def fsjobs_serve(p: Params) -> Params:
    """An idle-until-pushed worker, as in production: `Worker.run()` until SIGTERM."""
    worker = _fsjobs_worker(p, handle_signals=True)
    await asyncio.to_thread(pathlib.Path(p["ready"]).touch)
    await worker.run()
    return {"ran": worker.ran}


def limit_drain(p: Params) -> Params:
    from benchmarks.limitq import LimitQueue

    queue = LimitQueue(p["root"], durable=p["durable"])
    start = time.time()
    ran = queue.drain(lambda i: None, share=p.get("share", 0.0))
    return {"ran": ran, "start": start, "end": time.time()}


def limit_serve(p: Params) -> Params:
    from benchmarks.limitq import LimitQueue
    from benchmarks.stamps import write_stamp

    queue = LimitQueue(p["root"], durable=p["durable"])
    pathlib.Path(p["ready"]).touch()
    return {"ran": queue.serve(write_stamp)}


def huey_drain(p: Params) -> Params:
    from benchmarks import hueyq

    return hueyq.drain(p["path"], p["jobs"])


def peak_rss_kb() -> int:
    """
    This process's peak RSS: VmHWM, not getrusage's ru_maxrss, which Linux carries
    across exec from the forking parent (a child of a 55 MB bench would show 55 MB).
    """
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


KINDS: dict[str, typing.Callable[[Params], typing.Any]] = {
    "fsjobs-drain": fsjobs_drain,
    "fsjobs-serve": fsjobs_serve,
    "limit-drain": limit_drain,
    "limit-serve": limit_serve,
    "huey-drain": huey_drain,
}


def main(kind: str, params: str) -> None:
    p = json.loads(params)
    if "stamps" in p:
        os.environ["FSJOBS_BENCH_STAMPS"] = p["stamps"]
    result = KINDS[kind](p)
    if asyncio.iscoroutine(result):
        result = asyncio.run(result)
    result["rss_kb"] = peak_rss_kb()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
