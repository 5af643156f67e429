"""Shared fixtures: a fresh queue root per test, Hypothesis profiles."""

from __future__ import annotations

import os
import pathlib

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=30, deadline=None)
settings.register_profile("thorough", max_examples=1000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

REPO = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture
def root(tmp_path: pathlib.Path) -> pathlib.Path:
    """An empty directory for a queue root."""
    path = tmp_path / "jobs"
    path.mkdir()
    return path


@pytest.fixture
def subprocess_env() -> dict[str, str]:
    """Environment for child processes that import fsjobs and the tests' task modules."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


#: ``pytester`` runs small test suites in a subprocess (the tests of the pytest plugin).
pytest_plugins = ["pytester"]
