"""
W6: jobs submitted through ``POST /jobs/{task}`` to one ``fsjobs serve``
process (uvicorn), beside the same pushes made directly with ``queue.push``.

The server runs in its own process without access log, as an application
would run it; the client is httpx on keep-alive connections, in this process.
Two arms each: one request (or push) at a time, and 16 in flight at once.
Every request is timed from send to the answer's last byte; the rates are
jobs / wall time of the whole arm. The ratios say what the HTTP layer costs
(JSON parsing, routing, a thread hop, the request itself) on top of a push.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
import typing

import httpx

import fsjobs
from benchmarks.common import REPO, Samples, Settings, cpu_seconds, log

MODULE, TASK = "benchmarks.noop", "benchmarks.noop"  # the module, and the task it registers
IN_FLIGHT = 16


def measure(s: Settings, samples: Samples) -> None:
    for r in range(s.repeat):
        root = s.base / f"w6-{r}"
        with _server(root) as server:
            asyncio.run(_http(server, s.submits, samples))
        asyncio.run(_direct(s.base / f"w6-direct-{r}", s.submits, samples))


class _server:
    """``fsjobs serve benchmarks.noop`` on a free localhost port, until the block ends."""

    def __init__(self, root: pathlib.Path) -> None:
        self.root = root
        self.url = ""
        self.log = root.parent / f"{root.name}.server.log"  # its stderr, read when a run fails
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> _server:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        env = dict(os.environ, PYTHONPATH=str(REPO), FSJOBS_ROOT=str(self.root))
        argv = [sys.executable, "-m", "fsjobs", "serve", MODULE, "--root", str(self.root)]
        argv += ["--port", str(port), "--no-access-log"]
        with self.log.open("wb") as err:
            self.proc = subprocess.Popen(argv, env=env, cwd=REPO, stderr=err)
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/health").status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("fsjobs serve did not start")
            time.sleep(0.05)

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)
        if exc_type is not None:  # the scratch directory goes at the end: show why here
            tail = self.log.read_text(errors="replace")[-4000:]
            code = self.proc.returncode
            sys.stderr.write(f"fsjobs serve exited {code}; its stderr ends:\n{tail}\n")


async def _http(server: _server, n: int, samples: Samples) -> None:
    assert server.proc is not None
    limits = httpx.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT)
    async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=60) as client:
        for _ in range(20):  # warm up: connections, imports, the first root opening
            (await client.post(f"/jobs/{TASK}", json={})).raise_for_status()
        for flight, key in ((1, "w6.http.submit1"), (IN_FLIGHT, f"w6.http.submit{IN_FLIGHT}")):

            async def submit() -> None:
                for attempt in range(3):  # as a client would; each failure is counted
                    try:
                        r = await client.post(f"/jobs/{TASK}", json={})
                        break
                    except httpx.TransportError as exc:
                        samples.count("errors.http")
                        tail = server.log.read_text(errors="replace")[-2000:]
                        log(f"w6: POST got no answer ({exc!r}); the server's stderr ends:\n{tail}")
                        if attempt == 2:
                            raise
                if r.status_code != 201:
                    raise RuntimeError(f"POST /jobs/{TASK}: {r.status_code} {r.text}")

            cpu = cpu_seconds(server.proc.pid)
            rate, durations = await _arm(submit, n, flight)
            server_ms = (cpu_seconds(server.proc.pid) - cpu) / n * 1000
            samples.add(key, rate)
            samples.add_percentiles(f"{key}_latency", durations)
            samples.add(f"{key}_server_cpu", server_ms)
            log(f"w6: {flight} in flight: {rate:.0f}/s, server CPU {server_ms:.2f} ms per POST")


async def _direct(root: pathlib.Path, n: int, samples: Samples) -> None:
    """The same jobs pushed in this process; its CPU time per push, for the server's."""
    queue = fsjobs.Queue(root)
    job = fsjobs.Job(func=TASK)
    for _ in range(20):
        await queue.push(job)
    for flight, key in ((1, "w6.push.submit1"), (IN_FLIGHT, f"w6.push.submit{IN_FLIGHT}")):

        async def push() -> None:
            await queue.push(job)

        cpu = time.process_time()
        rate, durations = await _arm(push, n, flight)
        samples.add(f"{key}_server_cpu", (time.process_time() - cpu) / n * 1000)
        samples.add(key, rate)
        samples.add_percentiles(f"{key}_latency", durations)
    queue.close()


async def _arm(
    call: typing.Callable[[], typing.Awaitable[None]], n: int, flight: int
) -> tuple[float, list[float]]:
    """`n` calls, `flight` at a time; the rate and each call's duration."""
    durations: list[float] = []
    left = iter(range(n))

    async def lane() -> None:
        for _ in left:
            t = time.perf_counter()
            await call()
            durations.append(time.perf_counter() - t)

    start = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(flight)))
    return n / (time.perf_counter() - start), durations
