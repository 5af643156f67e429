"""
The dashboard's pages: what they show, that every piece of job data is escaped,
and that its buttons act and come back; also under a mount prefix.
"""

from __future__ import annotations

import html
import re

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

import fsjobs
from fsjobs import _http_html
from fsjobs.http import create_app

from . import tasks
from .conftest import client_of, run_all

pytestmark = pytest.mark.asyncio

HOSTILE = '<script>alert("x")</script>'


def only_our_script(page: str) -> None:
    """The one <script> is the dashboard's own (its hash is the only one the CSP allows)."""
    assert page.count("<script") == 1
    assert f"<script>{_http_html.SCRIPT}</script>" in page


async def test_job_data_is_escaped_everywhere(
    client: httpx.AsyncClient, queue: fsjobs.Queue
) -> None:
    """kwargs, error, unique key and task name carry markup: the pages show it as text."""
    sneaky = queue.task(name="tests.http.<img_src:x_onerror:alert>")(tasks.boom)
    job = sneaky.job(message=f"bad {HOSTILE} <b>bold</b>")
    job_id = await queue.push(job.with_unique_key(f'"><svg onload=alert(1)> {HOSTILE}'))
    await run_all(queue)
    submitted = await client.post(f"/jobs/{tasks.REPORT}", json={"kwargs": {"title": HOSTILE}})
    kw_id = submitted.json()["job_id"]

    for path in (
        "/",
        "/ui/jobs",
        f"/ui/jobs/{job_id}",
        f"/ui/jobs/{kw_id}",
        "/ui/jobs?status=failed",
    ):
        r = await client.get(path)
        assert r.status_code == 200, path
        page = r.text
        only_our_script(page)
        for raw in (HOSTILE, "<img", "<svg", "<b>bold"):
            assert raw not in page, (path, raw)
        assert r.headers["content-security-policy"] == _http_html.CSP
    job_page = (await client.get(f"/ui/jobs/{job_id}")).text
    assert html.escape(f"bad {HOSTILE} <b>bold</b>") in job_page, "the error, as text"
    assert html.escape("tests.http.<img_src:x_onerror:alert>") in job_page
    kw_page = (await client.get(f"/ui/jobs/{kw_id}")).text
    assert "&lt;script&gt;alert(\\&quot;x\\&quot;)&lt;/script&gt;" in kw_page, "kwargs, as text"


async def test_the_overview_counts_and_links(
    client: httpx.AsyncClient, queue: fsjobs.Queue
) -> None:
    for i in range(3):
        await queue.push(fsjobs.Job(func=tasks.ADD, kwargs={"a": i}))
    await fsjobs.Queue(queue.root, "video").push(fsjobs.Job(func=tasks.ADD, kwargs={"a": 9}))
    page = (await client.get("/")).text
    assert '<a href="/ui/jobs?queue=default&amp;status=pending">3</a>' in page
    assert '<a href="/ui/jobs?queue=video&amp;status=pending">1</a>' in page
    assert "Workers alive: 0" in page


async def test_jobs_filter_by_status_and_queue_and_page(
    client: httpx.AsyncClient, queue: fsjobs.Queue
) -> None:
    ids = [await queue.push(fsjobs.Job(func=tasks.ADD, kwargs={"a": i})) for i in range(60)]
    await queue.cancel(ids[0])
    page = (await client.get("/ui/jobs?status=cancelled&queue=default")).text
    assert ids[0] in page and ids[1] not in page
    first = (await client.get("/ui/jobs")).text
    assert sum(job_id in first for job_id in ids) == 50
    more = re.search(r'href="(/ui/jobs\?cursor=[0-9a-z]+)" rel="next"', first)
    assert more is not None
    second = (await client.get(html.unescape(more.group(1)))).text
    assert sum(job_id in second for job_id in ids) == 10
    assert (await client.get("/ui/jobs?status=nope")).status_code == 422
    assert (await client.get("/ui/jobs?cursor=..%2Fx")).status_code == 422


async def test_the_job_page_shows_everything(
    client: httpx.AsyncClient, queue: fsjobs.Queue
) -> None:
    job_id = await queue.push(fsjobs.Job(func=tasks.REPORT, kwargs={"title": "q3"}))
    await run_all(queue)
    page = (await client.get(f"/ui/jobs/{job_id}")).text
    assert f'data-events="/jobs/{job_id}/events"' in page and 'data-status="completed"' in page
    assert f'href="/jobs/{job_id}/outputs/report.txt"' in page
    assert f'href="/jobs/{job_id}/logs?attempt=1"' in page
    assert 'id="result"' in page and "&quot;ok&quot;" in page
    for record in ("pushed", "claimed", "progress", "completed"):
        assert f"<td>{record}</td>" in page
    assert 'data-pct="100.0"' in page
    assert "/retry" not in page and "/cancel" not in page, "a completed job offers no action"
    assert (await client.get("/ui/jobs/01m8zzzzzz0000zzzzzzzz")).status_code == 404


