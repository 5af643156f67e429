"""
Take the dashboard screenshots of docs/http.md: ``python scripts/dashboard_screenshot.py [DIR]``.

Fills a temporary root with jobs in most statuses (completed, failed, cancelled,
held, scheduled, pending, and one running at 60 %), serves the app with uvicorn
on a free localhost port with a worker for the running job, and has Debian's
chromium (through Playwright) save ``dashboard.png`` (the overview) and
``dashboard-job.png`` (the running job's page) into DIR (default: docs/). Needs
the test dependencies (``.nox/tests/bin/python``) and ``apt-get install chromium``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import pathlib
import socket
import sys
import tempfile
import threading
import time

import uvicorn
from playwright.sync_api import sync_playwright

import fsjobs
from fsjobs.http import create_app

REPO = pathlib.Path(__file__).resolve().parent.parent
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
GATE = threading.Event()


async def setup(root: str) -> tuple[fsjobs.Queue, fsjobs.Queue, str]:
    shop = fsjobs.Queue(root, "shop")
    reports = fsjobs.Queue(root, "reports")

    @shop.task(name="shop.resize_image")
    async def resize_image(ctx: fsjobs.Context, path: str, width: int) -> dict[str, object]:
        await ctx.progress(100, "resized")
        return {"path": path, "width": width}

    @shop.task(name="shop.send_receipt", max_attempts=2)
    async def send_receipt(ctx: fsjobs.Context, email: str) -> None:
        if email.startswith("nobody"):
            raise ConnectionRefusedError("smtp.example.com:25 refused the connection")

    @reports.task(name="reports.render_month")
    def render_month(ctx: fsjobs.Context, month: str) -> str:
        ctx.progress_sync(60, "rendering page 6 of 10")
        GATE.wait(120)
        return f"{month}.pdf"

    for i, width in enumerate((320, 640, 1280)):
        await resize_image.enqueue(path=f"photos/{i:03d}.jpg", width=width)
    await send_receipt.enqueue(email="ann@example.com")
    no_wait = fsjobs.Backoff(initial=0)
    await shop.push(send_receipt.job(email="nobody@example.com").with_backoff(no_wait))
    await fsjobs.Worker(shop).run_until_empty(wait_scheduled=True, max_wait=10)
    cancelled = await resize_image.enqueue(path="photos/004.jpg", width=64)
    await shop.cancel(cancelled)
    held = await resize_image.enqueue(path="photos/005.jpg", width=2048)
    await shop.hold(held)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=6)
    await shop.push(resize_image.job(path="photos/006.jpg", width=800).with_scheduled_at(later))
    for i in range(2):
        await resize_image.enqueue(path=f"photos/01{i}.jpg", width=320)
    report = await render_month.enqueue(month="2026-11")
    return shop, reports, report


def main() -> int:
    out = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "docs"
    root = tempfile.mkdtemp(prefix="fsjobs-screenshot-")
    shop, reports, report = asyncio.run(setup(root))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(shop), port=port, log_level="warning"))
    worker = fsjobs.Worker(reports)

    async def serve() -> None:
        running = asyncio.ensure_future(worker.run())
        await server.serve()
        worker.stop()
        await running

    thread = threading.Thread(target=asyncio.run, args=(serve(),))
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while asyncio.run(shop.get(report)).progress != 60 or not server.started:
            assert time.monotonic() < deadline, "the report job never reached 60 %"
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port}"
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 760})
            page.goto(f"{url}/")
            page.screenshot(path=str(out / "dashboard.png"), full_page=True)
            page.goto(f"{url}/ui/jobs/{report}")
            page.wait_for_selector("#progress-message:has-text('rendering')")
            page.screenshot(path=str(out / "dashboard-job.png"))
            browser.close()
    finally:
        GATE.set()
        server.should_exit = True
        thread.join()
    sys.stdout.write(f"wrote {out / 'dashboard.png'} and {out / 'dashboard-job.png'} ({root})\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
