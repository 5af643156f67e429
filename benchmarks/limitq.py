"""
The "limit" queue: what this disk can do for a durable queue with no features.

push = write a temporary file + fsync + rename into pending/ + fsync pending/;
claim = rename into running/; complete = rename into done/ + fsync done/.
A name starts with the job's due time in milliseconds, so one sorted listing of
pending/ gives the due jobs first, and jobs scheduled far ahead stay there
(that is how a backlog is scheduled ahead here). `durable=False` skips every
fsync: the same queue without the cost of the disk's cache flushes.

It has no retries, priorities, results or crash recovery; it is the yardstick
for the ratios of DESIGN.md section 6, not a queue to use.
"""

from __future__ import annotations

import itertools
import json
import os
import pathlib
import signal
import time
from collections.abc import Callable, Iterable

POLL = 0.01  # seconds between listings when idle, like the peers' limit adapter
FAR_AHEAD_MS = 365 * 24 * 3600 * 1000


class LimitQueue:
    """One queue directory; any number of processes may push and drain it."""

    def __init__(self, root: str | os.PathLike[str], *, durable: bool = True) -> None:
        self.root = pathlib.Path(root)
        self.durable = durable
        self.dirs = {d: self.root / d for d in ("tmp", "pending", "running", "done")}
        for path in self.dirs.values():
            path.mkdir(parents=True, exist_ok=True)
        self._fds = {
            d: os.open(self.dirs[d], os.O_RDONLY | os.O_DIRECTORY) for d in ("pending", "done")
        }
        self._seq = itertools.count()
        self._tag = f"{os.getpid()}"

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)

    def push(self, i: int, *, due_ms: int = 0) -> None:
        """One durable job carrying the number `i`."""
        self._write(i, due_ms)
        self._sync_dir("pending")

    def push_many(self, numbers: Iterable[int], *, due_ms: int = 0) -> None:
        """Several jobs, one directory fsync for all (each file is still fsynced)."""
        for i in numbers:
            self._write(i, due_ms)
        self._sync_dir("pending")

    def drain(self, run: Callable[[int], None], *, share: float = 0.0) -> int:
        """
        Claim and run due jobs until none is left; returns how many this process ran.
        A process starts at `share` (0..1) of each listing, so two drainers do not
        walk the same names in lockstep and lose most renames to each other.
        """
        ran = 0
        while names := self._due():
            start = int(share * len(names))
            for name in itertools.chain(names[start:], names[:start]):
                ran += self._run_one(name, run)
        return ran

    def serve(self, run: Callable[[int], None]) -> int:
        """Drain, then poll every 10 ms, until SIGTERM; returns how many jobs ran."""
        stopping = False

        def stop(*_: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        ran = 0
        while not stopping:
            done = self.drain(run)
            ran += done
            if not done:
                time.sleep(POLL)
        return ran

    # -- the steps ------------------------------------------------------------------

    def _write(self, i: int, due_ms: int) -> None:
        name = f"{due_ms:013d}-{self._tag}-{next(self._seq):09d}"
        tmp = self.dirs["tmp"] / name
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, b'{"func":"noop","kwargs":{"i":%d}}\n' % i)
            if self.durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, self.dirs["pending"] / name)

    def _due(self) -> list[str]:
        now = f"{int(time.time() * 1000):013d}"
        return [n for n in sorted(os.listdir(self.dirs["pending"])) if n[:13] <= now]

    def _run_one(self, name: str, run: Callable[[int], None]) -> int:
        running = self.dirs["running"] / name
        try:
            os.rename(self.dirs["pending"] / name, running)
        except FileNotFoundError:
            return 0  # another process claimed it
        with open(running, "rb") as f:
            i = json.loads(f.read())["kwargs"]["i"]
        run(i)
        os.rename(running, self.dirs["done"] / name)
        self._sync_dir("done")
        return 1

    def _sync_dir(self, which: str) -> None:
        if self.durable:
            os.fsync(self._fds[which])
