"""
Unique keys: at most one unfinished job per key, across processes and hosts.

``unique/<sha256(key)>/`` holds generations ``0000000001``, ``0000000002``…
each a small JSON file naming the job that owns the key from then on and the
staging marker its push held. The newest generation is the owner. A push with a
key stages its marker in ``tmp/`` under an OFD lock, becomes the next
generation with ``link()`` (one winner), then commits by renaming the staging
marker into place. A rival that finds the newest owner's staging marker still
locked waits (bounded); one that can take the lock knows the pusher died and
fences its staging marker by renaming it to ``tmp/dead.*`` (one winner against
the commit rename). Completion never touches ``unique/``: a key is free when its
newest owner is final.

A periodic tick's key (``periodic:...``, see `_schedule`) is the exception: it
stays taken once a job committed under it, whatever that job's status, even
after the job is pruned. Only a fenced staging marker (``tmp/dead.<staging>``,
left by the rival that fenced it or by the pusher that gave up) frees it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
import time

from . import _durable, _ids, _json, _names, _read, _schedule
from ._paths import Parts
from ._tree import Tree, path
from .errors import StoreError, UniqueKeyBusy

logger = logging.getLogger("fsjobs.store")

#: What a staging marker's name may look like: one component, no dots at either end.
#: A generation file is read from disk and untrusted; its "staging" becomes a name
#: under tmp/ only if it has exactly this shape.
STAGING_RE = re.compile(r"^[0-9a-z]+(\.[0-9a-z]+)*$")
_GEN_RE = re.compile(r"^\d{10}$")


def key_dir(key: str) -> Parts:
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
    return (_names.UNIQUE, digest)


def take(tree: Tree, key: str, job_id: str, queue: str, staging: str) -> str:
    """
    Make `job_id` (staged as `staging`) the key's owner, unless an unfinished job
    owns it: return the owner's id (ours if we won). UniqueKeyBusy if another
    push of the key stays in its staging step for longer than `unique_wait`.
    """
    # Real time, not the injected clock: this bounds how long we actually wait.
    deadline = time.monotonic() + tree.unique_wait
    with tree.dirs.open(key_dir(key), create=True) as key_fd:
        delay = 0.002
        while True:
            gens = generations(key_fd)
            if gens:
                owner = read_generation(key_fd, gens[-1])
                if owner is not None:
                    owner_id, owner_staging = owner
                    if owner == (job_id, staging):  # our own link (or its retransmission)
                        return job_id
                    sticky = _schedule.is_tick_key(key)
                    state = _owner_state(tree, owner_id, owner_staging, sticky=sticky)
                    if state == "live":
                        return owner_id
                    if state == "staging":
                        if time.monotonic() > deadline:
                            raise UniqueKeyBusy(
                                f"unique key {key!r} is being pushed by another process "
                                f"(job {owner_id}); try again"
                            )
                        time.sleep(delay)
                        delay = min(delay * 2, 0.1)
                        continue
            gen = f"{int(gens[-1]) + 1 if gens else 1:010d}"
            if _link_generation(tree, key_fd, gen, key, job_id, queue, staging):
                return job_id


def generations(key_fd: int) -> list[str]:
    """The generation files of a key, oldest first (other names are ignored)."""
    return sorted(n for n in _durable.listdir(key_fd) if _GEN_RE.fullmatch(n))


def read_generation(key_fd: int, gen: str) -> tuple[str, str] | None:
    """
    (owner id, staging marker name) of a generation; None when it is malformed
    (the key then counts as free). Both values are checked before they are used
    as names: a planted file cannot point outside tmp/.
    """
    for _ in range(50):
        try:
            data = _json.loads(_durable.read_file(key_fd, gen, 64 * 1024))
        except (ValueError, UnicodeDecodeError):
            time.sleep(0.01)  # content lags the name on network filesystems
            continue
        except FileNotFoundError:
            return None
        except (OSError, StoreError) as exc:
            logger.warning(
                "unique-key generation %s is unreadable (%s): treating it as free", gen, exc
            )
            return None
        if isinstance(data, dict):
            owner, staging = data.get("id"), data.get("staging")
            if (
                isinstance(owner, str)
                and _ids.is_job_id(owner)
                and isinstance(staging, str)
                and len(staging) <= 255
                and STAGING_RE.fullmatch(staging)
                and not staging.startswith("dead.")
            ):
                return owner, staging
        logger.warning("unique-key generation %s is malformed; treating it as free", gen)
        return None
    return None


def _link_generation(
    tree: Tree, key_fd: int, gen: str, key: str, job_id: str, queue: str, staging: str
) -> bool:
    tmp_fd = tree.dirs.cached((_names.TMP,))
    tmp = f"gen.{job_id}.{secrets.token_hex(4)}"
    body = _json.dumps({"id": job_id, "staging": staging, "queue": queue, "key": key})
    _durable.write_new(tmp_fd, tmp, body.encode() + b"\n", sync=tree.durable)
    try:
        os.link(tmp, gen, src_dir_fd=tmp_fd, dst_dir_fd=key_fd)
    except FileExistsError:
        # lost the race, unless an NFS retransmission reports our own success
        return read_generation(key_fd, gen) == (job_id, staging)
    finally:
        _durable.unlink_quiet(tmp_fd, tmp)
    if tree.durable:
        _durable.fsync_dir(key_fd)
    return True


def _owner_state(tree: Tree, owner_id: str, staging: str, *, sticky: bool = False) -> str:
    """
    'staging' (its push is alive and not committed), 'live' (unfinished) or
    'gone'. With `sticky` (a tick's key), 'live' once the push committed,
    whatever became of the job: 'gone' only if its staging marker was fenced.
    """
    tmp_fd = tree.dirs.cached((_names.TMP,))
    try:
        fd = _durable.open_lock_file(tmp_fd, staging, create=False)
    except OSError as exc:  # a symlink, directory or FIFO planted under that name
        logger.warning("staging marker tmp/%s is not a regular file (%s)", staging, exc)
        fd = None
    if fd is not None:
        try:
            if not _durable.try_lock(fd):
                return "staging"
            # The pusher is dead (or has just committed and closed): fence its staging.
            try:
                os.rename(staging, f"dead.{staging}", src_dir_fd=tmp_fd, dst_dir_fd=tmp_fd)
            except FileNotFoundError:
                pass
        finally:
            os.close(fd)
    if sticky:
        return "gone" if _durable.exists(tmp_fd, f"dead.{staging}") else "live"
    status = _read.status_of(tree, owner_id)
    if status is None or status.is_final:
        return "gone"
    return "live"


def give_up(tree: Tree, key: str, staging: str) -> None:
    """
    A push that will not commit its staging marker: remove it; for a tick's key,
    fence it instead (``tmp/dead.<staging>`` is what frees such a key).
    """
    tmp_fd = tree.dirs.cached((_names.TMP,))
    if not _schedule.is_tick_key(key):
        _durable.unlink_quiet(tmp_fd, staging)
        return
    try:
        os.rename(staging, f"dead.{staging}", src_dir_fd=tmp_fd, dst_dir_fd=tmp_fd)
    except OSError:
        pass  # committed, or fenced by a rival already


def key_of(key_fd: int, gen: str) -> tuple[str, str, str] | None:
    """(key, owner id, queue) a generation names; None if it does not hold them."""
    try:
        data = _json.loads(_durable.read_file(key_fd, gen, 64 * 1024))
    except (OSError, ValueError, UnicodeDecodeError, StoreError):
        return None
    if not isinstance(data, dict):
        return None
    key, owner, queue = data.get("key"), data.get("id"), data.get("queue")
    if isinstance(key, str) and isinstance(owner, str) and isinstance(queue, str):
        return key, owner, queue
    return None


def commit(tree: Tree, staging: str, parts: Parts, name: str) -> None:
    """Publish a staged marker: one rename out of tmp/ (StoreError if it was fenced)."""
    if not tree.move((_names.TMP,), staging, parts, name, mine=True):
        raise StoreError(f"{path(parts, name)} was fenced as dead while staging")
