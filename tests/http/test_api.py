"""
The JSON routes of the HTTP API (DESIGN.md §9.5, §9.7), through an ASGI client:
every route, the status codes it promises, and the JSON error shape on bad input.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import pathlib

import httpx
import pytest

import fsjobs
from fsjobs.http import create_app

from . import tasks
from .conftest import client_of, run_all

pytestmark = pytest.mark.asyncio


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> None:
    """An error answer: `status`, and JSON with exactly "error" and "message"."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "message"}, body
    assert isinstance(body["message"], str) and body["message"]
    if code is not None:
        assert body["error"] == code


# -- POST /jobs/{task} ---------------------------------------------------------------


async def test_submit_json_creates_a_job(client: httpx.AsyncClient, queue: fsjobs.Queue) -> None:
    r = await client.post(
        f"/jobs/{tasks.ADD}",
        json={"kwargs": {"a": 2, "b": 3}, "priority": -5, "max_attempts": 3, "timeout": 9.5},
    )
    assert r.status_code == 201
    assert r.json() == {"job_id": r.json()["job_id"], "status": "pending"}
    state = await queue.get(r.json()["job_id"])
    assert (state.func, state.kwargs, state.priority) == (tasks.ADD, {"a": 2, "b": 3}, -5)
    assert (state.max_attempts, state.queue) == (3, "default")
    await run_all(queue)
    assert await queue.result(state.id) == 5


async def test_submit_with_options_and_another_queue(
    client: httpx.AsyncClient, queue: fsjobs.Queue
) -> None:
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    r = await client.post(
        f"/jobs/{tasks.ADD}",
        json={"kwargs": {"a": 1}, "scheduled_at": later, "queue": "reports"},
    )
    assert r.status_code == 201 and r.json()["status"] == "scheduled"
    state = await queue.get(r.json()["job_id"])
    assert state.queue == "reports" and state.status is fsjobs.JobStatus.SCHEDULED


async def test_a_unique_key_returns_the_existing_job_with_200(client: httpx.AsyncClient) -> None:
    body = {"kwargs": {"a": 1}, "unique_key": "report-1"}
    first = await client.post(f"/jobs/{tasks.ADD}", json=body)
    second = await client.post(f"/jobs/{tasks.ADD}", json=body)
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json() == {"job_id": first.json()["job_id"], "status": "pending"}


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ({"kwargs": {"a": 1, "nope": 2}}, "unexpected argument"),
        ({"kwargs": {}}, "missing argument"),
        ({"kwargs": []}, "kwargs not an object"),
        ({"kwargs": {"a": 1}, "priority": "high"}, "priority not an int"),
        ({"kwargs": {"a": 1}, "priority": True}, "priority a bool"),
        ({"kwargs": {"a": 1}, "priority": 2**31}, "priority out of range"),
        ({"kwargs": {"a": 1}, "max_attempts": 0}, "max_attempts out of range"),
        ({"kwargs": {"a": 1}, "timeout": -1}, "negative timeout"),
        ({"kwargs": {"a": 1}, "queue": "../etc"}, "queue name"),
        ({"kwargs": {"a": 1}, "queue": ".hidden"}, "queue name"),
        ({"kwargs": {"a": 1}, "scheduled_at": "2030-01-01T00:00:00"}, "naive time"),
        ({"kwargs": {"a": 1}, "scheduled_at": "tomorrow"}, "not a time"),
        ({"kwargs": {"a": 1}, "scheduled_at": 12}, "time not a string"),
        ({"kwargs": {"a": 1}, "unique_key": ""}, "empty key"),
        ({"kwargs": {"a": 1}, "color": "red"}, "unknown option"),
    ],
)
async def test_bad_submissions_are_422(
    client: httpx.AsyncClient, root: pathlib.Path, body: dict[str, object], why: str
) -> None:
    assert_error(await client.post(f"/jobs/{tasks.ADD}", json=body), 422)
    assert not list(root.glob("jobs/*/*")), f"{why}: nothing may be written"