async def test_the_job_page_draws_the_dependency_graph(
    client: httpx.AsyncClient, queue: fsjobs.Queue
) -> None:
    parent = await queue.push(fsjobs.Job(func=tasks.ADD, kwargs={"a": 1}))
    child = await queue.push(fsjobs.Job(func=tasks.ADD, kwargs={"a": 2}, depends_on=[parent]))
    page = (await client.get(f"/ui/jobs/{child}")).text
    graph = page[page.index('id="graph"') :]
    assert f'href="/ui/jobs/{parent}"' in graph and 's-pending">pending' in graph
    assert 'data-status="blocked"' in page
    page = (await client.get(f"/ui/jobs/{parent}")).text
    assert f'href="/ui/jobs/{child}"' in page[page.index('id="graph"') :]

    wf = fsjobs.Workflow("report")
    wf.add("fetch", fsjobs.Job(func=tasks.ADD, kwargs={"a": 3}))
    wf.add("chart", fsjobs.Job(func=tasks.ADD, kwargs={"a": 4}), after=["fetch"])
    state = await queue.get_workflow(await queue.push_workflow(wf))
    step = state.steps["fetch"].id
    page = (await client.get(f"/ui/jobs/{step}")).text
    assert "<h2>workflow report" in page
    assert re.search(rf'<tr class="here"><td>fetch</td>.*?{step}', page)
    assert "└─ chart</td>" in page, "a child step is drawn below its parent"


async def test_buttons_act_and_come_back(client: httpx.AsyncClient, queue: fsjobs.Queue) -> None:
    job_id = await queue.push(fsjobs.Job(func=tasks.ADD, kwargs={"a": 1}))
    page = (await client.get(f"/ui/jobs/{job_id}")).text
    assert f'action="/ui/jobs/{job_id}/cancel"' in page and f'/ui/jobs/{job_id}/hold"' in page
    r = await client.post(f"/ui/jobs/{job_id}/hold")
    assert r.status_code == 303 and r.headers["location"] == f"/ui/jobs/{job_id}"
    page = (await client.get(f"/ui/jobs/{job_id}")).text
    assert f'/ui/jobs/{job_id}/release"' in page and f'/ui/jobs/{job_id}/hold"' not in page
    await client.post(f"/ui/jobs/{job_id}/cancel")
    assert (await queue.get(job_id)).status is fsjobs.JobStatus.CANCELLED
    r = await client.post(f"/ui/jobs/{job_id}/cancel")
    assert r.headers["location"] == f"/ui/jobs/{job_id}?note=unchanged"
    assert "Nothing changed" in (await client.get(r.headers["location"])).text
    r = await client.post(f"/ui/jobs/{job_id}/retry")
    assert (await queue.get(job_id)).status is fsjobs.JobStatus.PENDING
    assert (await client.post(f"/ui/jobs/{job_id}/explode")).status_code == 404


async def test_the_overview_pauses_and_resumes_queues(
    client: httpx.AsyncClient, queue: fsjobs.Queue
) -> None:
    await queue.push(fsjobs.Job(func=tasks.ADD, kwargs={"a": 1}))
    await queue.configure(concurrency=3)
    page = (await client.get("/")).text
    assert 'action="/ui/queues/default/pause"' in page and "concurrency=3" in page
    assert "badge paused" not in page
    r = await client.post("/ui/queues/default/pause")
    assert r.status_code == 303 and r.headers["location"] == "/"
    assert (await queue.info()).paused
    page = (await client.get("/")).text
    assert "badge paused" in page and 'action="/ui/queues/default/resume"' in page
    await client.post("/ui/queues/default/resume")
    assert not (await queue.info()).paused
    assert (await client.post("/ui/queues/default/explode")).status_code == 404


async def test_links_keep_the_mount_prefix(queue: fsjobs.Queue) -> None:
    """Mounted at /admin/jobs in another app, every link and redirect stays under it."""
    outer = Starlette(routes=[Mount("/admin/jobs", app=create_app(queue))])
    job_id = await queue.push(fsjobs.Job(func=tasks.ADD, kwargs={"a": 1}))
    async with client_of(outer) as c:
        page = (await c.get("/admin/jobs/")).text
        assert f'href="/admin/jobs/ui/jobs/{job_id}"' in page
        job_page = (await c.get(f"/admin/jobs/ui/jobs/{job_id}")).text
        assert f'data-events="/admin/jobs/jobs/{job_id}/events"' in job_page
        r = await c.post(f"/admin/jobs/ui/jobs/{job_id}/hold")
        assert r.headers["location"] == f"/admin/jobs/ui/jobs/{job_id}"
        assert (await c.get(f"/admin/jobs/jobs/{job_id}")).json()["status"] == "held"
