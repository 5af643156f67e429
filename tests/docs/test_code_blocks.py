"""
Every fsjobs code block in the docs runs: the ``python`` blocks of each page under
``docs/`` and of README.md.

Each page runs in its own subprocess (the task registry is process-wide, so pages
cannot leak tasks into each other), in a fresh temporary working directory, with
``FSJOBS_ROOT`` pointing at a temporary root. Its blocks run in order in one namespace,
like a doctest session, and may ``await`` at top level (see `tests/docs/run_page.py`).
So a page's blocks must be complete: each import, task and variable a block uses is
defined in it or in an earlier block of the same page.

A block that cannot run (another library's code on a migration page) is a MyST
directive marked ``:class: compile-only``; it is still compiled. Shell transcripts are
``console`` blocks, not Python, and are not run.
"""

from __future__ import annotations

import ast
import json
import pathlib
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.docs.blocks import Block, fences, misnamed_python, python_blocks

DOCS = REPO / "docs"
RUNNER = pathlib.Path(__file__).with_name("run_page.py")
TIMEOUT = 120  # seconds per page; a hang guard, not a timing assertion

PAGES = sorted(
    [REPO / "README.md", *(p for p in DOCS.rglob("*.md") if DOCS / "_build" not in p.parents)]
)
BLOCKS = {page: python_blocks(page.read_text(encoding="utf-8")) for page in PAGES}
PAGES_WITH_CODE = [page for page in PAGES if BLOCKS[page]]
#: A string that names an absolute path: a block must not write outside its sandbox.
ABSOLUTE_PATH = re.compile(r"^(/|~/)[\w.-]")


def name(page: pathlib.Path) -> str:
    return page.relative_to(REPO).as_posix()


def test_the_extractor_finds_the_blocks() -> None:
    """
    The pages have Python blocks and the extractor finds them: a broken extractor that
    found none would otherwise let every test below pass by testing nothing.
    """
    assert sum(len(b) for b in BLOCKS.values()) >= 20
    assert len(BLOCKS[REPO / "README.md"]) >= 1
    assert len(BLOCKS[DOCS / "guide.md"]) >= 15


def test_the_extractor_on_every_form() -> None:
    """Fences of three and four backticks and tildes, in lists, directives and options."""
    text = "\n".join(
        [
            "# A page",
            "```python",
            "a = 1",
            "```",
            "````markdown",
            "```python",
            "not_code = 'inside a longer fence'",
            "```",
            "````",
            "1. a list item:",
            "   ~~~python",
            "   b = a + 1",
            "   ~~~",
            "```{code-block} python",
            ":class: compile-only",
            "",
            "import celery",
            "```",
            "```{code-block} python",
            ":caption: runs",
            "",
            "c = b + 1",
            "```",
            "```console",
            "$ python -c 'print(1)'",
            "```",
            "```py",
            "d = 0",
            "```",
        ]
    )
    assert python_blocks(text) == [
        Block(3, "a = 1\n"),
        Block(12, "b = a + 1\n"),
        Block(17, "import celery\n", compile_only=True),
        Block(22, "c = b + 1\n"),
    ]
    assert misnamed_python(text) == [27]
    assert [f.language for f in fences(text)] == [
        "python",
        "markdown",
        "python",
        "python",
        "python",
        "console",
        "py",
    ]


@pytest.mark.parametrize("page", PAGES, ids=name)
def test_python_blocks_say_python(page: pathlib.Path) -> None:
    """A block in Python is fenced as ``python`` (``py`` or ``pycon`` would not be run)."""
    lines = misnamed_python(page.read_text(encoding="utf-8"))
    assert not lines, f"{name(page)}: fence a Python block as ```python (lines {lines})"


