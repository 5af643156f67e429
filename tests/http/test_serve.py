"""
``fsjobs serve`` and ``fsjobs worker`` as real processes: jobs submitted over
real HTTP (JSON and multipart) run in the worker, and their results, outputs
and events come back over HTTP; SIGTERM stops both cleanly.
"""

from __future__ import annotations

import json
import pathlib
import signal
import socket
import subprocess
from collections.abc import Iterator

import httpx
import pytest

from tests.integration.harness import EXIT_TIMEOUT, Children, until

from . import tasks

pytestmark = [pytest.mark.slow, pytest.mark.asyncio]

TOKEN = "serve-test-token-5f2a"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def children(
    tmp_path: pathlib.Path, subprocess_env: dict[str, str], root: pathlib.Path
) -> Iterator[Children]:
    kids = Children(tmp_path, {**subprocess_env, "FSJOBS_ROOT": str(root)})
    try:
        yield kids
    finally:
        kids.kill_all()


def stop(children: Children, procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        p.wait(timeout=EXIT_TIMEOUT)
    assert [p.returncode for p in procs] == [0] * len(procs), children.report()


async def serving(children: Children, url: str, proc: subprocess.Popen[bytes]) -> None:
    async def up() -> bool:
        try:
            async with httpx.AsyncClient() as c:
                return (await c.get(f"{url}/health")).status_code == 200
        except httpx.TransportError:
            return False

    await until(up, "the server to answer", children, [proc])


async def test_serve_and_worker_over_real_http(
    children: Children, root: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    port = free_port()
    token_file = tmp_path / "token.txt"
    token_file.write_text(TOKEN + "\n")
    server = children.start(
        "fsjobs",
        "serve",
        "tests.http.served",
        "--root",
        root,
        "--port",
        str(port),
        "--host",
        "127.0.0.1",
        "--token-file",
        token_file,
    )
    worker = children.start("fsjobs", "worker", "tests.http.served", "--root", root)
    url = f"http://127.0.0.1:{port}"
    await serving(children, url, server)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=url, headers=auth, timeout=30) as c:
        assert (await c.get("/stats", headers={"Authorization": "Bearer no"})).status_code == 401
        r = await c.post(f"/jobs/{tasks.ADD}", json={"kwargs": {"a": 20, "b": 22}})
        assert r.status_code == 201, r.text
        added = r.json()["job_id"]
        photo = bytes(range(256)) * 1000
        r = await c.post(
            f"/jobs/{tasks.ECHO_UPLOAD}",
            data={"kwargs": json.dumps({"name": "photo"})},
            files={"photo": ("p.bin", photo)},
        )
        assert r.status_code == 201, r.text
        echoed = r.json()["job_id"]

        async with c.stream("GET", f"/jobs/{echoed}/events") as events:
            assert events.headers["content-type"].startswith("text/event-stream")
            states = [
                json.loads(line[len("data: ") :])
                async for line in events.aiter_lines()
                if line.startswith("data: ")
            ]
        assert states[-1]["status"] == "completed" and states[-1]["is_done"]
        assert len({json.dumps(s, sort_keys=True) for s in states}) == len(states), "changes only"

        async def added_done() -> bool:
            return (await c.get(f"/jobs/{added}")).json()["status"] == "completed"

        await until(added_done, "the first job to complete", children, [server, worker])
        assert (await c.get(f"/jobs/{added}/results")).json()["result"] == 42
        body = (await c.get(f"/jobs/{echoed}/results")).json()
        assert body["result"] == {"size": len(photo), "head": photo[:16].decode("latin-1")}
        out = await c.get(f"/jobs/{echoed}/outputs/copy-of-photo")
        assert out.content == photo
        metrics = (await c.get("/metrics")).text
        assert 'fsjobs_jobs{queue="default",status="completed"} 2' in metrics
        assert "fsjobs_workers_alive 1" in metrics
    stop(children, [server, worker])


async def test_without_a_token_serve_binds_localhost(
    children: Children, root: pathlib.Path
) -> None:
    port = free_port()
    server = children.start(
        "fsjobs", "serve", "tests.http.served", "--root", root, "--port", str(port)
    )
    url = f"http://127.0.0.1:{port}"
    await serving(children, url, server)
    async with httpx.AsyncClient(base_url=url) as c:
        assert (await c.get("/stats")).status_code == 200, "no token: open, on localhost only"
    stop(children, [server])
    assert f"Uvicorn running on http://127.0.0.1:{port}" in children.stderr(server)
    assert f"fsjobs: serving 5 tasks: {tasks.ADD}, " in children.stderr(server)


async def test_serve_warns_when_no_task_is_served(
    children: Children, root: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    """Tasks registered on a queue of another root are not served: serve says so."""
    port = free_port()
    other = tmp_path / "other-root"
    server = children.start(
        "fsjobs", "serve", "tests.http.served", "--root", other, "--port", str(port)
    )
    await serving(children, f"http://127.0.0.1:{port}", server)
    stop(children, [server])
    assert "is registered on a queue of" in children.stderr(server)


async def test_serve_refuses_an_empty_token_file(
    children: Children, root: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    proc = children.start(
        "fsjobs", "serve", "tests.http.served", "--root", root, "--token-file", empty
    )
    assert proc.wait(timeout=EXIT_TIMEOUT) == 1
    assert "is empty" in children.stderr(proc)
