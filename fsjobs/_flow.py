"""
Flow control on disk: a queue's pause, its caps and its rate tokens (slots: `_slots`).

::

    queues/<q>/paused                       the queue is paused (O_EXCL; resume unlinks it)
    queues/<q>/settings.json                {"concurrency": N, "rate": "N/s|m|h"}, replaced
                                            by rename (temp file in tmp/, fsync, rename)
    queues/<q>/slots/<k>/<worker>.<token>   slot k < concurrency, held by one claim
    queues/<q>/rate/<window>/<k>            the k-th claim token of a window (k < N)

Workers look at the pause and the settings before they list a queue, at most
every `LOOK_INTERVAL` (two ``stat`` calls for a queue that has neither). In a
capped queue a claimer first takes a slot (`_slots`); in a rated one, a token:
an ``O_EXCL`` create in the current window, taken before each claim and never
given back. Windows more than two windows away are removed by the claimers.

Tokens are not fsynced: after a power cut a lost token only allows one more
claim in that window (see ``docs/failures.md``).
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
import threading

import attrs

from . import _durable, _names, _queue_settings
from ._queue_settings import QueueSettings, Rate, Unset
from ._transitions import Where
from ._tree import Tree, path
from .errors import InvalidSettings, StoreError

logger = logging.getLogger("fsjobs.store")

#: a worker looks at a queue's pause and settings at most this often (seconds)
LOOK_INTERVAL = 0.1
FEATURE = "queue_settings"


@attrs.frozen
class FlowState:
    """What a queue's flow files say: paused, its caps, or why its settings are unusable."""

    paused: bool = False
    settings: QueueSettings = attrs.Factory(QueueSettings)
    #: the settings file cannot be used (the message names it): the queue is not served
    problem: str | None = None

    @property
    def blocked(self) -> bool:
        """No claims at all: paused, or settings that cannot be read."""
        return self.paused or self.problem is not None

    @property
    def limited(self) -> bool:
        return not self.settings.empty


UNLIMITED = FlowState()


class Looks:
    """What this process has seen of queues' flow files, and where its tokens stand."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        #: queue -> (when it was looked at, on the tree's monotonic clock; the state)
        self.states: dict[str, tuple[float, FlowState]] = {}
        #: queue -> (the settings file's identity, what it said)
        self.files: dict[str, tuple[tuple[int, ...], QueueSettings]] = {}
        #: queue -> (window, the token number to try first)
        self.hints: dict[str, tuple[int, int]] = {}

    def forget(self, queue: str) -> None:
        with self.lock:
            self.states.pop(queue, None)


# -- looking ------------------------------------------------------------------------------


def look(tree: Tree, looks: Looks, queue: str, max_age: float = LOOK_INTERVAL) -> FlowState:
    """The queue's flow state, looked at afresh if the last look is older than `max_age`."""
    now = tree.clock.monotonic()
    with looks.lock:
        seen = looks.states.get(queue)
    if seen is not None and now - seen[0] < max_age:
        return seen[1]
    state = read_state(tree, looks, queue)
    with looks.lock:
        looks.states[queue] = (now, state)
    return state


def read_state(tree: Tree, looks: Looks | None, queue: str) -> FlowState:
    """The queue's flow files as they are now: two ``stat`` calls, a read if settings changed."""
    if not tree.for_reading():
        return UNLIMITED
    try:
        qfd = tree.dirs.cached(tree.queue_dir(queue), create=False)
    except FileNotFoundError:
        return UNLIMITED  # nothing pushed there yet
    except StoreError as exc:
        return FlowState(problem=f"{path(tree.queue_dir(queue))}: {exc}")
    paused = _durable.exists(qfd, _names.PAUSED)
    try:
        st = os.stat(_names.SETTINGS, dir_fd=qfd, follow_symlinks=False)
    except FileNotFoundError:
        return FlowState(paused=paused)
    identity = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_mode)
    known = looks.files.get(queue) if looks is not None else None
    if known is not None and known[0] == identity:
        return FlowState(paused=paused, settings=known[1])
    where = path(tree.queue_dir(queue), _names.SETTINGS)
    try:
        data = _durable.read_file(qfd, _names.SETTINGS, _queue_settings.MAX_SIZE)
        settings = _queue_settings.from_json(data, where)
    except (StoreError, InvalidSettings) as exc:
        # Not cached: content may lag the name on a network filesystem; look again next time.
        problem = str(exc) if where in str(exc) else f"{where}: {exc}"
        return FlowState(paused=paused, problem=problem)
    except FileNotFoundError:
        return FlowState(paused=paused)  # replaced while we looked: the next look reads it
    if looks is not None:
        looks.files[queue] = (identity, settings)
    return FlowState(paused=paused, settings=settings)


# -- operator actions -----------------------------------------------------------------------


