"""
Run the Python blocks of one docs page, in order, in one namespace, like a doctest
session: ``python run_page.py BLOCKS.json``, in the directory the blocks may write to.

The JSON file holds ``{"page": path, "blocks": [{"line", "source", "compile_only"}]}``.
Each block is compiled with ``PyCF_ALLOW_TOP_LEVEL_AWAIT``, under the page's name and
at the page's line numbers, so a traceback points into the Markdown file. A block that
awaits at top level runs on one event loop that lives as long as the page (a task it
starts goes on running into the next block); a block that does not await runs as
plain code, so it may call ``asyncio.run()``. The namespace's ``__name__`` is
``"__main__"``: the blocks run as a script would. A compile-only block is compiled and
not run. Exits non-zero, with a traceback, at the first block that raises.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import json
import sys
import types
import typing


def compile_block(page: str, line: int, source: str) -> types.CodeType:
    """Compile one block so that its line numbers are the page's."""
    padded = "\n" * (line - 1) + source
    code: types.CodeType = compile(
        padded, page, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True
    )
    return code


def run(page: str, blocks: list[dict[str, typing.Any]]) -> None:
    namespace: dict[str, object] = {"__name__": "__main__", "__file__": page}
    loop = asyncio.new_event_loop()
    try:
        for block in blocks:
            code = compile_block(page, block["line"], block["source"])
            if block["compile_only"]:
                continue
            if code.co_flags & inspect.CO_COROUTINE:
                loop.run_until_complete(eval(code, namespace))
            else:
                exec(code, namespace)
    finally:
        _close(loop)


def _close(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what the page left running, as ``asyncio.run`` does, and close the loop."""
    pending = asyncio.all_tasks(loop)
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.run_until_complete(loop.shutdown_default_executor())
    loop.close()


def main(argv: list[str]) -> int:
    with open(argv[1], encoding="utf-8") as f:
        spec = json.load(f)
    run(spec["page"], spec["blocks"])
    print(f"{spec['page']}: {len(spec['blocks'])} block(s) ran")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
