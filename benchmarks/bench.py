"""
Push and drain rates of fsjobs beside a minimal "limit" queue, in one run.

The limit queue is what this disk can physically do for a durable queue with no
features: enqueue = write + fsync + rename + directory fsync; claim = rename
into running/; complete = rename into done/ + directory fsync. Every figure is
also given as a ratio to the limit queue measured in the same run, because
absolute numbers on a shared machine are noisy.

    python benchmarks/bench.py [--quick] [--jobs N] [--dir DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import fsjobs

NOOP = "benchmarks.noop"


# -- the limit queue ---------------------------------------------------------


def limit_push(root: pathlib.Path, n: int) -> float:
    tmp, pending = root / "tmp", root / "pending"
    tmp.mkdir(parents=True)
    pending.mkdir()
    pfd = os.open(pending, os.O_RDONLY | os.O_DIRECTORY)
    start = time.perf_counter()
    for i in range(n):
        name = f"{i:012d}"
        fd = os.open(tmp / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, b'{"func":"noop","kwargs":{}}\n')
        os.fsync(fd)
        os.close(fd)
        os.rename(tmp / name, pending / name)
        os.fsync(pfd)
    elapsed = time.perf_counter() - start
    os.close(pfd)
    return n / elapsed


def limit_drain(root: pathlib.Path, n: int) -> float:
    pending, running, done = root / "pending", root / "running", root / "done"
    running.mkdir()
    done.mkdir()
    dfd = os.open(done, os.O_RDONLY | os.O_DIRECTORY)
    start = time.perf_counter()
    drained = 0
    while drained < n:
        for name in sorted(os.listdir(pending)):
            os.rename(pending / name, running / name)
            with open(running / name, "rb") as f:
                f.read()
            os.rename(running / name, done / name)
            os.fsync(dfd)
            drained += 1
    elapsed = time.perf_counter() - start
    os.close(dfd)
    return n / elapsed


# -- fsjobs ----------------------------------------------------------------------


async def fsjobs_push(root: pathlib.Path, n: int, batch: int) -> float:
    queue = fsjobs.Queue(root)
    job = fsjobs.Job(func=NOOP)
    start = time.perf_counter()
    if batch == 1:
        for _ in range(n):
            await queue.push(job)
    else:
        for _ in range(n // batch):
            await queue.push_many([job] * batch)
    elapsed = time.perf_counter() - start
    queue.close()
    return n / elapsed


def fsjobs_drain(root: pathlib.Path, n: int, processes: int) -> float:
    """Drain `n` pushed no-op jobs with worker processes; jobs/s from start to empty."""
    env = dict(os.environ, PYTHONPATH=str(pathlib.Path(__file__).resolve().parent.parent))
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker", str(root)],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    spans = []
    for p in procs:
        out, _ = p.communicate(timeout=600)
        if p.returncode != 0:
            raise RuntimeError(f"worker failed with {p.returncode}")
        spans.append(json.loads(out.strip().splitlines()[-1]))
    ran = sum(s["ran"] for s in spans)
    if ran != n:
        raise RuntimeError(f"workers ran {ran} jobs, expected {n}")
    first = min(s["start"] for s in spans)
    last = max(s["end"] for s in spans)
    return n / (last - first)


async def _worker_main(root: str) -> None:
    os.environ["FSJOBS_ROOT"] = root
    import benchmarks.noop  # noqa: F401  (registers the task)

    queue = fsjobs.Queue(root)
    worker = fsjobs.Worker(queue, concurrency=10, handle_signals=False)
    start = time.time()
    ran = await worker.run_until_empty()
    print(json.dumps({"ran": ran, "start": start, "end": time.time()}))


# -- the run -------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 jobs, one repeat")
    parser.add_argument("--jobs", type=int)
    parser.add_argument("--repeat", type=int)
    parser.add_argument("--dir", help="where to make the queues (default: a temp dir)")
    parser.add_argument("--json", help="write the results here too")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        asyncio.run(_worker_main(args.worker))
        return 0
    n = args.jobs or (2000 if args.quick else 10000)
    repeat = args.repeat or (1 if args.quick else 3)
    base = pathlib.Path(tempfile.mkdtemp(prefix="fsjobs-bench-", dir=args.dir))
    results: dict[str, list[float]] = {}

    def record(name: str, value: float) -> None:
        results.setdefault(name, []).append(value)

    try:
        for r in range(repeat):
            run = base / f"run{r}"
            record("limit push", limit_push(run / "limit", n))
            record("limit drain", limit_drain(run / "limit", n))
            record("fsjobs push", asyncio.run(fsjobs_push(run / "one", n, 1)))
            record("fsjobs drain, 1 process", fsjobs_drain(run / "one", n, 1))
            record("fsjobs push_many(100)", asyncio.run(fsjobs_push(run / "b100", n, 100)))
            record("fsjobs drain, 2 processes", fsjobs_drain(run / "b100", n, 2))
            shutil.rmtree(run)
    finally:
        shutil.rmtree(base, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in results.items()}
    ratio_to = {
        "limit push": None,
        "limit drain": None,
        "fsjobs push": "limit push",
        "fsjobs push_many(100)": "limit push",
        "fsjobs drain, 1 process": "limit drain",
        "fsjobs drain, 2 processes": "limit drain",
    }
    print(f"{n} jobs, median of {repeat} run(s), no-op task, concurrency 10")
    print(f"{'workload':<28}{'jobs/s':>10}  ratio")
    for name, value in med.items():
        base_name = ratio_to[name]
        ratio = "" if base_name is None else f"{value / med[base_name]:.2f} x {base_name}"
        print(f"{name:<28}{value:>10,.0f}  {ratio}")
    extra = {
        "push_many(100) / push": med["fsjobs push_many(100)"] / med["fsjobs push"],
        "2 processes / 1": med["fsjobs drain, 2 processes"] / med["fsjobs drain, 1 process"],
    }
    for name, value in extra.items():
        print(f"{name:<28}{value:>10.2f}")
    if args.json:
        pathlib.Path(args.json).write_text(
            json.dumps({"jobs": n, "repeat": repeat, "runs": results, "median": med, **extra})
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
