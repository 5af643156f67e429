"""
fsck's checks of flow control and schedules: what is normal in a queue's
``paused``, ``settings.json``, ``slots/`` and ``rate/``, and in ``periodic/``,
and what a repair does there.

* ``paused`` is a file (its content does not matter); ``settings.json`` a file
  this fsjobs can read: anything else is reported for a person to fix (the
  queue's workers claim nothing from it meanwhile, and say why).
* A slot whose owner's worker is dead (its lock can be taken, or it has none)
  is reported, and freed by a repair; so is a slot left without an owner for
  longer than the settle time (by its ctime: fsck sees it once).
* Rate windows more than two windows from now (or any, once the queue has no
  rate) are leftovers claimers had no reason to remove: a repair removes them.
* ``periodic/<name>.json`` that cannot be read is reported, and removed by a
  repair (workers that keep the schedule write it again).
"""

from __future__ import annotations

import os
import time

from . import _durable, _flow, _liveness, _names, _slots, _ticks
from ._paths import Parts
from ._tree import Tree, path


class FlowChecks:
    """
    fsck's checks of flow control, for `fsck._Checker`: what it needs of the
    checker is declared here.
    """

    tree: Tree
    repair: bool
    settle: float

    def report(self, kind: str, where: str, message: str, repaired: bool = False) -> None:
        raise NotImplementedError  # pragma: no cover - _Checker's

    def entries(self, parts: Parts, *, dirs: bool | None = None) -> list[str]:
        raise NotImplementedError  # pragma: no cover - _Checker's

    def check_flow(self, queue: str, names: list[str]) -> None:
        """The flow entries among `names` (a queue's entries, already screened)."""
        top = self.tree.queue_dir(queue)
        for name in (_names.PAUSED, _names.SETTINGS):
            if name in names and self._kind(top, name) != "file":
                self.report("foreign-file", path(top, name), "a directory does not belong here")
        state = _flow.read_state(self.tree, None, queue)
        if _names.SETTINGS in names and state.problem is not None:
            self.report("settings", path(top, _names.SETTINGS), state.problem)
        for name, check in ((_names.SLOTS, self.check_slots), (_names.RATE, self.check_rate)):
            if name not in names:
                continue
            if self._kind(top, name) != "directory":
                self.report("foreign-file", path(top, name), "not a directory")
            else:
                check(queue, state)

    def _kind(self, parts: Parts, name: str) -> str:
        with self.tree.open_or_none(parts) as fd:
            if fd is None:
                return "missing"
            try:
                return _durable.kind_of(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode)
            except OSError:
                return "missing"

    def check_slots(self, queue: str, state: _flow.FlowState) -> None:
        top = self.tree.queue_dir(queue, _names.SLOTS)
        for name in self.entries(top, dirs=True):
            where = path(top, name)
            if not name.isdigit():
                self.report("foreign-file", where, "not a slot")
                continue
            owners = []
            for entry in self.entries((*top, name), dirs=False):
                worker = _slots.owner_worker(entry)
                if worker is None:
                    self.report("foreign-file", path((*top, name), entry), "not a slot's owner")
                else:
                    owners.append((entry, worker))
            if not owners:
                if self._old(top, name):
                    removed = self._remove(top, name, queue)
                    self.report("ownerless-slot", where, "a slot without an owner", removed)
                continue
            for entry, worker in owners:
                if _liveness.alive(self.tree, worker):
                    continue
                freed = self.repair and self._free(top, name, entry)
                self.report("stale-slot", where, f"held by dead worker {worker}", freed)

    def _old(self, top: Parts, name: str) -> bool:
        with self.tree.open_or_none(top) as fd:
            if fd is None:
                return False
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except OSError:
                return False
        return time.time() - st.st_ctime >= self.settle

    def _remove(self, top: Parts, name: str, queue: str) -> bool:
        if not self.repair:
            return False
        with self.tree.open_or_none(top) as fd:
            return fd is not None and _slots.remove_slot_dir(self.tree, fd, queue, name)

    def _free(self, top: Parts, name: str, entry: str) -> bool:
        with self.tree.open_or_none((*top, name)) as fd:
            if fd is None:
                return False
            _durable.unlink_quiet(fd, entry)
        with self.tree.open_or_none(top) as fd:
            if fd is not None:
                try:
                    os.rmdir(name, dir_fd=fd)
                except OSError:
                    pass  # something else in it: reported above; removed once ownerless
        return True

    def check_rate(self, queue: str, state: _flow.FlowState) -> None:
        top = self.tree.queue_dir(queue, _names.RATE)
        rate = state.settings.rate
        now = self.tree.clock.now().timestamp()
        windows = []
        for name in self.entries(top, dirs=True):
            if not name.isdigit():
                self.report("foreign-file", path(top, name), "not a rate window")
                continue
            for entry in self.entries((*top, name), dirs=False):
                if not entry.isdigit():
                    self.report("foreign-file", path((*top, name), entry), "not a rate token")
            windows.append(name)
        current = rate.window(now) if rate is not None else None
        old = [w for w in windows if current is None or abs(int(w) - current) > 2]
        if old and self.repair:  # leftovers, not damage: reported only when removed
            _flow.collect_windows(self.tree, queue, current)
            for w in old:
                self.report("old-rate-window", path(top, w), "older than two windows", True)

    def check_periodic(self) -> None:
        top = (_names.PERIODIC,)
        for name in self.entries(top, dirs=False):
            where = path(top, name)
            stem = name.removesuffix(".json")
            if stem == name or not _names.NAME_RE.fullmatch(stem):
                self.report("foreign-file", where, "not a schedule file")
                continue
            with self.tree.open_or_none(top) as fd:
                if fd is None:
                    return
                body = _ticks.read_one(fd, name)
                if isinstance(body, str):
                    if self.repair:
                        _durable.unlink_quiet(fd, name)
                    self.report("schedule", where, body, self.repair)
