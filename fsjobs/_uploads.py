"""
Uploads staged before their push: written as they arrive, then renamed into the job.

An upload that arrives over a network (the HTTP API's multipart bodies) is
written to disk as it streams in, before the job exists. It goes to a folder
under ``tmp/`` that the push later renames into the job's folder as
``uploads/``: one rename, no copy, whatever the size.

::

    tmp/uploads.<token>      an empty file, OFD-locked for as long as the stage lives
    tmp/uploads.<token>.d/   the upload files, each created here with O_EXCL

The lock tells fsck that the stage's process is alive: ``fsck --repair``
removes a stage folder only when its lock file can be locked or is gone and the
folder is older than the staging horizon, so an abandoned upload (a client
that went away, a server killed mid-request) is collected like any other
staging garbage, and a slow live one never is. A crash after the rename and
before the push's commit leaves an unpublished job folder, which fsck also
collects (`_push`). The store creates the files and hands out descriptors;
the caller writes them (the HTTP layer does, with aiofiles) and closes them.
"""

from __future__ import annotations

import os

import attrs

from . import _durable, _names
from ._tree import Tree
from .errors import InvalidJob

#: the prefix of a stage's lock file in tmp/; its folder adds `FOLDER_SUFFIX`
PREFIX = "uploads"
FOLDER_SUFFIX = ".d"


@attrs.define
class UploadStage:
    """Uploads being written before their push; see the module's docstring."""

    #: ``uploads.<token>``: the lock file's name in tmp/
    lock_name: str
    #: the descriptor holding the OFD lock; -1 once the stage is discarded
    lock_fd: int
    #: the upload names created so far, in order
    names: list[str] = attrs.field(factory=list)
    #: True once a push renamed the folder into its job
    moved: bool = False

    @property
    def folder(self) -> str:
        """The stage's folder under tmp/."""
        return self.lock_name + FOLDER_SUFFIX


def folder_owner(name: str) -> str | None:
    """The lock file of a stage folder named `name` in tmp/; None for any other name."""
    if name.startswith(PREFIX + ".") and name.endswith(FOLDER_SUFFIX):
        return name[: -len(FOLDER_SUFFIX)]
    return None


def stage(tree: Tree) -> UploadStage:
    """A new, locked, empty stage (StoreFull below the free-space reserve)."""
    tree.for_writing()
    tree.check_space()
    lock_name, lock_fd = tree.create_staging(PREFIX)
    staged = UploadStage(lock_name, lock_fd)
    try:
        tree.dirs.mkdir_new(tree.dirs.cached((_names.TMP,)), staged.folder)
    except BaseException:
        discard(tree, staged)
        raise
    return staged


def create(tree: Tree, staged: UploadStage, name: str) -> int:
    """
    Create the upload `name` in the stage (a safe name, not created before, else
    InvalidJob) and return a write-only descriptor for it; the caller writes and
    closes it.
    """
    _names.check_name("upload", name)
    if name in staged.names:
        raise InvalidJob(f"upload {name!r} is given twice")
    if staged.lock_fd < 0 or staged.moved:
        raise InvalidJob("this upload stage is closed")
    with tree.dirs.open((_names.TMP, staged.folder)) as fd:
        try:
            out = os.open(name, _durable.O_NEW, _durable.FILE_MODE, dir_fd=fd)
        except OSError as exc:
            _durable.raise_full(exc, f"staging upload {name!r}")
            raise
    staged.names.append(name)
    return out


def move_into(tree: Tree, staged: UploadStage, job_fd: int, *, sync: bool) -> None:
    """
    Make the stage the job's ``uploads/``: fsync every file and the folder (if
    `sync`), then rename it into the job's folder. The caller fsyncs the job's
    folder.
    """
    tmp_fd = tree.dirs.cached((_names.TMP,))
    if sync:
        with tree.dirs.open((_names.TMP, staged.folder)) as folder_fd:
            for name in staged.names:
                fd, _ = _durable.open_regular(folder_fd, name)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            _durable.fsync_dir(folder_fd)
    os.rename(staged.folder, _names.UPLOADS, src_dir_fd=tmp_fd, dst_dir_fd=job_fd)
    staged.moved = True
    if sync:
        _durable.fsync_dir(tmp_fd)


def discard(tree: Tree, staged: UploadStage) -> None:
    """
    End the stage: remove its folder unless a push took it, then its lock file,
    and drop the lock. Safe to call more than once.
    """
    if staged.lock_fd < 0:
        return
    tmp_fd = tree.dirs.cached((_names.TMP,))
    try:
        if not staged.moved:
            _durable.rmtree_at(tmp_fd, staged.folder)
        _durable.unlink_quiet(tmp_fd, staged.lock_name)
    finally:
        os.close(staged.lock_fd)
        staged.lock_fd = -1
