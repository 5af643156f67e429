"""
Concurrency slots: how a capped queue counts its running jobs across hosts.

``queues/<q>/slots/<k>/<worker>.<token>``: slot k < concurrency, held by one
claim. A claimer takes a slot with ``mkdir`` (one winner) and records itself in
it with a file named for this claim; it frees the slot by removing that file
(which proves the slot is still its own), then the empty directory. Rescue
frees the slots of dead or silent workers, by the rules that rescue their jobs
(`_liveness`), and slot directories left without an owner (a crash between the
``mkdir`` and the owner file) once it has seen them so for a lease on its own
monotonic clock; those go by a rename into ``tmp/`` (one winner), then deletion.

Slots are not fsynced: after a power cut the worker that held one is dead and
its slot is freed like any other.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
from collections.abc import Sequence

import attrs

from . import _claim, _durable, _flow, _liveness, _names
from ._claim import Claim
from ._paths import Parts
from ._queue_settings import QueueSettings
from ._transitions import Where
from ._tree import Tree
from .errors import StoreError

logger = logging.getLogger("fsjobs.store")


@attrs.define
class Slot:
    """A concurrency slot a claim holds: ``queues/<queue>/slots/<k>/<owner>``."""

    queue: str
    k: str
    owner: str


class SlotWatch:
    """The slot directories this process has seen without an owner, and since when."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        #: (queue, slot) -> (the directory's identity, when first seen without an owner)
        self.ownerless: dict[tuple[str, str], tuple[tuple[int, int], float]] = {}


@attrs.define
class Limited:
    """What `claim_limited` did."""

    claims: list[Claim]
    #: how many of the listed names it used up (tried, won or lost)
    tried: int
    #: the error that stopped it early, if any (that job is back in pending)
    error: Exception | None = None
    #: the slot each claim holds, by job id
    slots: dict[str, Slot] = attrs.Factory(dict)
    #: no token was left: when the window ends (seconds since the Unix epoch)
    throttled_until: float | None = None
    #: every slot was taken
    full: bool = False


def _slots_dir(tree: Tree, queue: str) -> Parts:
    return tree.queue_dir(queue, _names.SLOTS)


def owner_name(worker: str) -> str:
    """A slot owner's file name: the worker and a token of this claim."""
    return f"{worker}.{secrets.token_hex(4)}"


def owner_worker(name: str) -> str | None:
    """The worker an owner file names; None if it is not an owner file's name."""
    worker, dot, token = name.rpartition(".")
    if not dot or len(token) != 8 or not all(c in "0123456789abcdef" for c in token):
        return None
    try:
        return _names.check_worker_id(worker)
    except ValueError:
        return None


def take_slot(tree: Tree, queue: str, cap: int, worker: str) -> Slot | None:
    """Take a free slot k < `cap` (``mkdir``, then the owner file); None if all are taken."""
    sfd = tree.dirs.cached(_slots_dir(tree, queue))
    taken = set(_durable.listdir(sfd))
    for k in range(cap):
        name = str(k)
        if name in taken:
            continue
        try:
            os.mkdir(name, tree.dirs.dir_mode, dir_fd=sfd)
        except FileExistsError:
            continue
        owner = owner_name(worker)
        if _own(sfd, name, owner):
            return Slot(queue, name, owner)
    return None


def _own(sfd: int, name: str, owner: str) -> bool:
    """Record `owner` in the slot just made; False if the slot went away meanwhile."""
    try:
        kfd = os.open(name, _durable.O_DIR, dir_fd=sfd)
    except OSError:
        return False
    try:
        _durable.create_empty(kfd, owner)
        here, there = os.fstat(kfd), os.stat(name, dir_fd=sfd, follow_symlinks=False)
        if (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino):
            return True
        _durable.unlink_quiet(kfd, owner)  # removed as ownerless and made again by another
        return False
    except OSError:
        _durable.unlink_quiet(kfd, owner)
        return False
    finally:
        os.close(kfd)


def free_slot(tree: Tree, slot: Slot) -> bool:
    """
    Give a slot back: remove its owner file, then the empty directory. False
    when the owner file was gone already (rescue freed the slot).
    """
    sfd = tree.dirs.cached(_slots_dir(tree, slot.queue))
    try:
        with tree.dirs.child(sfd, slot.k) as kfd:
            os.unlink(slot.owner, dir_fd=kfd)
    except FileNotFoundError:
        return False
    try:
        os.rmdir(slot.k, dir_fd=sfd)
    except OSError:
        pass  # gone already, or something else sits in it: rescue removes it later
    tree.ring(slot.queue, Where.PENDING)  # an idle worker of this host may take it now
    return True


