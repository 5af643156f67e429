"""
``GET /jobs/{id}/events``: Server-Sent Events, ``event: state`` with the job's
JSON on connect and on every change, ending after a final state.

The app is called as ASGI directly, so the test reads each event the moment
the app sends it, and moves the job on only after seeing the previous state.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.types import ASGIApp, Message

import fsjobs
from fsjobs.http import create_app

from . import tasks
from .conftest import BEARER, TOKEN

pytestmark = pytest.mark.asyncio

HANG_GUARD = 60  # seconds; a guard against a hang, not a timing assertion


async def sse(app: ASGIApp, path: str, headers: dict[str, str]) -> AsyncIterator[Any]:
    """The response start, then each SSE event's (name, data) as the app sends it; then None."""
    sent: asyncio.Queue[Message] = asyncio.Queue()
    disconnect = asyncio.Event()

    async def receive() -> Message:
        await disconnect.wait()
        return {"type": "http.disconnect"}

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 1234),
        "server": ("fsjobs.test", 80),
    }
    call = asyncio.ensure_future(app(scope, receive, sent.put))
    try:
        start = await sent.get()
        yield start
        buffer = b""
        while True:
            message = await sent.get()
            buffer += message.get("body", b"")
            while b"\n\n" in buffer:
                block, buffer = buffer.split(b"\n\n", 1)
                fields = dict(line.split(": ", 1) for line in block.decode().splitlines())
                yield fields["event"], json.loads(fields["data"])
            if not message.get("more_body", False):
                yield None
                return
    finally:
        disconnect.set()
        await asyncio.wait_for(call, HANG_GUARD)


async def test_each_state_change_until_the_final_one(queue: fsjobs.Queue) -> None:
    gates = [asyncio.Event(), asyncio.Event()]

    async def steps(ctx: fsjobs.Context) -> int:
        await gates[0].wait()
        await ctx.progress(50, "half way")
        await gates[1].wait()
        return 42

    queue.task(name="tests.http.steps")(steps)
    job_id = await queue.push(fsjobs.Job(func="tests.http.steps"))
    app = create_app(queue, token=TOKEN)
    worker = fsjobs.Worker(queue, concurrency=1)
    running: asyncio.Future[None] | None = None
    seen: list[tuple[str, float | None]] = []
    async with asyncio.timeout(HANG_GUARD):
        stream = sse(app, f"/jobs/{job_id}/events", BEARER)
        start = await anext(stream)
        assert start["status"] == 200
        assert (b"content-type", b"text/event-stream; charset=utf-8") in start["headers"]
        async for item in stream:
            if item is None:
                break
            name, state = item
            assert name == "state" and state["id"] == job_id
            seen.append((state["status"], state["progress"]))
            if state["status"] == "pending":
                running = asyncio.ensure_future(worker.run())  # only now may it start
            elif state["status"] == "running" and state["progress"] is None:
                gates[0].set()
            elif state["status"] == "running":
                assert state["progress_message"] == "half way"
                gates[1].set()
            else:
                assert state["status"] == "completed" and state["result"] == 42
                assert state["is_done"] is True
        worker.stop()
        assert running is not None
        await running
    assert seen == [("pending", None), ("running", None), ("running", 50.0), ("completed", 50.0)]


async def test_a_final_job_sends_one_event_and_closes(queue: fsjobs.Queue) -> None:
    job_id = await queue.push(fsjobs.Job(func=tasks.ADD, kwargs={"a": 1}))
    await queue.cancel(job_id)
    items = []
    async with asyncio.timeout(HANG_GUARD):
        async for item in sse(create_app(queue), f"/jobs/{job_id}/events", {}):
            items.append(item)
    assert items[0]["status"] == 200
    assert [(name, state["status"]) for name, state in items[1:-1]] == [("state", "cancelled")]
    assert items[-1] is None


async def test_unknown_jobs_and_missing_tokens_get_no_stream(queue: fsjobs.Queue) -> None:
    app = create_app(queue, token=TOKEN)
    async with asyncio.timeout(HANG_GUARD):
        for path, headers, status in (
            ("/jobs/01m8zzzzzz0000zzzzzzzz/events", BEARER, 404),
            ("/jobs/nope/events", BEARER, 404),
            ("/jobs/01m8zzzzzz0000zzzzzzzz/events", {}, 401),
        ):
            stream = sse(app, path, headers)
            start = await anext(stream)
            assert start["status"] == status
            await stream.aclose()
