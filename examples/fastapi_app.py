"""
The fsjobs HTTP API and dashboard, mounted in a FastAPI app beside its own routes.

    python examples/fastapi_app.py [ROOT]      # a demo run: calls the app in-process
    FSJOBS_ROOT=/srv/jobs FSJOBS_TOKEN=s3cret uvicorn examples.fastapi_app:app

``create_app`` returns an ASGI app: FastAPI (or Starlette) mounts it under a
prefix, here ``/fsjobs``, and every link of its dashboard stays under it. The
app's own route ``POST /photos`` pushes a job itself; clients may also submit
through ``POST /fsjobs/jobs/{task}``. The demo run below makes the requests a
client would make, through httpx, without opening a port (FastAPI and httpx
come from the test dependencies, not from fsjobs).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
import tempfile

import fastapi
import httpx

import fsjobs
from fsjobs.http import create_app

if __name__ == "__main__":
    ROOT = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="fsjobs-fastapi-")
else:  # under uvicorn
    ROOT = os.environ.get("FSJOBS_ROOT") or tempfile.mkdtemp(prefix="fsjobs-fastapi-")
TOKEN = os.environ.get("FSJOBS_TOKEN") or secrets.token_urlsafe(24)

queue = fsjobs.Queue(ROOT)


@queue.task(name="examples.fastapi_app.thumbnail", max_attempts=2)
async def thumbnail(ctx: fsjobs.Context, width: int, photo: bytes) -> dict[str, int]:
    """Pretends to shrink `photo` (an upload): writes an output file and returns sizes."""
    await ctx.progress(50, "resizing")
    small = photo[: max(1, len(photo) * width // 1000)]
    (ctx.output_dir / "thumbnail.bin").write_bytes(small)
    return {"width": width, "bytes_in": len(photo), "bytes_out": len(small)}


app = fastapi.FastAPI(title="photo service")
app.mount("/fsjobs", create_app(queue, token=TOKEN))


@app.post("/photos/{width}")
async def upload_photo(width: int, request: fastapi.Request) -> dict[str, str]:
    """The app's own route: the body is the photo; a job makes the thumbnail."""
    photo = await request.body()
    job_id = await queue.push(thumbnail.job(width=width).with_uploads({"photo": photo}))
    return {"job_id": job_id, "status_url": f"/fsjobs/jobs/{job_id}"}


async def demo() -> None:
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://photos.example") as c:
        mine = (await c.post("/photos/200", content=b"\x89PNG" + b"x" * 996)).json()
        print(f"POST /photos/200 -> job {mine['job_id']}")
        r = await c.post(
            "/fsjobs/jobs/examples.fastapi_app.thumbnail",
            headers=bearer,
            data={"kwargs": json.dumps({"width": 500}), "priority": "-1"},
            files={"photo": ("cat.png", b"\x89PNG" + b"y" * 1996, "image/png")},
        )
        print(f"POST /fsjobs/jobs/examples.fastapi_app.thumbnail -> {r.status_code} {r.json()}")
        theirs = r.json()["job_id"]
        print("without the token:", (await c.get("/fsjobs/stats")).status_code)

        ran = await fsjobs.Worker(queue).run_until_empty()  # usually `fsjobs worker` elsewhere
        print(f"a worker ran {ran} jobs")

        for job_id in (mine["job_id"], theirs):
            body = (await c.get(f"/fsjobs/jobs/{job_id}/results", headers=bearer)).json()
            out = await c.get(f"/fsjobs/jobs/{job_id}/outputs/thumbnail.bin", headers=bearer)
            print(f"{job_id}: {body['status']}, result {body['result']}, {len(out.content)} bytes")
        page = await c.get("/fsjobs/", headers=bearer)
        print("dashboard links stay under the mount:", 'href="/fsjobs/ui/jobs"' in page.text)
    queue.close()


if __name__ == "__main__":
    asyncio.run(demo())