def pause(tree: Tree, looks: Looks, queue: str) -> bool:
    """Create ``queues/<queue>/paused`` (O_EXCL). True if this call paused the queue."""
    _names.check_name("queue", queue)
    tree.for_writing()
    tree.add_feature(FEATURE)
    qfd = tree.dirs.cached(tree.queue_dir(queue))
    try:
        _durable.create_empty(qfd, _names.PAUSED)
    except FileExistsError:
        return False
    if tree.durable:
        _durable.fsync_dir(qfd)
    looks.forget(queue)
    return True


def resume(tree: Tree, looks: Looks, queue: str) -> bool:
    """Remove the pause file. True if this call resumed the queue."""
    _names.check_name("queue", queue)
    if not tree.for_reading():
        return False
    tree.for_writing()
    try:
        qfd = tree.dirs.cached(tree.queue_dir(queue), create=False)
        os.unlink(_names.PAUSED, dir_fd=qfd)
    except FileNotFoundError:
        return False
    except (IsADirectoryError, PermissionError) as exc:
        where = path(tree.queue_dir(queue), _names.PAUSED)
        raise StoreError(f"{where} is not a file ({exc}): remove it by hand to resume") from None
    if tree.durable:
        _durable.fsync_dir(qfd)
    looks.forget(queue)
    tree.ring(queue, Where.PENDING)  # idle workers on this host look again at once
    return True


def configure(
    tree: Tree,
    looks: Looks,
    queue: str,
    concurrency: int | Unset | None,
    rate: str | Rate | Unset | None,
) -> QueueSettings:
    """
    Change the given caps of `queue` (None removes one) and return all of them.
    The file is replaced whole (temp file, fsync, rename); with no cap left it
    is removed. Two configure calls at once: the last rename wins.
    """
    _names.check_name("queue", queue)
    QueueSettings().changed(concurrency, rate)  # refuse bad values before any I/O
    tree.for_writing()
    state = read_state(tree, None, queue)
    if state.problem is not None:
        raise InvalidSettings(state.problem)
    new = state.settings.changed(concurrency, rate)
    if new == state.settings:
        return new
    tree.add_feature(FEATURE)
    qfd = tree.dirs.cached(tree.queue_dir(queue))
    if new.empty:
        _durable.unlink_quiet(qfd, _names.SETTINGS)
    else:
        tmp_fd = tree.dirs.cached((_names.TMP,))
        tmp = f"settings.{queue}.{secrets.token_hex(6)}"
        _durable.write_new(tmp_fd, tmp, new.to_json(), sync=tree.durable)
        try:
            os.rename(tmp, _names.SETTINGS, src_dir_fd=tmp_fd, dst_dir_fd=qfd)
        except BaseException:
            _durable.unlink_quiet(tmp_fd, tmp)
            raise
    if tree.durable:
        _durable.fsync_dir(qfd)
    looks.forget(queue)
    tree.ring(queue, Where.PENDING)
    return new


# -- rate tokens -------------------------------------------------------------------------------


def take_token(tree: Tree, looks: Looks, queue: str, rate: Rate) -> float | None:
    """
    Take one claim token of the current window: None when taken; else no token
    is left, and the window ends at the returned time (seconds since the epoch).
    """
    now_s = tree.clock.now().timestamp()
    window = rate.window(now_s)
    with looks.lock:
        hint_window, start = looks.hints.get(queue, (None, 0))
    if hint_window != window:
        start = 0
        collect_windows(tree, queue, window)
    with tree.dirs.open(tree.queue_dir(queue, _names.RATE, str(window)), create=True) as wfd:
        k = _create_token(wfd, rate.count, start)
    if k is None:
        return rate.window_end(window)
    with looks.lock:
        looks.hints[queue] = (window, k + 1)
    return None


def _create_token(wfd: int, count: int, start: int) -> int | None:
    """Create token k (O_EXCL), first at `start`, then at the free numbers below `count`."""
    if start < count:
        try:
            _durable.create_empty(wfd, str(start))
            return start
        except FileExistsError:
            pass
    taken = set(_durable.listdir(wfd))
    for k in range(count):
        if str(k) in taken:
            continue
        try:
            _durable.create_empty(wfd, str(k))
            return k
        except FileExistsError:
            continue
    return None


def collect_windows(tree: Tree, queue: str, window: int | None) -> int:
    """
    Remove rate windows more than two windows away from `window` (None: every
    one, the queue has no rate any more); returns how many went.
    """
    removed = 0
    with tree.open_or_none(tree.queue_dir(queue, _names.RATE)) as rfd:
        if rfd is None:
            return 0
        tmp_fd = tree.dirs.cached((_names.TMP,))
        for name in _durable.listdir(rfd):
            if not name.isdigit() or (window is not None and abs(int(name) - window) <= 2):
                continue
            aside = f"rate.{queue}.{name}.{secrets.token_hex(4)}"
            try:
                os.rename(name, aside, src_dir_fd=rfd, dst_dir_fd=tmp_fd)
                _durable.rmtree_at(tmp_fd, aside)
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    logger.warning("queue %s: rate window %s stays: %s", queue, name, exc)
                continue
            removed += 1
    return removed
