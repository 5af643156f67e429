"""
With a token every route but /login and /health needs it: as a Bearer header,
or as the dashboard's session cookie, whose unsafe requests also need the CSRF
token. Without one, cross-site requests still cannot change anything.
"""

from __future__ import annotations

import re

import httpx
import pytest

import fsjobs
from fsjobs import _http_auth

from . import tasks
from .conftest import BEARER, TOKEN
from .test_api import assert_error

pytestmark = pytest.mark.asyncio

HTML = {"accept": "text/html,application/xhtml+xml"}


async def pushed(queue: fsjobs.Queue) -> str:
    return await queue.push(fsjobs.Job(func=tasks.ADD, kwargs={"a": 1}))


async def sign_in(client: httpx.AsyncClient, token: str = TOKEN) -> httpx.Response:
    return await client.post("/login", data={"token": token, "next": "/ui/jobs"})


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert match, "the page carries a CSRF token"
    return match.group(1)


async def test_every_route_needs_the_token(guarded: httpx.AsyncClient, queue: fsjobs.Queue) -> None:
    job_id = await pushed(queue)
    routes = [
        ("GET", "/"),
        ("GET", "/ui/jobs"),
        ("GET", f"/ui/jobs/{job_id}"),
        ("POST", f"/ui/jobs/{job_id}/cancel"),
        ("POST", f"/jobs/{tasks.ADD}"),
        ("GET", "/jobs"),
        ("GET", f"/jobs/{job_id}"),
        ("GET", f"/jobs/{job_id}/results"),
        ("GET", f"/jobs/{job_id}/outputs/x"),
        ("GET", f"/jobs/{job_id}/events"),
        ("POST", f"/jobs/{job_id}/cancel"),
        ("POST", f"/jobs/{job_id}/retry"),
        ("POST", f"/jobs/{job_id}/hold"),
        ("POST", f"/jobs/{job_id}/release"),
        ("GET", "/queues"),
        ("POST", "/queues/default/pause"),
        ("POST", "/queues/default/resume"),
        ("POST", "/ui/queues/default/pause"),
        ("GET", "/stats"),
        ("GET", "/metrics"),
        ("POST", "/logout"),
        ("GET", "/no/such/route"),
    ]
    for method, path in routes:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}):
            r = await guarded.request(method, path, headers=headers)
            assert_error(r, 401, "unauthorized")
            assert r.headers["www-authenticate"] == "Bearer"
    assert (await queue.get(job_id)).status is fsjobs.JobStatus.PENDING, "nothing happened"
    assert not (await queue.info()).paused, "nothing was paused"
    for path in ("/jobs", "/stats", "/", f"/jobs/{job_id}"):
        assert (await guarded.get(path, headers=BEARER)).status_code == 200
    r = await guarded.post(f"/jobs/{job_id}/cancel", headers=BEARER)
    assert r.json()["status"] == "cancelled", "a Bearer request needs no CSRF token"


async def test_health_and_login_are_open(guarded: httpx.AsyncClient) -> None:
    assert (await guarded.get("/health")).json() == {"status": "ok"}
    r = await guarded.get("/login")
    assert r.status_code == 200 and 'type="password"' in r.text


async def test_a_page_load_is_sent_to_the_sign_in_form(guarded: httpx.AsyncClient) -> None:
    r = await guarded.get("/ui/jobs?status=failed", headers=HTML)
    assert r.status_code == 303
    assert r.headers["location"] == "/login?next=%2Fui%2Fjobs%3Fstatus%3Dfailed"
    api = await guarded.get("/jobs", headers={"accept": "application/json"})
    assert_error(api, 401, "unauthorized")


async def test_sign_in_sets_a_strict_http_only_cookie(guarded: httpx.AsyncClient) -> None:
    wrong = await sign_in(guarded, "nope")
    assert wrong.status_code == 401 and "Wrong token" in wrong.text
    assert "set-cookie" not in wrong.headers
    r = await sign_in(guarded)
    assert r.status_code == 303 and r.headers["location"] == "/ui/jobs"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{_http_auth.COOKIE}=v1.")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie, "plain HTTP here; Secure only over HTTPS"
    assert (await guarded.get("/jobs")).status_code == 200, "the cookie signs requests in"


async def test_sign_in_only_goes_back_inside_the_app(guarded: httpx.AsyncClient) -> None:
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        r = await guarded.post("/login", data={"token": TOKEN, "next": target})
        assert r.headers["location"] == "/"


