"""
The dashboard in a real headless browser (Playwright driving Debian's chromium):
sign in, see a pushed job, open it, cancel it, see it cancelled; and watch a
running job's progress arrive live, with no reload by hand.

Playwright's own browser download is not reachable here, so the browser is
the system's ``chromium`` (``apt-get install chromium``). Without it the tests
skip and say so, unless FSJOBS_REQUIRE_BROWSER=1 (CI sets it): then they fail.
Screenshots of each step go to $FSJOBS_SCREENSHOTS when it names a directory.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import socket
import time
import typing
from collections.abc import Iterator

import httpx
import pytest

import fsjobs
from tests.http import tasks
from tests.integration.harness import DEADLINE, EXIT_TIMEOUT, Children

if typing.TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TOKEN = "browser-test-token-93c1"
#: how long Playwright waits for something to appear (a guard, not a timing assertion)
WAIT_MS = 30_000


def _browser_missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed (the test dependency group has it)"
    if not os.path.exists(CHROMIUM):
        return f"no chromium at {CHROMIUM} (apt-get install chromium)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    missing = _browser_missing()
    if missing is not None:
        if os.environ.get("FSJOBS_REQUIRE_BROWSER") == "1":
            pytest.fail(f"FSJOBS_REQUIRE_BROWSER=1 but {missing}")
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(
    tmp_path: pathlib.Path, root: pathlib.Path, subprocess_env: dict[str, str]
) -> Iterator[tuple[str, Children]]:
    """``fsjobs serve`` with a token, as a real process; its URL."""
    children = Children(tmp_path, {**subprocess_env, "FSJOBS_ROOT": str(root)})
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    port = free_port()
    proc = children.start(
        "fsjobs", "serve", "tests.http.served", "--root", root, "--port", str(port),
        "--host", "127.0.0.1", "--token-file", token_file,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    give_up = time.monotonic() + DEADLINE
    while True:
        try:
            if httpx.get(f"{url}/health").status_code == 200:
                break
        except httpx.TransportError:
            pass
        children.check_alive([proc])
        assert time.monotonic() < give_up, children.report()
        time.sleep(0.05)
    try:
        yield url, children
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=EXIT_TIMEOUT)
        children.kill_all()


def shot(page: Page, name: str) -> None:
    target = os.environ.get("FSJOBS_SCREENSHOTS")
    if target:
        page.screenshot(path=str(pathlib.Path(target) / f"{name}.png"), full_page=True)


def sign_in(browser: Browser, url: str) -> Page:
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.set_default_timeout(WAIT_MS)
    page.goto(f"{url}/")
    expect(page).to_have_url(f"{url}/login?next=%2F")
    page.fill("input[name=token]", "wrong")
    page.click("button[type=submit]")
    expect(page.get_by_role("alert")).to_have_text("Wrong token.")
    page.fill("input[name=token]", TOKEN)
    shot(page, "login")
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{url}/")
    return page


def test_sign_in_see_a_job_open_it_cancel_it(
    browser: Browser, server: tuple[str, Children], root: pathlib.Path
) -> None:
    from playwright.sync_api import expect

    url, _ = server
    queue = fsjobs.Queue(root)
    job_id = queue.store.push_many(
        [(fsjobs.Job(func=tasks.ADD, kwargs={"a": 1, "b": 2}), "default")]
    )[0]
    queue.close()

    page = sign_in(browser, url)
    expect(page.locator("h1")).to_have_text("Queues")
    row = page.locator("tr", has_text=job_id)
    expect(row).to_contain_text("pending")
    shot(page, "overview")
    page.click(f"text={job_id}")
    expect(page).to_have_url(f"{url}/ui/jobs/{job_id}")
    expect(page.locator("#status")).to_have_text("pending")
    expect(page.locator("#kwargs")).to_contain_text('"b": 2')
    shot(page, "job-pending")
    page.get_by_role("button", name="Cancel").click()
    expect(page).to_have_url(f"{url}/ui/jobs/{job_id}")
    expect(page.locator("#status")).to_have_text("cancelled")
    expect(page.get_by_role("button", name="Retry")).to_be_visible()
    expect(page.get_by_role("button", name="Cancel")).to_have_count(0)
    shot(page, "job-cancelled")
    r = httpx.get(f"{url}/jobs/{job_id}", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.json()["status"] == "cancelled", "the cancel reached the queue, not just the page"
    page.goto(f"{url}/ui/jobs?status=cancelled")
    expect(page.locator("tr", has_text=job_id)).to_contain_text("cancelled")
    page.goto(f"{url}/")
    page.get_by_role("button", name="Pause").click()  # the queue's own button, with its CSRF token
    expect(page).to_have_url(f"{url}/")
    expect(page.locator("tr", has_text="default").locator(".badge.paused")).to_have_text("paused")
    assert fsjobs.SyncQueue(root).info().paused, "the pause reached the root"
    page.get_by_role("button", name="Resume").click()
    expect(page.get_by_role("button", name="Pause")).to_be_visible()
    assert not fsjobs.SyncQueue(root).info().paused
    page.close()


def test_live_progress_without_reloading_by_hand(
    browser: Browser, server: tuple[str, Children], root: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    from playwright.sync_api import expect

    url, children = server
    gate = tmp_path / "gate"
    queue = fsjobs.Queue(root)
    job_id = queue.store.push_many(
        [(fsjobs.Job(func=tasks.GATED, kwargs={"gate": str(gate)}), "default")]
    )[0]
    queue.close()
    page = sign_in(browser, url)
    page.goto(f"{url}/ui/jobs/{job_id}")
    expect(page.locator("#status")).to_have_text("pending")
    children.start("fsjobs", "worker", "tests.http.served", "--root", root)
    expect(page.locator("#progress-message")).to_have_text("waiting for the gate")
    expect(page.locator("#progress")).to_have_text("30.0%")
    expect(page.locator("#status")).to_have_text("running")
    shot(page, "job-running")
    gate.touch()
    expect(page.locator("#status")).to_have_text("completed")
    expect(page.locator("#result")).to_contain_text('"through"')
    page.close()
