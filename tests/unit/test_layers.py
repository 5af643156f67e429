"""
The module layout of DESIGN.md §8 and §9.1: imports point one way, and only the
store's modules touch files.

Every module has a rank; it may import only modules of a lower rank. A loop, or
an import that points up, fails here; so does a module that reaches into
another's private names.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "fsjobs"

#: Lower layers never import higher ones. Modules of one rank never import each other.
#: (Ranks go in steps of two, so that a module can slot in between without renumbering.)
RANKS: dict[str, int] = {
    # pure foundations: no fsjobs imports
    "_clock": 0,
    "_ids": 0,
    "_json": 0,
    "_text": 0,
    "_inotify": 0,
    "context": 0,
    "_wakeups": 0,
    "_capture": 0,
    # what a job is
    "states": 2,
    "errors": 4,
    "_names": 6,
    "journal": 6,
    "_durable": 6,
    "model": 8,
    "_spec": 9,
    "_paths": 8,
    "_transitions": 10,
    "workflow": 10,
    "_state": 12,
    "_format": 12,
    "_queue_settings": 6,
    "_schedule": 6,
    # the store: the tree, then one module per protocol step, then its front
    "_tree": 14,
    "_deptree": 15,
    "_read": 16,
    "_listing": 17,
    "_claim": 18,
    "_liveness": 18,
    "_unique": 18,
    "_depends": 18,
    "_finish": 20,
    "_operate": 20,
    "_push": 20,
    "_uploads": 16,
    "_flow": 16,
    "_slots": 20,
    "_ticks": 20,
    "_logs": 20,
    "_workflows": 21,
    "store": 22,
    "fsck": 24,
    "_fsck_jobs": 22,
    "_fsck_flow": 22,
    "_migrate": 14,
    "doctor": 24,
    "_stats": 24,
    # the async API on top
    "tasks": 26,
    "_client": 28,
    "_periodic": 28,
    "queue": 30,
    "sync_queue": 30,
    "_child": 30,
    "_executors": 32,
    "_pacing": 32,
    "_gate": 32,
    "_periodic_runner": 32,
    "_attempt": 34,
    "_claimer": 34,
    "worker": 36,
    "testing": 38,
    "_pytest_plugin": 40,
    "_demo": 38,
    # the HTTP API and dashboard (the http extra): nothing below imports them
    "_http_base": 34,
    "_http_html": 36,
    "_http_body": 36,
    "_http_auth": 38,
    "_http_api": 38,
    "_http_pages": 40,
    "http": 42,
    # the command line
    "_cli_base": 44,
    "_cli_jobs": 46,
    "_cli_root": 46,
    "_cli_run": 46,
    "_cli_flow": 46,
    "cli": 48,
    "__init__": 50,
    "__main__": 52,
}
#: The only modules that may open, rename, create or remove files.
FILE_MODULES = {
    "_durable",
    "_paths",
    "_format",
    "_tree",
    "_read",
    "_claim",
    "_liveness",
    "_unique",
    "_finish",
    "_operate",
    "_push",
    "_uploads",
    "_logs",
    "_deptree",
    "_depends",
    "_workflows",
    "store",
    "fsck",
    "_migrate",
    "_fsck_jobs",
    "_fsck_flow",
    "_flow",
    "_slots",
    "_ticks",
}
#: Modules that stream files through descriptors the store opened: they may wrap one
#: with ``aiofiles.open(<name ending in fd>, ...)``, and open nothing by name.
DESCRIPTOR_STREAMERS = {"_http_api", "_http_body"}
# fmt: off
OS_FILE_CALLS = {"open", "rename", "replace", "mkdir", "makedirs", "unlink", "remove", "rmdir",
                 "link", "symlink", "listdir", "scandir", "truncate", "ftruncate", "fsync"}
PATH_FILE_CALLS = {"read_bytes", "read_text", "write_bytes", "write_text", "touch", "unlink",
                   "rmdir", "mkdir", "open"}
# fmt: on
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py"))


def fsjobs_imports(tree: ast.Module) -> dict[str, set[str]]:
    """The fsjobs modules a module imports, each with the names it takes from it."""
    found: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.setdefault(node.module.split(".")[0], set()).update(
                    a.name for a in node.names
                )
            else:  # from . import x: a module, or a name from the package itself
                for alias in node.names:
                    module = alias.name if alias.name in RANKS else "__init__"
                    found.setdefault(module, set())
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fsjobs"):
            module = node.module.split(".")[1] if "." in node.module else "__init__"
            found.setdefault(module, set()).update(a.name for a in node.names)
    return found


def test_every_module_has_a_rank() -> None:
    """A new module must declare where it sits before it can import anything."""
    assert set(MODULES) == set(RANKS)


@pytest.mark.parametrize("module", MODULES)
def test_imports_point_down(module: str) -> None:
    """Each module imports only fsjobs modules of a lower rank: no loop can form."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    upward = {m for m in fsjobs_imports(tree) if RANKS[m] >= RANKS[module]}
    assert not upward, f"{module} (rank {RANKS[module]}) imports {sorted(upward)}"


