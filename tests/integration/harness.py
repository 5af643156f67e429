"""
The multi-process test harness: child processes, polling with deadlines, and
small checks shared by the integration tests.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import pathlib
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence

import pytest

import fsjobs
from fsjobs import Job, JobStatus

from .tasks import RECORD

#: Upper bound for anything the tests wait for; generous for a loaded 2-core machine.
DEADLINE = 120.0
#: How long a worker may take to exit after SIGTERM.
EXIT_TIMEOUT = 60.0


# -- child processes ----------------------------------------------------------------


class Children:
    """The processes a test started; the fixture kills whatever is still running."""

    def __init__(self, tmp_path: pathlib.Path, env: dict[str, str]) -> None:
        self.dir = tmp_path / "children"
        self.dir.mkdir()
        self.env = env
        self.procs: list[subprocess.Popen[bytes]] = []
        self.names: dict[int, str] = {}

    def start(self, module: str, *args: str | os.PathLike[str]) -> subprocess.Popen[bytes]:
        name = f"{module.rpartition('.')[2]}-{len(self.procs)}"
        with (
            open(self.dir / f"{name}.out", "wb") as out,
            open(self.dir / f"{name}.err", "wb") as err,
        ):
            proc = subprocess.Popen(
                [sys.executable, "-m", module, *map(str, args)],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )
        self.procs.append(proc)
        self.names[proc.pid] = name
        return proc

    def worker(
        self,
        root: pathlib.Path,
        *,
        concurrency: int = 4,
        queues: tuple[str, ...] = ("default",),
        lease: float = 30.0,
        grace: float = 30.0,
        clock_offset: float = 0.0,
        extra: Sequence[str] = (),
    ) -> subprocess.Popen[bytes]:
        return self.start(
            "tests.integration.worker_main",
            root,
            *extra,
            "--concurrency",
            str(concurrency),
            "--lease",
            str(lease),
            "--grace",
            str(grace),
            *(["--clock-offset", str(clock_offset)] if clock_offset else []),
            "--queues",
            *queues,
        )

    def pusher(
        self, mode: str, root: pathlib.Path, *args: str | os.PathLike[str]
    ) -> subprocess.Popen[bytes]:
        return self.start("tests.integration.pusher", mode, root, *args)

    def stdout(self, proc: subprocess.Popen[bytes]) -> list[str]:
        """The complete lines the process printed so far."""
        text = (self.dir / f"{self.names[proc.pid]}.out").read_text()
        return text.splitlines()[: text.count("\n")]

    def stderr(self, proc: subprocess.Popen[bytes]) -> str:
        return (self.dir / f"{self.names[proc.pid]}.err").read_text()

    def report(self) -> str:
        """Exit codes and the end of each child's stderr, for assertion messages."""
        lines = []
        for p in self.procs:
            lines.append(f"--- {self.names[p.pid]} pid {p.pid} returncode {p.poll()}")
            lines.append(self.stderr(p)[-3000:])
        return "\n".join(lines)

    def check_alive(self, procs: Sequence[subprocess.Popen[bytes]]) -> None:
        dead = [p for p in procs if p.poll() is not None]
        if dead:
            pytest.fail(f"child processes exited early:\n{self.report()}")

    def kill_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
        for p in self.procs:
            p.wait()


async def until(
    check: Callable[[], bool | Awaitable[bool]],
    what: str,
    children: Children,
    alive: Sequence[subprocess.Popen[bytes]] = (),
    timeout: float = DEADLINE,
) -> None:
    """Poll `check` until it is true; fail after `timeout` or if a process in `alive` exits."""
    give_up = time.monotonic() + timeout
    while True:
        ok = check()
        if inspect.isawaitable(ok):
            ok = await ok
        if ok:
            return
        children.check_alive(alive)
        if time.monotonic() > give_up:
            pytest.fail(f"timed out after {timeout} s waiting for {what}\n{children.report()}")
        await asyncio.sleep(0.02)


async def wait_registered(
    root: pathlib.Path, children: Children, workers: list[subprocess.Popen[bytes]]
) -> None:
    """Wait until each worker holds its lock file ``workers/<host>-<pid>-<random>.lock``."""

    def registered() -> bool:
        names = os.listdir(root / "workers") if (root / "workers").exists() else []
        return all(any(f"-{w.pid}-" in n for n in names) for w in workers)

    await until(registered, "the workers to register", children, workers)


def stop_workers(children: Children, workers: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM the workers; each must exit on its own with status 0."""
    for w in workers:
        w.send_signal(signal.SIGTERM)
    for w in workers:
        try:
            w.wait(timeout=EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"worker {w.pid} did not exit after SIGTERM\n{children.report()}")
    assert [w.returncode for w in workers] == [0] * len(workers), children.report()


def record_job(
    log: pathlib.Path, n: int, *, priority: int = 0, unique_key: str | None = None
) -> Job:
    return Job(
        func=RECORD, kwargs={"log": str(log), "n": n}, priority=priority, unique_key=unique_key
    )


async def nonzero_counts(queue: fsjobs.Queue, q: str | None = None) -> dict[JobStatus, int]:
    return {s: n for s, n in (await queue.counts(queue=q)).items() if n}


def all_final(queue: fsjobs.Queue, total: int) -> Callable[[], Awaitable[bool]]:
    """A check for `until`: `total` jobs of the queue are final (whatever their outcome)."""

    async def check() -> bool:
        counts = await queue.counts()
        return sum(n for s, n in counts.items() if s.is_final) >= total

    return check