def rescue_slots(
    tree: Tree,
    watch: SlotWatch,
    leases: _liveness.Leases,
    queue: str,
    me: str,
    lease: float | None,
) -> list[str]:
    """
    Free the slots of `queue` whose owner is dead (its lock can be taken, or it
    has none) or silent for `lease` seconds, and the slot directories seen
    without an owner for `lease` on this process's monotonic clock. Slots that
    name `me` are left alone. Returns the slots freed.
    """
    if not tree.for_reading() or not tree.writable:
        return []
    freed: list[str] = []
    with tree.open_or_none(_slots_dir(tree, queue)) as sfd:
        if sfd is None:
            return []
        for name in sorted(_durable.listdir(sfd)):
            if not name.isdigit():
                continue  # not a slot: fsck reports it
            try:
                with tree.dirs.child(sfd, name) as kfd:
                    entries = _durable.listdir(kfd)
                    st = os.fstat(kfd)
            except (OSError, StoreError):
                continue
            owners = [(e, w) for e in entries if (w := owner_worker(e)) is not None]
            if owners:
                with watch.lock:
                    watch.ownerless.pop((queue, name), None)
                if any(_free_stale(tree, leases, sfd, name, e, w, me, lease) for e, w in owners):
                    freed.append(name)
            elif (
                lease is not None
                and _ownerless_for(tree, watch, queue, name, st, lease)
                and remove_slot_dir(tree, sfd, queue, name)
            ):
                logger.warning("queue %s: freed slot %s, left without an owner", queue, name)
                freed.append(name)
    return freed


def _free_stale(
    tree: Tree,
    leases: _liveness.Leases,
    sfd: int,
    name: str,
    entry: str,
    worker: str,
    me: str,
    lease: float | None,
) -> bool:
    if worker == me or not gone(tree, leases, worker, lease):
        return False
    try:
        with tree.dirs.child(sfd, name) as kfd:
            os.unlink(entry, dir_fd=kfd)
    except FileNotFoundError:
        return False  # freed by its owner or another rescuer meanwhile
    except OSError as exc:  # not a file (planted?): fsck reports it; the slot stays
        logger.warning("slot %s: its owner %s cannot be removed: %s", name, entry, exc)
        return False
    try:
        os.rmdir(name, dir_fd=sfd)
    except OSError:
        pass
    logger.warning("freed slot %s of worker %s (dead or silent)", name, worker)
    return True


def gone(tree: Tree, leases: _liveness.Leases, worker: str, lease: float | None) -> bool:
    """Dead (its lock can be taken, or it has no lock file), or silent for `lease` seconds."""
    if not _liveness.alive(tree, worker):
        return True
    return lease is not None and leases.expired(tree, worker, lease)


def _ownerless_for(
    tree: Tree, watch: SlotWatch, queue: str, name: str, st: os.stat_result, lease: float
) -> bool:
    """True once this very directory has been seen without an owner for `lease` seconds."""
    identity = (st.st_dev, st.st_ino)
    now = tree.clock.monotonic()
    with watch.lock:
        seen = watch.ownerless.get((queue, name))
        if seen is None or seen[0] != identity:
            watch.ownerless[(queue, name)] = (identity, now)
            return False
    return now - seen[1] >= lease


def remove_slot_dir(tree: Tree, sfd: int, queue: str, name: str) -> bool:
    """Move a slot directory into tmp/ (one winner), then delete it."""
    tmp_fd = tree.dirs.cached((_names.TMP,))
    aside = f"slot.{queue}.{name}.{secrets.token_hex(4)}"
    try:
        os.rename(name, aside, src_dir_fd=sfd, dst_dir_fd=tmp_fd)
    except FileNotFoundError:
        return False
    try:
        _durable.rmtree_at(tmp_fd, aside)
    except OSError:
        pass  # fsck removes it from tmp/ later
    return True


def held_by(tree: Tree, queue: str, worker: str) -> list[Slot]:
    """The slots of `queue` whose owner file names `worker` (for a worker's last clean-up)."""
    out = []
    with tree.open_or_none(_slots_dir(tree, queue)) as sfd:
        if sfd is None:
            return []
        for name in _durable.listdir(sfd):
            try:
                with tree.dirs.child(sfd, name) as kfd:
                    entries = _durable.listdir(kfd)
            except (OSError, StoreError):
                continue
            out += [Slot(queue, name, e) for e in entries if owner_worker(e) == worker]
    return out


# -- claiming under caps -------------------------------------------------------------------------


def claim_limited(
    tree: Tree,
    looks: _flow.Looks,
    queue: str,
    paths: Sequence[str],
    worker: str,
    want: int,
    settings: QueueSettings,
) -> Limited:
    """
    Claim the listed names in order, as `_claim.claim_many` does, within the
    queue's caps: before each claim a slot (if capped) and a rate token (if
    rated). A token is used by the next claim won; a slot not used by a claim
    is freed before this returns, whatever happens.
    """
    out = Limited([], 0)
    slot: Slot | None = None
    token = False
    try:
        for name_path in paths:
            try:
                if settings.concurrency is not None and slot is None:
                    slot = take_slot(tree, queue, settings.concurrency, worker)
                    if slot is None:
                        out.full = True
                        break
                if settings.rate is not None and not token:
                    out.throttled_until = _flow.take_token(tree, looks, queue, settings.rate)
                    if out.throttled_until is not None:
                        break
                    token = True
                out.tried += 1
                won = _claim.claim(tree, queue, name_path, worker)
            except OSError as exc:  # the job (if any) is back in pending; the slot goes below
                out.error = exc
                break
            if won is None:
                continue
            out.claims.append(won)
            token = False
            if slot is not None:
                out.slots[won.job_id] = slot
                slot = None
            if len(out.claims) >= want:
                break
    finally:
        if slot is not None:
            try:
                free_slot(tree, slot)
            except OSError as exc:  # rescue frees it once this worker is gone
                logger.error("queue %s: slot %s not freed: %s", queue, slot.k, exc)
    return out
