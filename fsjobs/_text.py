"""
Making text from jobs and from the disk safe to print or log.

Job data (kwargs, exception messages, progress messages) and names read from
the disk are written by whoever pushed the job or planted the file. Printed
as they are, an escape sequence could drive the operator's terminal and a
newline could forge a line of a report or a log. Everything fsjobs prints or
logs from such a source goes through `printable` first.
"""

from __future__ import annotations


def printable(text: object) -> str:
    """
    `text` (or its ``str()``) with every character that is not printable shown as
    its Python escape (``\\x1b``, ``\\n``, ``\\u202e``): one line, inert in a terminal.
    """
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in str(text))


def printable_lines(text: str) -> str:
    """`printable`, but newlines and tabs stay as they are: a log, shown as lines."""
    return "".join(ch if ch.isprintable() or ch in "\n\t" else repr(ch)[1:-1] for ch in text)