@pytest.mark.parametrize(
    "raw",
    [b"{", b'{"kwargs": {"a": NaN}}', b'{"kwargs": {}, "kwargs": {}}', b"[1]", b'"a"', b"\xff"],
)
async def test_bad_json_is_422(client: httpx.AsyncClient, raw: bytes) -> None:
    r = await client.post(
        f"/jobs/{tasks.ADD}", content=raw, headers={"content-type": "application/json"}
    )
    assert_error(r, 422)


async def test_unknown_tasks_are_404(client: httpx.AsyncClient, queue: fsjobs.Queue) -> None:
    assert_error(await client.post("/jobs/no.such.task", json={}), 404, "not_found")
    # A task registered on a queue of another root is not served here.
    other = fsjobs.Queue(pathlib.Path(queue.root).parent / "elsewhere")
    other.task(name="tests.http.elsewhere")(tasks.add)
    assert_error(await client.post("/jobs/tests.http.elsewhere", json={}), 404, "not_found")


async def test_a_body_over_the_cap_is_413(queue: fsjobs.Queue, root: pathlib.Path) -> None:
    async with client_of(create_app(queue, max_body=1000)) as c:
        r = await c.post(f"/jobs/{tasks.ADD}", json={"kwargs": {"a": 1, "pad": "x" * 2000}})
        assert_error(r, 413, "too_large")

        async def chunks():  # no Content-Length: the cap holds while reading
            for _ in range(10):
                yield b" " * 200

        r = await c.post(
            f"/jobs/{tasks.ADD}", content=chunks(), headers={"content-type": "application/json"}
        )
        assert_error(r, 413, "too_large")
    assert not list(root.glob("jobs/*/*"))


async def test_other_media_types_are_415(client: httpx.AsyncClient) -> None:
    r = await client.post(
        f"/jobs/{tasks.ADD}", content=b"a=1", headers={"content-type": "text/plain"}
    )
    assert_error(r, 415)


