"""
Uploads and outputs: files in, files out.

    python examples/uploads_and_outputs.py [ROOT]

``job.with_uploads({...})`` attaches input files, as bytes or as a
``pathlib.Path`` to copy; they are written under ``jobs/<s>/<id>/uploads/``
before the job becomes visible. A running task finds them in ``ctx.uploads``
(name -> Path); a parameter named like an upload receives its bytes. Files the
task writes into ``ctx.output_dir`` stay in the job's folder, one directory per
attempt: ``jobs/<s>/<id>/attempts/<epoch>/outputs/``; ``JobState.outputs`` lists
the last attempt's, and ``queue.read_output(job_id, name)`` reads one.
"""

from __future__ import annotations

import asyncio
import hashlib
import pathlib
import sys
import tempfile

import fsjobs
from fsjobs import Context


async def main(root: str) -> None:
    queue = fsjobs.Queue(root)

    @queue.task(name="examples.uploads_and_outputs.summarise")
    def summarise(ctx: Context, photo: bytes, title: str) -> dict[str, object]:
        # `photo` is an upload passed as bytes; `notes` is only in ctx.uploads.
        notes = ctx.uploads["notes"].read_text(encoding="utf-8")
        summary = ctx.output_dir / "summary.txt"
        summary.write_text(
            f"{title}\nphoto: {len(photo)} bytes, sha256 {hashlib.sha256(photo).hexdigest()[:16]}\n"
            f"notes: {notes.strip()}\n",
            encoding="utf-8",
        )
        (ctx.output_dir / "thumbnail.bin").write_bytes(photo[:4])
        return {"uploads": sorted(ctx.uploads), "summary": str(summary)}

    with tempfile.TemporaryDirectory() as elsewhere:
        notes_file = pathlib.Path(elsewhere, "notes.txt")
        await asyncio.to_thread(notes_file.write_text, "taken at dawn\n", encoding="utf-8")
        # The "photo" upload fills the task's required `photo` parameter: push()
        # checks the arguments together with the uploads.
        job = summarise.job(title="Harbour").with_uploads(
            {"photo": b"\x89PNG fake image bytes", "notes": notes_file}
        )
        job_id = await queue.push(job)
    # push() copied the file into the job's folder: the original may go.

    await fsjobs.Worker(queue).run_until_empty()
    result = await queue.result(job_id)
    assert isinstance(result, dict)
    print(f"uploads the task saw: {result['uploads']}")

    summary = pathlib.Path(str(result["summary"]))
    print(f"output folder: {summary.parent.relative_to(root)}")
    state = await queue.get(job_id)
    print(f"outputs: {list(state.outputs)}")
    print((await queue.read_output(job_id, "summary.txt")).decode(), end="")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        asyncio.run(main(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory(prefix="fsjobs-uploads-") as tmp:
            asyncio.run(main(tmp))