def run_blocks(
    page: str, blocks: list[Block], tmp_path: pathlib.Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """Run `blocks` as the page `page` with tests/docs/run_page.py, in a fresh directory."""
    tmp_path.mkdir(exist_ok=True)
    spec = tmp_path / "blocks.json"
    spec.write_text(
        json.dumps(
            {
                "page": page,
                "blocks": [
                    {"line": b.line, "source": b.source, "compile_only": b.compile_only}
                    for b in blocks
                ],
            }
        ),
        encoding="utf-8",
    )
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    return subprocess.run(
        [sys.executable, "-W", "error", str(RUNNER), str(spec)],
        cwd=cwd,
        env=dict(env, FSJOBS_ROOT=str(tmp_path / "root")),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def test_the_runner(tmp_path: pathlib.Path, subprocess_env: dict[str, str]) -> None:
    """
    Blocks share a namespace and may await; a compile-only block is compiled, not run;
    a failing block fails the page with a traceback at the page's own line.
    """
    text = "\n".join(
        [
            "```python",
            "import asyncio",
            "n = 1",
            "```",
            "```{code-block} python",
            ":class: compile-only",
            "",
            "import a_library_that_is_not_installed",
            "```",
            "```python",
            "await asyncio.sleep(0)",
            "n += 1",
            "print('n is', n)",
            "```",
            "```python",
            "",
            "raise ValueError(n)",
            "```",
        ]
    )
    blocks = python_blocks(text)
    ok = run_blocks("docs/example.md", blocks[:3], tmp_path / "ok", subprocess_env)
    assert ok.returncode == 0, ok.stderr
    assert "n is 2" in ok.stdout
    bad = run_blocks("docs/example.md", blocks, tmp_path / "bad", subprocess_env)
    assert bad.returncode != 0
    assert 'File "docs/example.md", line 17' in bad.stderr
    assert "ValueError: 2" in bad.stderr
    broken = [Block(1, "def f(:\n", compile_only=True)]
    assert run_blocks("docs/x.md", broken, tmp_path / "broken", subprocess_env).returncode != 0


#: Methods of an HTTP client whose first argument is a URL path, not a file's.
HTTP_CALLS = frozenset({"get", "post", "put", "patch", "delete", "head", "request", "stream"})


def url_paths(tree: ast.AST) -> set[int]:
    """The string constants that are the URL of an HTTP client call (``client.get("/jobs")``)."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in HTTP_CALLS
            and node.args
        ):
            url = node.args[-1] if node.func.attr in ("request", "stream") else node.args[0]
            found |= {id(n) for n in ast.walk(url) if isinstance(n, ast.Constant)}
    return found


def test_url_paths_are_not_files() -> None:
    """An HTTP call's URL path is exempt from the sandbox check; a file path beside it is not."""
    tree = ast.parse(
        'client.get("/jobs")\nclient.post(f"/jobs/{x}/cancel")\n'
        'client.request("GET", "/stats")\nopen("/etc/passwd")\nclient.get(url, data="/etc/x")\n'
    )
    urls = url_paths(tree)
    flagged = [
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in urls
    ]
    assert "/etc/passwd" in flagged and "/etc/x" in flagged
    assert not {"/jobs", "/jobs/", "/cancel", "/stats"} & set(flagged)


def outside_the_sandbox(page: pathlib.Path) -> list[str]:
    """Absolute paths named by the page's blocks that run: each would write outside the test."""
    found = []
    for block in BLOCKS[page]:
        if block.compile_only:
            continue
        tree = ast.parse("\n" * (block.line - 1) + block.source, name(page))
        urls = url_paths(tree)
        found += [
            f"{name(page)}:{node.lineno}: {node.value!r}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and ABSOLUTE_PATH.match(node.value)
            and id(node) not in urls
        ]
    return found


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=name)
def test_page_runs(
    page: pathlib.Path, tmp_path: pathlib.Path, subprocess_env: dict[str, str]
) -> None:
    """
    The page's blocks run, in order, in one namespace, in a subprocess of their own.
    First, they must name no absolute path: a block writes only under the directory the
    test gives it (a root is a relative path, or ``FSJOBS_ROOT``).
    """
    outside = outside_the_sandbox(page)
    assert not outside, "blocks name paths outside the test's directory:\n" + "\n".join(outside)
    proc = run_blocks(name(page), BLOCKS[page], tmp_path, subprocess_env)
    report = f"exit code {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    assert proc.returncode == 0, report
    assert f"{len(BLOCKS[page])} block(s) ran" in proc.stdout, report
    for sign in ("Traceback", "Exception ignored", "Warning:", "was never awaited"):
        assert sign not in proc.stderr, report