@pytest.mark.parametrize("module", MODULES)
def test_no_module_takes_another_modules_private_names(module: str) -> None:
    """``from .x import _name`` and ``x._name`` reach into another module's insides."""
    source = (PACKAGE / f"{module}.py").read_text()
    tree = ast.parse(source)
    private = sorted(
        f"{m}.{name}"
        for m, names in fsjobs_imports(tree).items()
        for name in names
        if name.startswith("_") and not name.startswith("__")
    )
    imported_modules = {m for m in fsjobs_imports(tree) if m in RANKS}
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in imported_modules
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            private.append(f"{node.value.id}.{node.attr}")
    assert not private, f"{module} uses private names of other modules: {private}"


@pytest.mark.parametrize("module", MODULES)
def test_no_module_is_too_long_to_read(module: str) -> None:
    """About 500 lines at most: a newcomer reads a module at once."""
    lines = len((PACKAGE / f"{module}.py").read_text().splitlines())
    assert lines <= 520, f"{module}.py has {lines} lines"


def is_store_method(func: ast.Attribute) -> bool:
    """A call of a `Store` method (``self.store.open()``): the store is what touches files."""
    owner = func.value
    name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
    return name == "store"


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
            if is_store_method(func):
                continue  # ``self.store.open()``: the store's own step, not a file call
            if _wraps_a_descriptor(module, node):
                continue
            if (is_os and func.attr in OS_FILE_CALLS) or func.attr in PATH_FILE_CALLS:
                offending.append(ast.unparse(func))
    assert not offending, f"{module} touches files: {offending}"


def _wraps_a_descriptor(module: str, call: ast.Call) -> bool:
    """``aiofiles.open(fd, ...)`` in a module allowed to stream descriptors the store opened."""
    func = call.func
    return (
        module in DESCRIPTOR_STREAMERS
        and isinstance(func, ast.Attribute)
        and ast.unparse(func) == "aiofiles.open"
        and bool(call.args)
        and isinstance(call.args[0], ast.Name)
        and call.args[0].id.endswith("fd")
    )


def test_descriptor_streamers_open_nothing_by_name() -> None:
    """The exemption above covers a descriptor only: ``aiofiles.open("path")`` still fails it."""
    by_name = ast.parse("aiofiles.open('/etc/passwd', 'rb')").body[0]
    by_fd = ast.parse("aiofiles.open(fd, 'rb')").body[0]
    assert isinstance(by_name, ast.Expr) and isinstance(by_name.value, ast.Call)
    assert isinstance(by_fd, ast.Expr) and isinstance(by_fd.value, ast.Call)
    assert not _wraps_a_descriptor("_http_api", by_name.value)
    assert _wraps_a_descriptor("_http_api", by_fd.value)
    assert not _wraps_a_descriptor("queue", by_fd.value)


def test_the_rank_check_catches_a_loop(tmp_path: pathlib.Path) -> None:
    """The check itself: a module importing one of its own rank or above fails it."""
    tree = ast.parse("from .queue import Queue\nfrom . import _tree\n")
    imports = fsjobs_imports(tree)
    assert {m for m in imports if RANKS[m] >= RANKS["tasks"]} == {"queue"}
    assert "_Waker" in next(iter(fsjobs_imports(ast.parse("from .queue import _Waker\n")).values()))
