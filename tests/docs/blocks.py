"""
Find the Python code blocks of a Markdown page (MyST or GitHub flavoured).

A block is a fence whose info string is ``python``, or a MyST ``{code-block} python``
(also ``{code}``, ``{code-cell}``) directive. The directive form may carry
``:class: compile-only``: such a block (another library's code on a migration page,
say) is compiled but not run. Every other fence is not Python and is skipped;
fences using another name for Python (``py``, ``python3``, ``pycon``...) are
reported, so a block cannot leave the tests by a change of spelling.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
DIRECTIVE = re.compile(r"^\{(?:code-block|code|code-cell|sourcecode)\}\s*(?P<lang>\S*)")
OPTION = re.compile(r"^:(?P<name>[\w-]+):\s*(?P<value>.*)$")
COMPILE_ONLY = "compile-only"
#: Other names for Python: a block must say ``python`` to be found.
PYTHON_ALIASES = frozenset({"py", "py3", "python3", "pycon", "ipython", "ipython3", "pytb"})


@dataclass(frozen=True)
class Block:
    """One code block: where it starts (1-based line of its first code line) and its text."""

    line: int
    source: str
    compile_only: bool = False


@dataclass(frozen=True)
class Fence:
    """A fenced block of any language."""

    line: int  # the line of the opening fence, 1-based
    language: str
    options: dict[str, str]
    body_line: int  # the first line of the body (after any directive options), 1-based
    body: list[str]


def fences(text: str) -> Iterator[Fence]:
    """Every top-level fence of the page (fences nested in a longer fence are its body)."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match or (match.group("fence")[0] == "`" and "`" in match.group("info")):
            i += 1
            continue
        indent = len(match.group("indent"))
        fence = match.group("fence")
        info = match.group("info").strip()
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines):
            close = FENCE.match(lines[i])
            if (
                close
                and close.group("fence")[0] == fence[0]
                and len(close.group("fence")) >= len(fence)
                and not close.group("info").strip()
            ):
                break
            body.append(_dedent(lines[i], indent))
            i += 1
        i += 1  # past the closing fence (or the end of an unclosed one)
        language, options, skip = _language(info, body)
        yield Fence(start + 1, language, options, start + 2 + skip, body[skip:])


def _dedent(line: str, indent: int) -> str:
    """Remove up to `indent` leading spaces (the fence's own indentation, in a list item)."""
    width = len(line) - len(line.lstrip(" "))
    return line[min(indent, width) :]


def _language(info: str, body: list[str]) -> tuple[str, dict[str, str], int]:
    """The fence's language, its directive options, and how many body lines they took."""
    directive = DIRECTIVE.match(info)
    if directive is None:
        return (info.split()[0] if info else ""), {}, 0
    options: dict[str, str] = {}
    skip = 0
    for line in body:
        option = OPTION.match(line.strip())
        if option is None:
            break
        options[option.group("name")] = option.group("value").strip()
        skip += 1
    if skip < len(body) and not body[skip].strip() and options:
        skip += 1  # the blank line that ends the options
    return directive.group("lang"), options, skip


def python_blocks(text: str) -> list[Block]:
    """The page's Python blocks, in order."""
    blocks = []
    for fence in fences(text):
        if fence.language != "python":
            continue
        classes = fence.options.get("class", "").split()
        blocks.append(Block(fence.body_line, "\n".join(fence.body) + "\n", COMPILE_ONLY in classes))
    return blocks


def misnamed_python(text: str) -> list[int]:
    """Lines of fences that name Python in a way `python_blocks` does not pick up."""
    return [f.line for f in fences(text) if f.language.lower() in PYTHON_ALIASES]
