"""
The root's format file, ``fsjobs.json``: which layout the root has, and which
optional features it uses.

``{"format": 2, "features": ["depends_on@0.2"]}``. A feature is added before
the first file that needs it, so an older fsjobs that meets it refuses to
write (and says which version knows it) instead of misreading the tree; reading
still works. A format-1 root must be converted with ``fsjobs migrate``.
"""

from __future__ import annotations

import errno
import os
import secrets
import time
import typing
from collections.abc import Callable

import attrs

from . import _durable, _json, _names
from ._paths import Dirs
from .errors import FormatError, StoreError

FORMAT_VERSION = 2
#: The fsjobs version that reads format 1, for roots that are not migrated.
LAST_FORMAT1_VERSION = "0.1"
#: Every feature this fsjobs knows, and the version that introduced it.
KNOWN_FEATURES: dict[str, str] = {
    "depends_on": "0.2",
    "executor": "0.2",
    "periodic": "0.2",
    "queue_settings": "0.2",
    "workflows": "0.2",
}
#: Set by ``fsjobs migrate`` while it converts a format-1 root: every writer refuses.
MIGRATING = "migrating"
_MAX_SIZE = 64 * 1024


@attrs.frozen
class RootFormat:
    """What ``fsjobs.json`` says."""

    version: int
    features: tuple[str, ...] = ()

    @property
    def names(self) -> frozenset[str]:
        return frozenset(entry.partition("@")[0] for entry in self.features)

    def unknown(self) -> list[str]:
        """The entries this fsjobs does not know, as written (``name@version``)."""
        return [e for e in self.features if e.partition("@")[0] not in KNOWN_FEATURES]

    def refusal(self, root: str) -> str | None:
        """Why this fsjobs must not write to the root; None when it may."""
        if MIGRATING in self.names:
            return f"{root} is being migrated by `fsjobs migrate`: wait for it to finish"
        unknown = self.unknown()
        if not unknown:
            return None
        needs = []
        for entry in unknown:
            name, _, version = entry.partition("@")
            needs.append(f"{name!r} (fsjobs {version} or later)" if version else repr(name))
        return (
            f"{root} uses features this fsjobs does not know: {', '.join(needs)}; "
            "upgrade fsjobs to write to it (reading still works)"
        )

    def to_json(self) -> bytes:
        body = {"format": self.version, "features": list(self.features)}
        return _json.dumps(body).encode() + b"\n"


def feature_entry(name: str) -> str:
    """How a known feature is written in ``fsjobs.json``: ``name@version``."""
    return f"{name}@{KNOWN_FEATURES[name]}"


def read(dirs: Dirs) -> RootFormat | None:
    """The root's format file; None if there is none yet. FormatError if unusable."""
    for tries in range(50):
        try:
            data = _durable.read_file(dirs.root_fd, _names.FORMAT_FILE, _MAX_SIZE)
        except FileNotFoundError:
            return None
        except (OSError, StoreError) as exc:
            if exc.errno == errno.ESTALE and tries < 49:
                time.sleep(0.01)  # replaced by another host (a feature added): read again
                continue
            raise FormatError(
                f"{dirs.root_path}/{_names.FORMAT_FILE} is not a readable regular file: {exc}"
            ) from exc
        return parse(data, dirs.root_path)
    raise AssertionError("unreachable")  # pragma: no cover


def parse(data: bytes, root: str) -> RootFormat:
    where = f"{root}/{_names.FORMAT_FILE}"
    try:
        body = _json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FormatError(f"{where} is damaged: {exc}") from exc
    if not isinstance(body, dict) or not isinstance(body.get("format"), int):
        raise FormatError(f"{where} is damaged: no format number")
    version = body["format"]
    assert isinstance(version, int)
    if version == 1:
        raise FormatError(
            f"{root} holds fsjobs format 1: convert it in place with `fsjobs --root {root} "
            f"migrate` (stop its workers first), or use fsjobs {LAST_FORMAT1_VERSION}"
        )
    if version != FORMAT_VERSION:
        raise FormatError(
            f"{root} holds fsjobs format {version}; this fsjobs reads format "
            f"{FORMAT_VERSION}: upgrade fsjobs"
        )
    features = body.get("features", [])
    if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
        raise FormatError(f"{where} is damaged: 'features' is not a list of names")
    return RootFormat(version, tuple(str(f) for f in features))


def ensure(dirs: Dirs, *, durable: bool) -> RootFormat:
    """
    The root's format, writing a new format file into an empty root first. A
    fresh file is linked into place, so two processes opening one new root agree.
    """
    found = read(dirs)
    if found is not None:
        return found
    fresh = RootFormat(FORMAT_VERSION)
    tmp = f"{_names.FORMAT_FILE}.{secrets.token_hex(8)}"
    root, tmp_fd = dirs.root_fd, dirs.cached((_names.TMP,))  # a leftover there is collected
    _durable.write_new(tmp_fd, tmp, fresh.to_json(), sync=durable)
    try:
        os.link(tmp, _names.FORMAT_FILE, src_dir_fd=tmp_fd, dst_dir_fd=root)
        if durable:
            _durable.fsync_dir(root)
    except FileExistsError:
        pass
    finally:
        _durable.unlink_quiet(tmp_fd, tmp)
    found = read(dirs)
    if found is None:
        raise FormatError(f"{dirs.root_path}/{_names.FORMAT_FILE} vanished while it was created")
    return found


Change: typing.TypeAlias = Callable[[RootFormat], RootFormat]


def rewrite(dirs: Dirs, change: Change, *, allow_format1: bool = False) -> RootFormat:
    """
    Change the format file under an OFD lock on ``fsjobs.lock``: re-read, apply
    `change`, write a temporary file, fsync, rename it over ``fsjobs.json``,
    fsync the root, re-read to verify. Returns what is now on disk.
    """
    root = dirs.root_fd
    lock = _durable.open_lock_file(root, _names.FORMAT_LOCK, create=True)
    assert lock is not None
    try:
        _durable.wait_lock(lock)
        try:
            current = ensure(dirs, durable=True)
        except FormatError:
            if not allow_format1:
                raise
            current = RootFormat(1)  # fsjobs migrate: the one writer of a format-1 root
        wanted = change(current)
        if wanted == current:
            return current
        tmp = f"{_names.FORMAT_FILE}.{secrets.token_hex(8)}"
        tmp_fd = dirs.cached((_names.TMP,))
        _durable.write_new(tmp_fd, tmp, wanted.to_json(), sync=True)
        try:
            os.rename(tmp, _names.FORMAT_FILE, src_dir_fd=tmp_fd, dst_dir_fd=root)
        except BaseException:
            _durable.unlink_quiet(tmp_fd, tmp)
            raise
        _durable.fsync_dir(root)
        written = read(dirs)
        if written != wanted:
            raise FormatError(f"{dirs.root_path}/{_names.FORMAT_FILE} did not keep the change")
        return written
    finally:
        os.close(lock)


def with_feature(name: str) -> Change:
    """A change that adds the known feature `name` (nothing if it is there)."""

    def add(current: RootFormat) -> RootFormat:
        if name in current.names:
            return current
        return attrs.evolve(current, features=(*current.features, feature_entry(name)))

    return add
