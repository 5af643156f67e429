"""What every workload shares: settings, samples, worker processes, percentiles."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import signal
import statistics
import subprocess
import sys
import time
import typing
from collections.abc import Awaitable, Callable, Iterator

REPO = pathlib.Path(__file__).resolve().parent.parent
Params = dict[str, typing.Any]


@dataclasses.dataclass(frozen=True)
class Settings:
    """The sizes of one run: full (DESIGN.md section 6) or --quick."""

    quick: bool
    jobs: int  # W1/W2: jobs pushed and drained
    repeat: int  # W1/W2/W4: runs whose median is reported
    pickups: int  # W3: jobs pushed 20 ms apart to an idle worker
    idle: float  # W3: seconds over which an idle worker's CPU time is taken
    backlog: int  # W4: jobs waiting while others are pushed and drained
    backlog_jobs: int  # W4: jobs pushed and drained beside the backlog
    stream: int  # W5: jobs pushed one at a time while two workers drain
    submits: int  # W6: jobs submitted over HTTP, and pushed directly, per arm
    base: pathlib.Path  # scratch directory for the queues (under --dir)
    base_b: pathlib.Path | None  # the same directory through --dir-b, if given
    stamps: pathlib.Path  # local scratch directory for start times

    @classmethod
    def make(cls, quick: bool, sizes: dict[str, int | None], **paths: typing.Any) -> Settings:
        """QUICK or FULL, with the sizes given on the command line (not None) instead."""
        chosen: dict[str, typing.Any] = dict(QUICK if quick else FULL)
        chosen.update({k: v for k, v in sizes.items() if v is not None})
        return cls(quick=quick, **chosen, **paths)


FULL = {"jobs": 10_000, "repeat": 3, "pickups": 200, "idle": 10.0}
FULL |= {"backlog": 100_000, "backlog_jobs": 1000, "stream": 2000, "submits": 5000}
QUICK = {"jobs": 1500, "repeat": 1, "pickups": 50, "idle": 2.0}
QUICK |= {"backlog": 5000, "backlog_jobs": 300, "stream": 500, "submits": 1000}


class Samples:
    """Every measured value by key; a figure is the median of its samples."""

    def __init__(self) -> None:
        self.values: dict[str, list[float]] = {}
        self.counts: dict[str, int] = {"errors.push": 0, "errors.http": 0}

    def add(self, key: str, value: float) -> None:
        self.values.setdefault(key, []).append(value)

    def add_percentiles(self, key: str, seconds: list[float]) -> None:
        """p50, p95 and p99 of `seconds`, in milliseconds, under `key.p50` and so on."""
        for name, value in percentiles(seconds).items():
            self.add(f"{key}.{name}", value * 1000)

    def count(self, key: str) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1

    def medians(self) -> dict[str, float]:
        """Each figure's median, and the counts as they are."""
        return {k: statistics.median(v) for k, v in self.values.items()} | self.counts


async def retried(push: Callable[[], Awaitable[object]], samples: Samples) -> None:
    """
    One push as an application would make it: tried again if it raises OSError
    (fsjobs.StoreError is one). Every failure is counted ("errors.push") and
    shown in the table, rather than ending a ten-minute run.
    """
    for attempt in range(3):
        try:
            await push()
            return
        except OSError as exc:
            samples.count("errors.push")
            log(f"push failed ({exc}); {'giving up' if attempt == 2 else 'trying again'}")
            if attempt == 2:
                raise


def log(message: str) -> None:
    """Progress, on stderr so that stdout is the table alone."""
    print(message, file=sys.stderr, flush=True)


def percentiles(values: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": statistics.median(values), "p95": cuts[94], "p99": cuts[98]}


# -- worker processes -------------------------------------------------------------


def spawn(kind: str, **params: typing.Any) -> subprocess.Popen[str]:
    """Start `python -m benchmarks.child KIND PARAMS` (see child.py)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen(
        [sys.executable, "-m", "benchmarks.child", kind, json.dumps(params, default=str)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )


def outcome(proc: subprocess.Popen[str], timeout: float = 900) -> Params:
    """The JSON line a child printed last; raises if it failed."""
    out, _ = proc.communicate(timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{proc.args[3]} worker failed with exit code {proc.returncode}")
    result: Params = json.loads(out.strip().splitlines()[-1])
    return result


def drain_rate(kind: str, jobs: int, params: list[Params]) -> tuple[float, list[Params]]:
    """
    Start one drainer per entry of `params` at once; jobs/s from the first
    drainer's start to the last one's end (start-up before that is not counted).
    """
    procs = [spawn(kind, **p) for p in params]
    results = [outcome(p) for p in procs]
    ran = sum(r["ran"] for r in results)
    if ran != jobs:
        raise RuntimeError(f"{kind}: ran {ran} jobs, expected {jobs}")
    span = max(r["end"] for r in results) - min(r["start"] for r in results)
    return jobs / span, results


@contextlib.contextmanager
def serving(kind: str, count: int = 1, **params: typing.Any) -> Iterator[list[Params]]:
    """
    `count` serving workers, ready to claim. On exit they get SIGTERM, and the
    list yielded is filled with their results (``ran``, ``rss_kb``, ``pid``).
    """
    ready = [pathlib.Path(f"{params['stamps']}.ready{k}") for k in range(count)]
    procs = [spawn(kind, ready=str(r), **params) for r in ready]
    results: list[Params] = [{"pid": p.pid} for p in procs]
    try:
        deadline = time.monotonic() + 60
        while not all(r.exists() for r in ready):
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError(f"{kind} workers did not start")
            time.sleep(0.01)
        yield results
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p, r in zip(procs, results, strict=True):
            r.update(outcome(p, timeout=120))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads, from /proc."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")
