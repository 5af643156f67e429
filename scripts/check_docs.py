"""
Check the documentation: ``python scripts/check_docs.py`` (run by ``nox -s docs``
before the Sphinx build, which checks the rest with warnings as errors).

Three promises, each easy to break without noticing:

1. Every runnable example is documented: each ``examples/*.py`` is mentioned, as
   ``examples/<name>.py``, in README.md or in some page under ``docs/``.
2. Every relative link resolves, on GitHub as on the site: in README.md, CHANGELOG.md
   and every ``docs/**/*.md``, each link or image that is not a URL points to a file
   or directory that exists, and a ``#fragment`` into a Markdown file names one of its
   headings (GitHub's anchor rules, which MyST's ``myst_heading_anchors`` follows).
3. Every page is in the site: each ``docs/**/*.md`` is listed in the ``{toctree}`` of
   ``docs/index.md``, and every entry there is a page.

Links inside code (fenced blocks, MyST directives, backtick spans) are ignored.
Standard library only, so it runs before anything is installed. Exits 1 with one line
per problem.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
INDEX = DOCS / "index.md"
BUILD = DOCS / "_build"

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+[\"'(][^)]*)?\)")
REFERENCE_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s.*)?$")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
HTML_ANCHOR = re.compile(r"""<a\s+(?:name|id)=["']([^"']+)["']""")
URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
TOCTREE = re.compile(r"^ {0,3}(`{3,}|~{3,})\{toctree\}")


def prose_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) outside fenced code blocks, with code spans blanked out."""
    fence: str | None = None
    for number, line in enumerate(text.splitlines(), 1):
        match = FENCE.match(line)
        if fence is None and match:
            fence = match.group(1)
            continue
        if fence is not None:
            if match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence):
                fence = None
            continue
        yield number, CODE_SPAN.sub(lambda m: " " * len(m.group(0)), line)


def links(text: str) -> Iterator[tuple[int, str]]:
    """(line number, target) of every inline link, image and reference definition."""
    for number, line in prose_lines(text):
        for link in INLINE_LINK.finditer(line):
            yield number, link.group(1)
        definition = REFERENCE_DEF.match(line)
        if definition:
            yield number, definition.group(1)


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link renders as its text
    text = text.replace("`", "").replace("*", "").lower()
    kept = []
    for ch in text:
        category = unicodedata.category(ch)
        if ch in " -" or category[0] in "LMN" or category == "Pc":
            kept.append(ch)
    return "".join(kept).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every fragment that can point into a Markdown file."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    text = path.read_text(encoding="utf-8")
    for _, line in prose_lines(text):
        found.update(HTML_ANCHOR.findall(line))
    fence: str | None = None
    for line in text.splitlines():  # headings, from the raw lines (code spans kept)
        match = FENCE.match(line)
        if match:
            fence = None if fence else match.group(1)
            continue
        if fence:
            continue
        heading = HEADING.match(line)
        if heading:
            base = slug(heading.group(2))
            n = seen.get(base, 0)
            seen[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
    return found


def check_link(page: Path, number: int, target: str) -> str | None:
    """A problem with one link, or None."""
    if not target or URL.match(target) or target.startswith("//"):
        return None
    path_part, _, fragment = target.partition("#")
    path_part = path_part.split("?", 1)[0]
    where = f"{page.relative_to(REPO)}:{number}"
    dest = page if not path_part else (page.parent / path_part).resolve()
    if not dest.exists():
        return f"{where}: link to {target!r}: {path_part!r} does not exist"
    if fragment and dest.is_file() and dest.suffix == ".md" and fragment not in anchors(dest):
        return f"{where}: link to {target!r}: no heading with the anchor #{fragment}"
    return None


def doc_pages() -> list[Path]:
    """Every Markdown page of the site, build output excluded."""
    return sorted(p for p in DOCS.rglob("*.md") if BUILD not in p.parents)


def toctree_entries(text: str) -> Iterator[str]:
    """The entries of every ``{toctree}`` fence: its lines that are not options or blank."""
    fence: str | None = None
    for line in text.splitlines():
        if fence is None:
            match = TOCTREE.match(line)
            if match:
                fence = match.group(1)
            continue
        stripped = line.strip()
        if stripped.startswith(fence[0] * len(fence)) and not stripped.strip(fence[0]):
            fence = None
        elif stripped and not stripped.startswith(":"):
            yield stripped


def main() -> int:
    pages = doc_pages()
    extra = [REPO / "README.md", REPO / "CHANGELOG.md"]
    checked = [*pages, *(p for p in extra if p.exists())]
    texts = {page: page.read_text(encoding="utf-8") for page in checked}
    problems: list[str] = []

    # 1. Every example is mentioned somewhere.
    for example in sorted((REPO / "examples").glob("*.py")):
        mention = f"examples/{example.name}"
        if not any(mention in text for text in texts.values()):
            problems.append(f"{mention} is not mentioned in README.md or any page under docs/")

    # 2. Every relative link resolves.
    for page, text in texts.items():
        for number, target in links(text):
            problem = check_link(page, number, target)
            if problem:
                problems.append(problem)

    # 3. Every docs page is in the index's toctree, and every entry is a page.
    if not INDEX.exists():
        problems.append("docs/index.md does not exist")
    else:
        listed = set()
        for entry in toctree_entries(texts[INDEX]):
            path = (DOCS / entry).with_suffix(".md")
            if not path.exists():
                problems.append(f"docs/index.md: toctree entry {entry!r}: no {path.name}")
            listed.add(path.resolve())
        if not listed:
            problems.append("docs/index.md has no {toctree} with any page")
        for page in pages:
            if page != INDEX and page.resolve() not in listed:
                name = page.relative_to(DOCS).as_posix()
                problems.append(f"docs/{name} is not in the toctree of docs/index.md")

    if problems:
        sys.stderr.write(f"check_docs: {len(problems)} problem(s):\n")
        sys.stderr.writelines(f"  {p}\n" for p in problems)
        return 1
    sys.stdout.write(
        f"check_docs: {len(pages)} docs pages, README.md, CHANGELOG.md and "
        f"{len(list((REPO / 'examples').glob('*.py')))} examples: all links resolve\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
