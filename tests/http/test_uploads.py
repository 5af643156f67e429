"""
Multipart submissions: options as JSON fields, files as uploads streamed into
a stage in tmp/ and renamed into the job; nothing left behind when one is refused.
"""

from __future__ import annotations

import json
import os
import pathlib
import tracemalloc
from collections.abc import AsyncIterator

import httpx
import pytest

import fsjobs
from fsjobs.http import create_app

from . import tasks
from .conftest import client_of, run_all
from .test_api import assert_error

pytestmark = pytest.mark.asyncio

BOUNDARY = "fsjobs-test-boundary-7c1e"


def part(name: str, data: bytes, filename: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    return f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"


def file_head(name: str) -> bytes:
    """The headers of a file part whose data follows."""
    return part(name, b"", "f")[: -len(b"\r\n")]


def end() -> bytes:
    return f"--{BOUNDARY}--\r\n".encode()


HEADERS = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}


def leftovers(root: pathlib.Path) -> list[str]:
    """What a refused submission left: anything in tmp/, any job folder."""
    tmp = os.listdir(root / "tmp") if (root / "tmp").exists() else []
    return tmp + [p.name for p in root.glob("jobs/*/*")]


async def test_files_become_uploads(client: httpx.AsyncClient, queue: fsjobs.Queue) -> None:
    photo = bytes(range(256)) * 4000
    r = await client.post(
        f"/jobs/{tasks.ECHO_UPLOAD}",
        data={"kwargs": json.dumps({"name": "photo"}), "priority": "3"},
        files={"photo": ("cat.png", photo, "image/png"), "notes": ("n.txt", b"dawn")},
    )
    assert r.status_code == 201, r.text
    job_id = r.json()["job_id"]
    state = await queue.get(job_id)
    assert state.priority == 3 and state.kwargs == {"name": "photo"}
    await run_all(queue)
    assert await queue.result(job_id) == {"size": len(photo), "head": photo[:16].decode("latin-1")}
    out = await client.get(f"/jobs/{job_id}/outputs/copy-of-photo")
    assert out.content == photo
    assert os.listdir(pathlib.Path(queue.root) / "tmp") == []


async def test_a_large_upload_is_never_held_whole_in_memory(
    client: httpx.AsyncClient, queue: fsjobs.Queue
) -> None:
    """64 MiB streamed in 64 KiB chunks: Python's peak allocation stays a small fraction."""
    size, chunk = 64 * 2**20, b"z" * 2**16

    async def body() -> AsyncIterator[bytes]:
        yield part("kwargs", json.dumps({"name": "big"}).encode())
        yield file_head("big")
        for _ in range(size // len(chunk)):
            yield chunk
        yield b"\r\n" + end()

    tracemalloc.start()
    try:
        r = await client.post(f"/jobs/{tasks.ECHO_UPLOAD}", content=body(), headers=HEADERS)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert r.status_code == 201, r.text
    assert peak < 8 * 2**20, f"peak {peak / 2**20:.1f} MiB while uploading 64 MiB"
    job_id = r.json()["job_id"]
    upload = next(pathlib.Path(queue.root).glob(f"jobs/*/{job_id}/uploads/big"))
    assert upload.stat().st_size == size


@pytest.mark.parametrize(
    ("parts", "status"),
    [
        ([part("kwargs", b'{"name": "x"}'), part("../x", b"1", "f")], 422),
        ([part("kwargs", b'{"name": "x"}'), part(".hidden", b"1", "f")], 422),
        ([part("kwargs", b'{"name": "x"}'), part("a", b"1", "f"), part("a", b"2", "f")], 422),
        ([part("kwargs", b"{not json"), part("a", b"1", "f")], 422),
        ([part("a", b"1", "f"), part("colour", b'"red"')], 422),
        ([part("kwargs", b'{"name": "x"}'), part("kwargs", b'{"name": "y"}')], 422),
        ([part("kwargs", b'{"nope": 1}'), part("a", b"1", "f")], 422),
        (
            [part("kwargs", b'{"name": "a"}'), part("priority", b'"high"'), part("a", b"1", "f")],
            422,
        ),
    ],
)
async def test_refused_multipart_leaves_nothing(
    client: httpx.AsyncClient, root: pathlib.Path, parts: list[bytes], status: int
) -> None:
    r = await client.post(
        f"/jobs/{tasks.ECHO_UPLOAD}", content=b"".join(parts) + end(), headers=HEADERS
    )
    assert_error(r, status)
    assert leftovers(root) == []


async def test_a_truncated_body_is_422_and_leaves_nothing(
    client: httpx.AsyncClient, root: pathlib.Path
) -> None:
    body = part("kwargs", b'{"name": "a"}') + part("a", b"12345", "f")[:-10]
    assert_error(
        await client.post(f"/jobs/{tasks.ECHO_UPLOAD}", content=body, headers=HEADERS), 422
    )
    no_boundary = {"content-type": "multipart/form-data"}
    assert_error(
        await client.post(f"/jobs/{tasks.ECHO_UPLOAD}", content=b"x", headers=no_boundary), 422
    )
    assert leftovers(root) == []


async def test_caps_on_fields_and_files_are_413(queue: fsjobs.Queue, root: pathlib.Path) -> None:
    async with client_of(create_app(queue, max_body=200, max_upload=1000)) as c:
        ok = part("kwargs", b'{"name": "a"}') + part("a", b"x" * 1000, "f") + end()
        assert (
            await c.post(f"/jobs/{tasks.ECHO_UPLOAD}", content=ok, headers=HEADERS)
        ).status_code == 201
        big_file = part("kwargs", b'{"name": "a"}') + part("a", b"x" * 1001, "f") + end()
        r = await c.post(f"/jobs/{tasks.ECHO_UPLOAD}", content=big_file, headers=HEADERS)
        assert_error(r, 413, "too_large")
        big_field = part("kwargs", b'{"name": "%s"}' % (b"a" * 300)) + end()
        r = await c.post(f"/jobs/{tasks.ECHO_UPLOAD}", content=big_field, headers=HEADERS)
        assert_error(r, 413, "too_large")
    assert os.listdir(root / "tmp") == []
    assert len(list(root.glob("jobs/*/*"))) == 1, "only the accepted job"


async def test_a_client_that_goes_away_mid_upload_leaves_nothing(
    client: httpx.AsyncClient, root: pathlib.Path
) -> None:
    """The body stream fails half way: the stage is removed, no job exists."""

    class Gone(Exception):
        pass

    async def body() -> AsyncIterator[bytes]:
        yield part("kwargs", b'{"name": "a"}')
        yield file_head("a")
        yield b"x" * 100_000
        raise Gone

    with pytest.raises(Gone):
        await client.post(f"/jobs/{tasks.ECHO_UPLOAD}", content=body(), headers=HEADERS)
    assert leftovers(root) == []
