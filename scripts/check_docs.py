"""
Check the documentation: ``python scripts/check_docs.py`` (run by ``nox -s docs``).

Three promises, each easy to break without noticing:

1. Every runnable example is documented: each ``examples/*.py`` is mentioned, as
   ``examples/<name>.py``, in README.md or in some ``docs/*.md``.
2. Every relative link resolves: in README.md and ``docs/*.md``, each link or image
   that is not a URL points to a file or directory that exists, and a ``#fragment``
   into a Markdown file names one of its headings (GitHub's anchor rules).
3. Every page is reachable: each ``docs/*.md`` is linked from ``docs/index.md``.

Links inside code (fenced blocks and backtick spans) are ignored. Standard library
only, so it runs before anything is installed. Exits 1 with one line per problem.
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

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+[\"'(][^)]*)?\)")
REFERENCE_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s.*)?$")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
HTML_ANCHOR = re.compile(r"""<a\s+(?:name|id)=["']([^"']+)["']""")
URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


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
        for match in INLINE_LINK.finditer(line):
            yield number, match.group(1)
        match = REFERENCE_DEF.match(line)
        if match:
            yield number, match.group(1)


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


def main() -> int:
    pages = sorted(DOCS.glob("*.md"))
    readme = REPO / "README.md"
    checked = [*pages, *([readme] if readme.exists() else [])]
    texts = {page: page.read_text(encoding="utf-8") for page in checked}
    problems: list[str] = []

    # 1. Every example is mentioned somewhere.
    for example in sorted((REPO / "examples").glob("*.py")):
        mention = f"examples/{example.name}"
        if not any(mention in text for text in texts.values()):
            problems.append(f"{mention} is not mentioned in README.md or any docs/*.md")

    # 2. Every relative link resolves.
    for page, text in texts.items():
        for number, target in links(text):
            problem = check_link(page, number, target)
            if problem:
                problems.append(problem)

    # 3. Every docs page is linked from the index.
    if not INDEX.exists():
        problems.append("docs/index.md does not exist")
    else:
        linked = {
            (INDEX.parent / target.partition("#")[0]).resolve()
            for _, target in links(texts[INDEX])
            if target.partition("#")[0] and not URL.match(target)
        }
        for page in pages:
            if page != INDEX and page.resolve() not in linked:
                problems.append(f"docs/{page.name} is not linked from docs/index.md")

    if problems:
        sys.stderr.write(f"check_docs: {len(problems)} problem(s):\n")
        sys.stderr.writelines(f"  {p}\n" for p in problems)
        return 1
    sys.stdout.write(
        f"check_docs: {len(pages)} docs pages, README.md and "
        f"{len(list((REPO / 'examples').glob('*.py')))} examples: all links resolve\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
