"""
Periodic schedules on disk: ``periodic/<name>.json`` and the ticks' unique keys.

Each worker that keeps a schedule writes ``periodic/<name>.json`` (its
schedule, timezone, queue and next tick: for ``fsjobs schedules`` and for
people; nothing decides by it), replacing it by rename. Which ticks were pushed
is told by their unique keys (`_schedule.tick_key`), which stay taken once a
job committed under them (`_unique`). Prune removes the keys of old ticks:
those older than its cutoff and than `KEY_MIN_AGE`, except the newest
`KEYS_KEPT` of each schedule (a worker never pushes a tick older than those:
see `_schedule.Schedule.missed`), and never the key of an unfinished job.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import secrets
from collections.abc import Iterable

from . import _durable, _json, _names, _read, _schedule, _unique
from ._schedule import Schedule
from ._tree import Tree, path
from .errors import StoreError

logger = logging.getLogger("fsjobs.store")

FEATURE = "periodic"
#: a schedule file is small: a few names and a time
MAX_SIZE = 64 * 1024
#: prune keeps this many of each schedule's newest tick keys, however old
KEYS_KEPT = 2
#: prune never removes the key of a tick younger than this (seconds)
KEY_MIN_AGE = 3600.0
#: how far back ``fsjobs schedules`` looks for the last tick pushed
LAST_TICK_LOOKBACK = 500


def file_name(name: str) -> str:
    return f"{_names.check_name('schedule', name)}.json"


def write_schedule(tree: Tree, name: str, body: dict[str, _json.JSON]) -> None:
    """Replace ``periodic/<name>.json`` (a temp file in tmp/, then a rename; not fsynced)."""
    target = file_name(name)
    tree.for_writing()
    tree.add_feature(FEATURE)
    pfd = tree.dirs.cached((_names.PERIODIC,))
    tmp_fd = tree.dirs.cached((_names.TMP,))
    tmp = f"periodic.{name}.{secrets.token_hex(6)}"
    _durable.write_new(tmp_fd, tmp, _json.dumps(body).encode() + b"\n", sync=False)
    try:
        os.rename(tmp, target, src_dir_fd=tmp_fd, dst_dir_fd=pfd)
    except BaseException:
        _durable.unlink_quiet(tmp_fd, tmp)
        raise


def read_schedules(tree: Tree) -> list[tuple[str, dict[str, _json.JSON] | str]]:
    """
    Every ``periodic/<name>.json``, by name: what it holds, or (a str) why it
    cannot be read. Entries that are not such files are skipped (fsck reports them).
    """
    out: list[tuple[str, dict[str, _json.JSON] | str]] = []
    if not tree.for_reading():
        return out
    with tree.open_or_none((_names.PERIODIC,)) as pfd:
        if pfd is None:
            return out
        for entry in sorted(_durable.listdir(pfd)):
            name = entry.removesuffix(".json")
            if name == entry or not _names.NAME_RE.fullmatch(name):
                continue
            out.append((name, read_one(pfd, entry)))
    return out


def read_one(pfd: int, entry: str) -> dict[str, _json.JSON] | str:
    """A schedule file's object, or why it is not one."""
    where = path((_names.PERIODIC,), entry)
    try:
        body = _json.loads(_durable.read_file(pfd, entry, MAX_SIZE))
    except FileNotFoundError:
        return f"{where}: gone while read"
    except (StoreError, OSError, ValueError, UnicodeDecodeError) as exc:
        return f"{where}: {exc}"
    if not isinstance(body, dict) or not isinstance(body.get("schedule"), str):
        return f"{where}: not a schedule written by fsjobs"
    return body


def key_taken(tree: Tree, key: str) -> bool:
    """Whether any generation of `key` exists (a tick's key: whether it was pushed)."""
    with tree.open_or_none(_unique.key_dir(key)) as kfd:
        return kfd is not None and bool(_unique.generations(kfd))


def last_tick(tree: Tree, name: str, schedule: Schedule, now: dt.datetime) -> dt.datetime | None:
    """The newest tick at or before `now` whose key exists (looking back a bounded way)."""
    if not tree.for_reading():
        return None
    tick = schedule.latest(now)
    for _ in range(LAST_TICK_LOOKBACK):
        if tick is None:
            return None
        if key_taken(tree, _schedule.tick_key(name, tick)):
            return tick
        tick = schedule.latest(tick - dt.timedelta(seconds=1))
    return None


def prune_keys(tree: Tree, queues: Iterable[str], cutoff: dt.datetime) -> int:
    """
    Remove the unique keys of old ticks of jobs in `queues` (see the module's
    docstring). Each goes by a rename into tmp/ (one winner), then deletion.
    Returns how many keys went. Only roots that use periodic schedules are read.
    """
    fmt = tree.format if tree.for_reading() else None
    if fmt is None or FEATURE not in fmt.names:
        return 0
    wanted = set(queues)
    limit = min(cutoff, tree.clock.now() - dt.timedelta(seconds=KEY_MIN_AGE))
    by_name: dict[str, list[tuple[dt.datetime, str, str, str]]] = {}
    for digest in tree.names((_names.UNIQUE,)):
        found = _newest(tree, digest)
        if found is None:
            continue
        key, owner, queue = found
        parsed = _schedule.parse_tick_key(key)
        if parsed is None or _unique.key_dir(key)[-1] != digest:
            continue
        by_name.setdefault(parsed[0], []).append((parsed[1], digest, owner, queue))
    removed = 0
    for ticks in by_name.values():
        ticks.sort(reverse=True)
        for tick, digest, owner, queue in ticks[KEYS_KEPT:]:
            if tick >= limit or queue not in wanted:
                continue
            status = _read.status_of(tree, owner)
            if (status is None or status.is_final) and _remove_key(tree, digest):
                removed += 1
    return removed


def _newest(tree: Tree, digest: str) -> tuple[str, str, str] | None:
    with tree.open_or_none((_names.UNIQUE, digest)) as kfd:
        if kfd is None:
            return None
        gens = _unique.generations(kfd)
        return _unique.key_of(kfd, gens[-1]) if gens else None


def _remove_key(tree: Tree, digest: str) -> bool:
    tmp_fd = tree.dirs.cached((_names.TMP,))
    aside = f"tickkey.{digest}.{secrets.token_hex(4)}"
    try:
        with tree.dirs.open((_names.UNIQUE,)) as ufd:
            os.rename(digest, aside, src_dir_fd=ufd, dst_dir_fd=tmp_fd)
    except FileNotFoundError:
        return False
    try:
        _durable.rmtree_at(tmp_fd, aside)
    except OSError as exc:
        logger.warning("prune: tmp/%s stays (%s): fsck removes it", aside, exc)
    return True
