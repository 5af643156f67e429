"""
A plain function, and a trace of every import of its module: a worker must not
import a module that no ``allow_import`` prefix covers. The trace is the file
named by ``FSJOBS_TEST_IMPORT_TRACE``; each import appends its pid.
"""

from __future__ import annotations

import os

from .tasks import append_line

_trace = os.environ.get("FSJOBS_TEST_IMPORT_TRACE")
if _trace:
    append_line(_trace, f"{os.getpid()}\n")


def greet(name: str) -> str:
    return f"hello {name}"
