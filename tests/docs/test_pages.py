"""
The docs cannot drift from the code's public surface: the command-line page lists
every command ``fsjobs --help`` lists, no page names a command that does not exist,
and the API reference documents every name in ``fsjobs.__all__``.
"""

from __future__ import annotations

import argparse
import re
import shlex
from collections.abc import Iterator

import fsjobs
import fsjobs.cli
from tests.conftest import REPO
from tests.docs.blocks import fences

DOCS = REPO / "docs"
PAGES = sorted(
    [REPO / "README.md", *(p for p in DOCS.rglob("*.md") if DOCS / "_build" not in p.parents)]
)
CODE_SPAN = re.compile(r"(`+)(?!`)(.+?)(?<!`)\1(?!`)")
COMMAND = re.compile(r"^[a-z][a-z-]*$")
PROMPT = re.compile(r"^\s*[$#]\s+")
SHELL_SEPARATOR = re.compile(r"&&|\|\||;|\|")
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def commands() -> set[str]:
    """The subcommands ``fsjobs --help`` lists, from the CLI's own parser."""
    parser = fsjobs.cli.parser()[0]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    raise AssertionError("the fsjobs parser has no subcommands")


def command_of(shell: str) -> str | None:
    """
    The subcommand of one shell command line, if it runs fsjobs: ``fsjobs ls``,
    ``FSJOBS_ROOT=/srv fsjobs --root R worker app``, ``python3 -m fsjobs demo``.
    """
    try:
        words = shlex.split(shell, comments=False)
    except ValueError:
        words = shell.split()
    while words and ENV_ASSIGNMENT.match(words[0]):
        words = words[1:]
    if words[:2] in (["python3", "-m"], ["python", "-m"]):
        words = words[2:]
    if not words or words[0] != "fsjobs":
        return None
    words = words[1:]
    while words and words[0].startswith("--root"):
        words = words[1:] if "=" in words[0] else words[2:]
    if not words or not COMMAND.match(words[0]):
        return None  # fsjobs --help, --version, or a placeholder
    return words[0]


def invocations(text: str) -> Iterator[tuple[int, str]]:
    """(line, subcommand) of every fsjobs command in console blocks and in code spans."""
    fenced: set[int] = set()
    for fence in fences(text):
        end = fence.body_line + len(fence.body)
        fenced.update(range(fence.line, end + 1))
        if fence.language not in ("console", "shell", "bash", "sh", "shell-session"):
            continue
        for offset, line in enumerate(fence.body):
            for part in SHELL_SEPARATOR.split(PROMPT.sub("", line)):
                command = command_of(part.strip())
                if command:
                    yield fence.body_line + offset, command
    for number, line in enumerate(text.splitlines(), 1):
        if number in fenced:
            continue
        for span in CODE_SPAN.finditer(line):
            command = command_of(span.group(2).strip())
            if command:
                yield number, command


def test_command_of() -> None:
    """The parser of shell lines finds the subcommand however fsjobs is started."""
    assert command_of("fsjobs ls --status failed") == "ls"
    assert command_of("FSJOBS_ROOT=/srv/jobs fsjobs worker app --concurrency 20") == "worker"
    assert command_of("fsjobs --root /srv/jobs fsck --repair") == "fsck"
    assert command_of("fsjobs --root=/srv/jobs doctor") == "doctor"
    assert command_of("python3 -m fsjobs demo") == "demo"
    assert command_of("fsjobs --help") is None
    assert command_of("usermod -aG fsjobs worker") is None
    text = "Run `fsjobs nosuch ID` or:\n\n```console\n$ groupadd fsjobs && fsjobs ls\n```\n"
    assert list(invocations(text)) == [(4, "ls"), (1, "nosuch")]


def test_cli_page_lists_every_command() -> None:
    """docs/cli.md describes every command of ``fsjobs --help``, as `fsjobs NAME ...`."""
    documented = {command for _, command in invocations((DOCS / "cli.md").read_text())}
    missing = sorted(commands() - documented)
    assert len(commands()) >= 15
    assert not missing, f"docs/cli.md does not describe: {missing}"


def test_pages_name_only_real_commands() -> None:
    """No page shows a command that fsjobs does not have (a renamed or a future one)."""
    known = commands()
    wrong = [
        f"{page.relative_to(REPO)}:{line}: fsjobs {command}"
        for page in PAGES
        for line, command in invocations(page.read_text(encoding="utf-8"))
        if command not in known
    ]
    assert not wrong, "no such fsjobs command:\n" + "\n".join(wrong)


def test_api_reference_covers_every_public_name() -> None:
    """docs/api.md has an autodoc (or py:data) entry for each name in fsjobs.__all__."""
    text = (DOCS / "api.md").read_text(encoding="utf-8")
    entries = set(re.findall(r"^\.\. (?:auto\w+|py:data):: fsjobs\.(\w+)", text, re.MULTILINE))
    missing = sorted(set(fsjobs.__all__) - entries)
    assert not missing, f"docs/api.md does not document: {missing}"
    assert ".. automodule:: fsjobs.testing" in text
