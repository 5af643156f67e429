"""Shared fixtures: a fresh queue root per test, Hypothesis profiles."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from fsjobs.store import Store

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


@pytest.fixture(autouse=True)
def close_the_tests_stores(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """
    Close every store a test made, when it ends. Tasks registered in a test keep
    their queue (and its store's directory descriptors) alive in the registry;
    without this, a whole run holds thousands of descriptors.
    """
    made: list[Store] = []
    real_init = Store.__init__

    def init(self: Store, *args: object, **kwargs: object) -> None:
        real_init(self, *args, **kwargs)  # type: ignore[arg-type]
        made.append(self)

    monkeypatch.setattr(Store, "__init__", init)
    yield
    for store in made:
        store.close()


@pytest.fixture
def subprocess_env() -> dict[str, str]:
    """Environment for child processes that import fsjobs and the tests' task modules."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


#: ``pytester`` runs small test suites in a subprocess (the tests of the pytest plugin).
pytest_plugins = ["pytester"]
