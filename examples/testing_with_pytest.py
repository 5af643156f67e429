"""
Testing tasks with the fsjobs pytest plugin: runs pytest on the small shop in
``examples/testing/`` (the application ``shop.py`` and its tests ``test_shop.py``).

    python examples/testing_with_pytest.py            # the shop's queue in a temporary directory
    python examples/testing_with_pytest.py /tmp/jobs  # keep its files and look at them

The plugin comes with fsjobs (entry point ``fsjobs`` of group ``pytest11``): the
tests use its fixtures ``fsjobs_queue``, ``fsjobs_pushed`` and ``fsjobs_eager``
without a conftest.py.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent / "testing"
ASYNC_TESTS = ["-o", "asyncio_mode=auto", "-o", "asyncio_default_fixture_loop_scope=function"]


def main(root: str) -> int:
    command = [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", *ASYNC_TESTS]
    env = dict(os.environ, SHOP_JOBS=root)
    return subprocess.run([*command, str(HERE)], cwd=HERE, env=env, check=False).returncode


if __name__ == "__main__":
    if len(sys.argv) > 1:
        sys.exit(main(sys.argv[1]))
    with tempfile.TemporaryDirectory(prefix="fsjobs-testing-") as tmp:
        sys.exit(main(tmp))
