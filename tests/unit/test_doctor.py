"""fsjobs doctor: the mount options NFS needs, and the lock and clock probes."""

from __future__ import annotations

import pathlib

import pytest

from fsjobs._paths import Mount, mount_of
from fsjobs.doctor import Level, doctor, mount_checks
from fsjobs.store import Store

GOOD_NFS = (
    "rw,relatime,vers=4.2,rsize=1048576,hard,proto=tcp,timeo=600,retrans=2,sec=sys,"
    "lookupcache=pos,acregmin=1,acregmax=1,acdirmin=1,acdirmax=1,local_lock=none"
)


def levels(options: str, fstype: str = "nfs4") -> dict[str, Level]:
    mount = Mount("/srv/jobs", fstype, tuple(options.split(",")))
    return {c.name: c.level for c in mount_checks(mount)}


def test_a_well_mounted_nfs_root_passes() -> None:
    assert set(levels(GOOD_NFS).values()) == {Level.OK}


@pytest.mark.parametrize(
    ("change", "failing"),
    [
        ("hard", "soft"),
        ("lookupcache=pos", "lookupcache=all"),
        ("acregmax=1", "acregmax=60"),
        ("acdirmax=1", "acdirmax=60"),
        ("local_lock=none", "local_lock=all"),
        ("local_lock=none", "local_lock=none,nolock"),
    ],
)
def test_each_unsafe_nfs_option_fails(change: str, failing: str) -> None:
    """soft mounts, cached lookups, long attribute caches and host-local locks each fail."""
    bad = levels(GOOD_NFS.replace(change, failing))
    assert Level.FAIL in bad.values(), bad


def test_the_default_lookup_cache_fails_and_nfs3_warns() -> None:
    """With no lookupcache option the kernel caches negative lookups too: refused."""
    checks = levels(GOOD_NFS.replace("lookupcache=pos,", "").replace("vers=4.2", "vers=3"))
    assert checks["lookupcache"] is Level.FAIL
    assert checks["nfs version"] is Level.WARN


def test_other_filesystems_have_no_mount_checks() -> None:
    assert levels("rw,relatime", fstype="ext4") == {}
    assert levels("rw,allow_other", fstype="fuse.glusterfs") == {}


def test_doctor_on_a_local_root(root: pathlib.Path) -> None:
    """Locks exclude and the clock agrees on a local disk; the probes leave nothing behind."""
    store = Store(root)
    try:
        checks = {c.name: c for c in doctor(store)}
    finally:
        store.close()
    assert checks["locks"].level is Level.OK
    assert checks["clock"].level is Level.OK
    assert checks["filesystem"].detail.endswith(f"mounted at {mount_of(str(root)).point}")
    assert list((root / "tmp").iterdir()) == []


def test_mount_of_picks_the_longest_mount_point() -> None:
    mount = mount_of("/proc/self")
    assert mount is not None and (mount.point, mount.fstype) == ("/proc", "proc")
    assert not mount.is_network
