"""The tasks of `tests.http.tasks` on $FSJOBS_ROOT, for ``fsjobs serve`` and ``fsjobs worker``."""

from __future__ import annotations

import os

import fsjobs

from . import tasks

queue = fsjobs.Queue(os.environ["FSJOBS_ROOT"])
tasks.register(queue)
