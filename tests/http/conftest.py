"""Fixtures of the HTTP tests: a queue with the test tasks, the app, and ASGI clients."""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import pytest_asyncio
from starlette.applications import Starlette

import fsjobs
from fsjobs.http import create_app

from . import tasks

TOKEN = "test-token-0123456789"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def queue(root: pathlib.Path) -> Iterator[fsjobs.Queue]:
    q = fsjobs.Queue(root)
    tasks.register(q)
    try:
        yield q
    finally:
        q.close()


def client_of(app: Starlette, **kw: object) -> httpx.AsyncClient:
    """An httpx client that calls the ASGI app directly, in this event loop."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://fsjobs.test", **kw
    )


@pytest_asyncio.fixture
async def client(queue: fsjobs.Queue) -> AsyncIterator[httpx.AsyncClient]:
    """The app without a token."""
    async with client_of(create_app(queue)) as c:
        yield c


@pytest_asyncio.fixture
async def guarded(queue: fsjobs.Queue) -> AsyncIterator[httpx.AsyncClient]:
    """The app with a token; the client sends no credentials unless told."""
    async with client_of(create_app(queue, token=TOKEN)) as c:
        yield c


async def run_all(queue: fsjobs.Queue) -> int:
    """Run every due job of the queue in this process."""
    return await fsjobs.Worker(queue, concurrency=4).run_until_empty()
