"""Developer sessions: ``nox -s tests lint typecheck`` is what CI runs."""

from __future__ import annotations

import nox

nox.needs_version = ">=2024.10.9"
nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_venv = "yes"
nox.options.default_venv_backend = "venv"

PYPROJECT = nox.project.load_toml("pyproject.toml")
PYTHON_PATHS = (
    "fsjobs",
    "tests",
    "examples",
    "benchmarks",
    "scripts",
    "docs/conf.py",
    "noxfile.py",
)


def install(session: nox.Session, *groups: str) -> None:
    """Install fsjobs itself (editable, with its `http` extra) and the named dependency groups."""
    session.install("-e", ".[http]")
    for group in groups:
        session.install(*nox.project.dependency_groups(PYPROJECT, group))


@nox.session
def tests(session: nox.Session) -> None:
    """The whole suite: unit, property, multi-process, examples. Exit code 5 (no tests) fails."""
    install(session, "test")
    session.run("pytest", *session.posargs)


@nox.session(python="3.12")
def django(session: nox.Session) -> None:
    """
    The Django Tasks backend on Django 6's own ``django.tasks`` (it needs Python 3.12);
    ``tests`` runs the same tests on Python 3.11 with the django-tasks backport.
    """
    install(session, "test")
    session.run(
        "pytest",
        "tests/integration/test_django_backend.py",
        "tests/acceptance/test_examples.py",
        "-k",
        "django",
        "-p",
        "no:cacheprovider",
        *session.posargs,
    )


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    install(session, "lint")
    session.run("ruff", "check", ".")
    # Python files only: the docs' code blocks keep their aligned comments.
    session.run("ruff", "format", "--check", *PYTHON_PATHS)


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package."""
    install(session, "typecheck")
    session.run("mypy")


@nox.session
def bench(session: nox.Session) -> None:
    """
    DESIGN.md section 6 workloads beside their baselines, in one run.

    ``nox -s bench -- --quick`` takes about a minute; without arguments the full
    run also draws docs/performance-backlog.png. Baselines (huey) and the plot
    (matplotlib) come from the ``bench`` group, so fsjobs never depends on them.
    """
    install(session, "bench")
    args = list(session.posargs)
    if "--quick" not in args and not any(a.startswith("--plot") for a in args):
        args.append("--plot")
    session.run("python", "benchmarks/bench.py", *args)


@nox.session
def docs(session: nox.Session) -> None:
    """
    Build the docs site into docs/_build/html: Sphinx with MyST and furo, the API
    reference from the docstrings, warnings as errors. First scripts/check_docs.py:
    every example is documented, every relative link resolves, every page is in the
    site. ``-E`` rereads every page, so a changed docstring is never missed.
    """
    session.run("python", "scripts/check_docs.py")
    install(session, "docs", "django")  # django: the API reference imports fsjobs.contrib.django
    session.run(
        "sphinx-build",
        "-W",
        "--keep-going",
        "-E",
        "-b",
        "html",
        "docs",
        "docs/_build/html",
        *session.posargs,
    )
    session.log("the site: docs/_build/html/index.html")


@nox.session
def faults(session: nox.Session) -> None:
    """
    The fault-injection suite (kill -9, with plain jobs and with workflows; crash points,
    I/O errors, full disk), 200 kills per torture run.
    """
    install(session, "test")
    session.run(
        "pytest",
        "tests/faults",
        "-p",
        "no:cacheprovider",
        "-s",
        *session.posargs,
        env={"FSJOBS_FAULT_KILLS": "200"},
    )


@nox.session
def sharedfs(session: nox.Session) -> None:
    """
    The two-host tests on one GlusterFS volume mounted twice (needs root and FUSE).
    They bring the bed up themselves with ``scripts/sharedfs up`` (and down after) unless
    FSJOBS_SHAREDFS_A/B name mounts already up; here a missing bed fails instead of skipping.
    The workflow torture runs at its full size here: 200 kills (40 elsewhere).
    """
    install(session, "test")
    session.run(
        "pytest",
        "tests/sharedfs",
        "-m",
        "sharedfs",
        "-s",
        "-p",
        "no:cacheprovider",
        *session.posargs,
        env={"FSJOBS_REQUIRE_SHAREDFS": "1", "FSJOBS_SHAREDFS_WORKFLOW_KILLS": "200"},
    )
