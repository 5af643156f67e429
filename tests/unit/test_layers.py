"""The module layout of DESIGN.md §8: imports point one way, and only the store touches files."""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "fsjobs"

#: What each module may import from fsjobs. Lower layers never import higher ones.
ALLOWED: dict[str, set[str]] = {
    "errors": {"model"},  # for type checking only (the JobState carried by JobFailed)
    "_clock": set(),
    "_text": set(),
    "_ids": set(),
    "_names": {"_ids", "errors"},
    "journal": {"errors"},
    "model": {"_names", "errors", "journal"},
    "context": set(),
    "_durable": {"errors"},
    "_inotify": set(),
    "_paths": {"_durable", "errors"},
    "_state": {"_ids", "_names", "_clock", "journal", "model"},
    "store": {
        "_durable",
        "_ids",
        "_inotify",
        "_names",
        "_clock",
        "_paths",
        "_state",
        "errors",
        "journal",
        "model",
    },
    "tasks": {"_names", "context", "errors", "journal", "model", "queue"},
    "queue": {"_names", "tasks", "_clock", "errors", "journal", "model", "store"},
    "worker": {
        "_ids",
        "_text",
        "_inotify",
        "doctor",
        "_names",
        "tasks",
        "_clock",
        "context",
        "errors",
        "journal",
        "model",
        "queue",
        "store",
    },
    "doctor": {"_paths", "store"},
    "fsck": {"_durable", "_ids", "_names", "_paths", "_text", "journal", "model", "store"},
    "testing": {"queue", "worker"},
    "_demo": {"context", "queue", "worker"},
    "cli": {
        "__init__",
        "_clock",
        "_text",
        "_demo",
        "doctor",
        "errors",
        "fsck",
        "journal",
        "model",
        "queue",
        "worker",
    },
    "__main__": {"cli"},
    "__init__": {"context", "errors", "model", "queue", "tasks", "worker"},
}
#: The only modules that may open, rename, create or remove files.
FILE_MODULES = {"store", "fsck", "_durable", "_paths"}
# fmt: off
OS_FILE_CALLS = {"open", "rename", "replace", "mkdir", "makedirs", "unlink", "remove", "rmdir",
                 "link", "symlink", "listdir", "scandir", "truncate", "ftruncate", "fsync"}
PATH_FILE_CALLS = {"read_bytes", "read_text", "write_bytes", "write_text", "touch", "unlink",
                   "rmdir", "mkdir", "open"}
# fmt: on


def fsjobs_imports(tree: ast.Module) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:  # from . import x: a module, or a name from the package itself
                found.update(a.name if a.name in ALLOWED else "__init__" for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fsjobs"):
            found.add(node.module.split(".")[1] if "." in node.module else "__init__")
    return found


MODULES = sorted(p.stem for p in PACKAGE.glob("*.py"))


def test_every_module_is_in_the_layer_table() -> None:
    """A new module must declare where it sits before it can import anything."""
    assert set(MODULES) == set(ALLOWED)


@pytest.mark.parametrize("module", MODULES)
def test_imports_point_one_way(module: str) -> None:
    """Each module imports only the fsjobs modules below it."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    assert fsjobs_imports(tree) <= ALLOWED[module]


@pytest.mark.parametrize("module", sorted(set(MODULES) - FILE_MODULES))
def test_only_the_store_touches_files(module: str) -> None:
    """Outside the store's modules, nothing opens, renames or removes a file."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    offending = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id == "open":
            offending.append("open")
        elif isinstance(func, ast.Attribute):
            is_os = isinstance(func.value, ast.Name) and func.value.id in ("os", "shutil")
            if (is_os and func.attr in OS_FILE_CALLS) or func.attr in PATH_FILE_CALLS:
                offending.append(ast.unparse(func))
    assert not offending, f"{module} touches files: {offending}"