async def test_cookie_requests_that_change_things_need_the_csrf_token(
    guarded: httpx.AsyncClient, queue: fsjobs.Queue
) -> None:
    job_id = await pushed(queue)
    await sign_in(guarded)
    assert_error(await guarded.post(f"/jobs/{job_id}/hold"), 403, "csrf")
    assert_error(await guarded.post(f"/ui/jobs/{job_id}/hold", data={"csrf": "0" * 64}), 403)
    assert_error(await guarded.post(f"/jobs/{tasks.ADD}", json={"kwargs": {"a": 1}}), 403)
    assert (await queue.get(job_id)).status is fsjobs.JobStatus.PENDING
    token = csrf_of((await guarded.get(f"/ui/jobs/{job_id}")).text)
    r = await guarded.post(f"/jobs/{job_id}/hold", headers={"X-CSRF-Token": token})
    assert r.status_code == 200 and r.json()["status"] == "held"
    r = await guarded.post(f"/ui/jobs/{job_id}/release", data={"csrf": token})
    assert r.status_code == 303 and r.headers["location"] == f"/ui/jobs/{job_id}"
    assert (await queue.get(job_id)).status is fsjobs.JobStatus.PENDING
    assert_error(await guarded.post("/queues/default/pause"), 403, "csrf")
    assert_error(await guarded.post("/ui/queues/default/pause", data={"csrf": "0" * 64}), 403)
    assert not (await queue.info()).paused
    r = await guarded.post("/ui/queues/default/pause", data={"csrf": token})
    assert r.status_code == 303 and (await queue.info()).paused
    r = await guarded.post("/queues/default/resume", headers={"X-CSRF-Token": token})
    assert r.status_code == 200 and not (await queue.info()).paused


async def test_a_forged_or_expired_cookie_is_refused(guarded: httpx.AsyncClient) -> None:
    expired = _http_auth.new_session(TOKEN, 60, now=0)
    other = _http_auth.new_session("another-token", 3600)
    mine = _http_auth.new_session(TOKEN, 3600)
    forged = mine[:-1] + ("1" if mine.endswith("0") else "0")  # one hex digit changed
    for value in (expired, other, forged, "v1.9999999999.00", "garbage"):
        guarded.cookies.set(_http_auth.COOKIE, value)
        assert_error(await guarded.get("/jobs"), 401)
    guarded.cookies.set(_http_auth.COOKIE, mine)
    assert (await guarded.get("/jobs")).status_code == 200


async def test_sign_out_clears_the_cookie(guarded: httpx.AsyncClient) -> None:
    await sign_in(guarded)
    token = csrf_of((await guarded.get("/")).text)
    r = await guarded.post("/logout", data={"csrf": token})
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert_error(await guarded.get("/jobs"), 401)


async def test_cross_site_requests_cannot_change_anything(
    client: httpx.AsyncClient, guarded: httpx.AsyncClient, queue: fsjobs.Queue
) -> None:
    """Even without a token (a server on localhost), another site's page cannot act."""
    job_id = await pushed(queue)
    evil = {"origin": "https://evil.example"}
    assert_error(await client.post(f"/jobs/{job_id}/cancel", headers=evil), 403, "forbidden")
    assert_error(
        await client.post(f"/jobs/{tasks.ADD}", json={"kwargs": {"a": 1}}, headers=evil), 403
    )
    assert_error(await guarded.post("/login", data={"token": TOKEN}, headers=evil), 403)
    assert_error(await client.post("/queues/default/pause", headers=evil), 403, "forbidden")
    assert not (await queue.info()).paused
    assert (await queue.get(job_id)).status is fsjobs.JobStatus.PENDING
    same = {"origin": "http://fsjobs.test"}
    r = await client.post(f"/jobs/{job_id}/cancel", headers=same)
    assert r.json()["status"] == "cancelled"
    assert (await client.get("/jobs", headers=evil)).status_code == 200, "reads are not refused"


async def test_every_answer_says_nosniff(guarded: httpx.AsyncClient, queue: fsjobs.Queue) -> None:
    """JSON (even an error carrying job data) is never sniffed as HTML by a browser."""
    for r in (
        await guarded.get("/jobs"),
        await guarded.get("/jobs", headers=BEARER),
        await guarded.get("/health"),
        await guarded.get("/login"),
    ):
        assert r.headers["x-content-type-options"] == "nosniff"