async def test_a_busy_unique_key_is_503_with_retry_after(
    client: httpx.AsyncClient, queue: fsjobs.Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    def busy(*args: object, **kwargs: object) -> list[str]:
        raise fsjobs.UniqueKeyBusy("another push of report-1 is staging")

    monkeypatch.setattr(queue.store, "push_many", busy)
    r = await client.post(f"/jobs/{tasks.ADD}", json={"kwargs": {"a": 1}, "unique_key": "k"})
    assert_error(r, 503, "busy")
    assert r.headers["retry-after"] == "1"


async def test_a_full_store_is_507(root: pathlib.Path) -> None:
    full = fsjobs.Queue(root, reserve_bytes=2**62)
    tasks.register(full)
    async with client_of(create_app(full)) as c:
        assert_error(await c.post(f"/jobs/{tasks.ADD}", json={"kwargs": {"a": 1}}), 507)
    full.close()


# -- reading a job --------------------------------------------------------------------


async def test_get_a_job_as_show_json(client: httpx.AsyncClient, queue: fsjobs.Queue) -> None:
    job_id = await queue.push(fsjobs.Job(func=tasks.ADD, kwargs={"a": 1}))
    body = (await client.get(f"/jobs/{job_id}")).json()
    assert body["id"] == job_id and body["status"] == "pending" and body["is_done"] is False
    assert body["created_at"].endswith("Z") and body["kwargs"] == {"a": 1}
    assert_error(await client.get("/jobs/01m8zzzzzz0000zzzzzzzz"), 404, "not_found")
    assert_error(await client.get("/jobs/not-an-id"), 404, "not_found")


async def test_results_are_409_until_final(client: httpx.AsyncClient, queue: fsjobs.Queue) -> None:
    job_id = await queue.push(fsjobs.Job(func=tasks.REPORT, kwargs={"title": "q3"}))
    assert_error(await client.get(f"/jobs/{job_id}/results"), 409, "not_final")
    await run_all(queue)
    r = await client.get(f"/jobs/{job_id}/results")
    assert r.json() == {
        "status": "completed",
        "result": "ok",
        "error": None,
        "outputs": ["report.txt"],
    }
    failed = await queue.push(fsjobs.Job(func=tasks.BOOM, kwargs={"message": "no"}))
    await run_all(queue)
    body = (await client.get(f"/jobs/{failed}/results")).json()
    assert body["status"] == "failed" and body["error"]["type"] == "ValueError"
    assert body["error"]["message"] == "no"


async def test_outputs_stream_and_hostile_names_reach_nothing(
    client: httpx.AsyncClient, queue: fsjobs.Queue, root: pathlib.Path
) -> None:
    job_id = await queue.push(fsjobs.Job(func=tasks.REPORT, kwargs={"title": "q3"}))
    await run_all(queue)
    r = await client.get(f"/jobs/{job_id}/outputs/report.txt")
    assert r.status_code == 200 and r.content == b"report: q3\n"
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.headers["content-length"] == str(len(b"report: q3\n"))
    # A planted symlink in the outputs folder, and a secret beside the root.
    (root.parent / "secret.txt").write_text("the secret")
    outputs = next(root.glob(f"jobs/*/{job_id}/attempts/*/outputs"))
    (outputs / "evil").symlink_to(root.parent / "secret.txt")
    for name in ("evil", "nope.txt"):
        assert_error(await client.get(f"/jobs/{job_id}/outputs/{name}"), 404)
    for hostile in ("%2E%2E", ".hidden", "-x", "a%00b", "%2E%2E%2F%2E%2E%2Fsecret.txt"):
        r = await client.get(f"/jobs/{job_id}/outputs/{hostile}")
        assert r.status_code in (404, 422), (hostile, r.status_code)
        assert "the secret" not in r.text
        assert set(r.json()) == {"error", "message"}
    assert_error(await client.get(f"/jobs/{job_id}/outputs/%2E%2E"), 422, "invalid")
    assert_error(await client.get("/jobs/01m8zzzzzz0000zzzzzzzz/outputs/report.txt"), 404)


async def test_logs_are_plain_text_per_attempt(
    client: httpx.AsyncClient, queue: fsjobs.Queue
) -> None:
    failed = await queue.push(fsjobs.Job(func=tasks.BOOM, kwargs={"message": "<script>x</script>"}))
    await run_all(queue)
    for url in (f"/jobs/{failed}/logs", f"/jobs/{failed}/logs?attempt=1"):
        r = await client.get(url)
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/plain")
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.text == "about to fail: <script>x</script>\n"
    r = await client.get(f"/jobs/{failed}/logs?attempt=2")
    assert (r.status_code, r.text) == (200, "")  # an attempt that never ran wrote nothing
    for bad in ("0", "-1", "x", "1.5"):
        assert_error(await client.get(f"/jobs/{failed}/logs?attempt={bad}"), 422, "invalid")
    assert_error(await client.get("/jobs/01m8zzzzzz0000zzzzzzzz/logs"), 404, "not_found")


# -- operator actions ----------------------------------------------------------------------


async def test_cancel_hold_release_retry(client: httpx.AsyncClient, queue: fsjobs.Queue) -> None:
    job_id = await queue.push(fsjobs.Job(func=tasks.ADD, kwargs={"a": 1}))
    r = await client.post(f"/jobs/{job_id}/hold")
    assert r.status_code == 200 and r.json()["status"] == "held"
    r = await client.post(f"/jobs/{job_id}/release")
    assert r.status_code == 200 and r.json()["status"] == "pending"
    assert_error(await client.post(f"/jobs/{job_id}/retry"), 409, "conflict")
    r = await client.post(f"/jobs/{job_id}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    again = await client.post(f"/jobs/{job_id}/cancel")
    assert again.status_code == 200 and again.json() == r.json(), "did nothing: unchanged state"
    r = await client.post(f"/jobs/{job_id}/retry?attempts=2")
    assert r.status_code == 200 and r.json()["status"] == "pending"
    assert r.json()["max_attempts"] == 2
    held = await client.post(f"/jobs/{job_id}/release")
    assert held.status_code == 200 and held.json()["status"] == "pending", "not held: unchanged"
    await run_all(queue)
    assert (await client.post(f"/jobs/{job_id}/hold")).json()["status"] == "completed"


async def test_cancel_stops_a_running_job(client: httpx.AsyncClient, queue: fsjobs.Queue) -> None:
    """A running async task is cancelled; the answer waits for it (up to ?timeout=)."""
    started = asyncio.Event()

    async def forever(ctx: fsjobs.Context) -> None:
        started.set()
        await asyncio.Event().wait()

    queue.task(name="tests.http.forever")(forever)
    job_id = await queue.push(fsjobs.Job(func="tests.http.forever"))
    worker = fsjobs.Worker(queue, concurrency=1)
    running = asyncio.ensure_future(worker.run())
    async with asyncio.timeout(60):  # a hang guard, not a timing assertion
        await started.wait()
        r = await client.post(f"/jobs/{job_id}/cancel?timeout=30")
        worker.stop()
        await running
    assert r.status_code == 200 and r.json()["status"] == "cancelled"


async def test_bad_actions(client: httpx.AsyncClient, queue: fsjobs.Queue) -> None:
    job_id = await queue.push(fsjobs.Job(func=tasks.ADD, kwargs={"a": 1}))
    assert_error(await client.post(f"/jobs/{job_id}/explode"), 404)
    assert_error(await client.post("/jobs/01m8zzzzzz0000zzzzzzzz/cancel"), 404)
    assert_error(await client.post(f"/jobs/{job_id}/cancel?timeout=nan"), 422)
    assert_error(await client.post(f"/jobs/{job_id}/cancel?timeout=-1"), 422)
    assert_error(await client.post(f"/jobs/{job_id}/retry?attempts=x"), 422)
    assert_error(await client.delete(f"/jobs/{job_id}"), 405, "method_not_allowed")
    assert_error(await client.get("/no/such/route"), 404, "not_found")


async def test_retrying_a_job_whose_key_is_taken_is_409(
    client: httpx.AsyncClient, queue: fsjobs.Queue
) -> None:
    job = fsjobs.Job(func=tasks.ADD, kwargs={"a": 1}, unique_key="k")
    first = await queue.push(job)
    await queue.cancel(first)
    await queue.push(job)  # the key is free again: a new job takes it
    assert_error(await client.post(f"/jobs/{first}/retry"), 409, "conflict")


# -- listings and counts ------------------------------------------------------------------------


async def test_paging_returns_every_job_exactly_once(
    client: httpx.AsyncClient, queue: fsjobs.Queue
) -> None:
    ids = [await queue.push(fsjobs.Job(func=tasks.ADD, kwargs={"a": i})) for i in range(7)]
    await fsjobs.Queue(queue.root, "other").push(fsjobs.Job(func=tasks.ADD, kwargs={"a": 9}))
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        r = await client.get("/jobs", params={"limit": 3, **({"cursor": cursor} if cursor else {})})
        body = r.json()
        assert set(body) == {"jobs", "next_cursor"}
        seen += [j["id"] for j in body["jobs"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and len(seen) == len(set(seen)) == 8, "every queue, each job once"
    assert seen == sorted(seen, reverse=True), "newest first"
    only = await client.get("/jobs", params={"queue": "default", "status": "pending"})
    assert sorted(j["id"] for j in only.json()["jobs"]) == sorted(ids)


@pytest.mark.parametrize(
    "params",
    [
        {"status": "sleeping"},
        {"limit": "0"},
        {"limit": "1001"},
        {"limit": "ten"},
        {"cursor": "../x"},
        {"queue": "../x"},
    ],
)
async def test_bad_listing_parameters_are_422(
    client: httpx.AsyncClient, params: dict[str, str]
) -> None:
    assert_error(await client.get("/jobs", params=params), 422, "invalid")


async def test_stats_queues_metrics_health(client: httpx.AsyncClient, queue: fsjobs.Queue) -> None:
    await queue.push(fsjobs.Job(func=tasks.ADD, kwargs={"a": 1}))
    done = await queue.push(fsjobs.Job(func=tasks.ADD, kwargs={"a": 2}))
    await queue.cancel(done)
    stats = (await client.get("/stats")).json()
    counts = stats["queues"]["default"]["counts"]
    assert (counts["pending"], counts["cancelled"], counts["failed"]) == (1, 1, 0)
    assert set(counts) == {s.value for s in fsjobs.JobStatus}
    assert stats["workers_alive"] == 0
    assert stats["queues"]["default"]["paused"] is False
    listed = (await client.get("/queues")).json()
    flow = {"paused": False, "concurrency": None, "rate": None}
    assert listed == {"queues": [{"name": "default", "counts": counts, **flow}]}
    metrics = await client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert 'fsjobs_jobs{queue="default",status="pending"} 1\n' in metrics.text
    assert 'fsjobs_jobs{queue="default",status="cancelled"} 1\n' in metrics.text
    assert (await client.get("/health")).json() == {"status": "ok"}


async def test_the_app_does_no_io_before_its_first_request(tmp_path: pathlib.Path) -> None:
    """Built on a root that does not exist: nothing is created by create_app or /health."""
    root = tmp_path / "not-yet"
    queue = fsjobs.Queue(root)
    app = create_app(queue)
    async with client_of(app) as c:
        assert (await c.get("/health")).status_code == 200
        assert not root.exists()
        assert (await c.get("/stats")).json() == {"queues": {}, "workers_alive": 0}
        assert not root.exists(), "a read creates nothing"
    queue.close()
    assert os.listdir(tmp_path) == []


async def test_pause_and_resume_a_queue(client: httpx.AsyncClient, queue: fsjobs.Queue) -> None:
    """The routes pause and resume any queue of the root; /stats, /queues and /metrics show it."""
    await queue.push(fsjobs.Job(func=tasks.ADD, kwargs={"a": 1}))
    await queue.configure("default", concurrency=2, rate="10/m")
    r = await client.post("/queues/default/pause")
    assert r.status_code == 200
    assert r.json() == {
        "queue": "default",
        "changed": True,
        "paused": True,
        "concurrency": 2,
        "rate": "10/m",
    }
    assert (await client.post("/queues/default/pause")).json()["changed"] is False
    assert (await queue.info()).paused
    stats = (await client.get("/stats")).json()["queues"]["default"]
    assert (stats["paused"], stats["concurrency"], stats["rate"]) == (True, 2, "10/m")
    assert (await client.get("/queues")).json()["queues"][0]["paused"] is True
    assert 'fsjobs_queue_paused{queue="default"} 1\n' in (await client.get("/metrics")).text
    assert await run_all(queue) == 0, "a paused queue runs nothing"
    r = await client.post("/queues/default/resume")
    assert r.json()["changed"] is True and r.json()["paused"] is False
    assert await run_all(queue) == 1
    r = await client.post("/queues/emails/pause")  # a queue with no job yet
    assert r.status_code == 200 and (await queue.info("emails")).paused
    assert_error(await client.post("/queues/bad name/pause"), 422, "invalid")
    assert_error(await client.post("/queues/default/explode"), 404, "not_found")


async def test_stats_say_why_a_queue_is_not_served(
    client: httpx.AsyncClient, queue: fsjobs.Queue, root: pathlib.Path
) -> None:
    await queue.push(fsjobs.Job(func=tasks.ADD, kwargs={"a": 1}))
    (root / "queues" / "default" / "settings.json").write_text("{not json")
    stats = (await client.get("/stats")).json()["queues"]["default"]
    assert "queues/default/settings.json" in stats["settings_problem"]
    page = (await client.get("/")).text
    assert "settings unusable" in page
