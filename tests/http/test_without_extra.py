"""fsjobs without the ``http`` extra: everything but the HTTP API imports and works."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import asyncio, importlib.abc, sys

    class NoExtra(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {"starlette", "uvicorn", "python_multipart", "multipart"}:
                raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
            return None

    sys.meta_path.insert(0, NoExtra())
    import fsjobs, fsjobs.cli

    async def main(root):
        queue = fsjobs.Queue(root)

        @queue.task(name="noextra.double")
        async def double(ctx: fsjobs.Context, n: int) -> int:
            return 2 * n

        job_id = await double.enqueue(n=21)
        await fsjobs.Worker(queue).run_until_empty()
        print("result", await queue.result(job_id))

    asyncio.run(main(sys.argv[1]))
    print("stats exit", fsjobs.cli.main(["--root", sys.argv[1], "stats"]))
    print("serve exit", fsjobs.cli.main(["--root", sys.argv[1], "serve", "json"]))
    try:
        import fsjobs.http
    except ImportError as exc:
        print("fsjobs.http:", exc)
    """
)


def test_fsjobs_works_without_the_http_extra(
    root: pathlib.Path, subprocess_env: dict[str, str]
) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(root)],
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "result 42" in proc.stdout
    assert "stats exit 0" in proc.stdout
    assert "serve exit 1" in proc.stdout
    assert "fsjobs serve needs the http extra: pip install 'fsjobs[http]'" in proc.stderr
    assert "fsjobs.http: No module named 'starlette'" in proc.stdout
