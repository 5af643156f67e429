"""
`fsjobs doctor`: is this root on a filesystem that keeps fsjobs' promises?

On NFS that depends on mount options (DESIGN §4.10): a soft mount can lose
writes, a positive lookup cache hides new names for up to a minute, long
attribute caches delay what other hosts see, and local-only locks break rescue.
Then two probes that hold on any filesystem: locks exclude, and the clock of
the filesystem (the NFS server stamps new files) agrees with ours.
"""

from __future__ import annotations

import enum

import attrs

from ._paths import Mount, mount_of
from .store import Store

#: clock skew above which scheduled times and backoffs go wrong across hosts
MAX_SKEW = 1.0


class Level(enum.StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@attrs.frozen
class Check:
    name: str
    level: Level
    detail: str


def doctor(store: Store) -> list[Check]:
    """Every check, in order; any FAIL means: do not run workers on this root."""
    mount = mount_of(store.root)
    if mount is None:
        checks = [Check("filesystem", Level.WARN, "unknown: /proc/self/mountinfo is unreadable")]
    else:
        kind = "network" if mount.is_network else "local"
        detail = f"{mount.fstype} ({kind}) mounted at {mount.point}"
        checks = [Check("filesystem", Level.OK, detail), *mount_checks(mount)]
    if store.probe_locks():
        checks.append(Check("locks", Level.OK, "a held lock keeps a second opener out"))
    else:
        checks.append(Check("locks", Level.FAIL, "locks do not exclude: rescue would be unsafe"))
    skew = store.probe_clock_skew()
    level = Level.OK if abs(skew) <= MAX_SKEW else Level.FAIL
    detail = f"filesystem clock {skew:+.3f} s from this host's (limit ±{MAX_SKEW:g} s)"
    checks.append(Check("clock", level, detail))
    free, reserve = store.free_bytes(), store.reserve_bytes
    level = Level.OK if free >= 4 * reserve else Level.WARN if free >= reserve else Level.FAIL
    detail = f"{free / 2**30:.1f} GiB free; pushes stop below {reserve / 2**20:.0f} MiB"
    checks.append(Check("space", level, detail))
    return checks


def mount_problems(root: str) -> list[Check]:
    """The failed mount checks of `root` (cheap: no probes), for a worker to warn about."""
    mount = mount_of(root)
    return [] if mount is None else [c for c in mount_checks(mount) if c.level is Level.FAIL]


def mount_checks(mount: Mount) -> list[Check]:
    """What the mount options of an NFS mount say (nothing to check on other filesystems)."""
    if not mount.fstype.startswith("nfs"):
        return []
    checks = []
    vers = mount.option("vers") or mount.option("nfsvers") or "?"
    level = Level.OK if vers.startswith("4") else Level.WARN
    checks.append(Check("nfs version", level, f"vers={vers} (4.x recommended: leases, locks)"))
    if mount.option("soft") is not None or mount.option("softreval") is not None:
        checks.append(Check("hard", Level.FAIL, "soft mount: a slow server can lose writes"))
    else:
        checks.append(Check("hard", Level.OK, "hard mount"))
    lookup = mount.option("lookupcache") or "all"
    if lookup in ("none", "pos", "positive"):
        checks.append(Check("lookupcache", Level.OK, f"lookupcache={lookup}"))
    else:
        detail = f"lookupcache={lookup}: new names can stay hidden; use lookupcache=positive"
        checks.append(Check("lookupcache", Level.FAIL, detail))
    longest = max(_seconds(mount.option(k)) for k in ("acregmax", "acdirmax", "actimeo"))
    if mount.option("noac") is not None or longest <= 1:
        checks.append(Check("attribute cache", Level.OK, f"at most {longest:g} s"))
    else:
        detail = f"attributes cached up to {longest:g} s; use actimeo=1"
        checks.append(Check("attribute cache", Level.FAIL, detail))
    local = mount.option("local_lock")
    if mount.option("nolock") is not None or local not in (None, "none"):
        detail = "locks are local to this host (nolock or local_lock): rescue would be unsafe"
        checks.append(Check("nfs locks", Level.FAIL, detail))
    else:
        checks.append(Check("nfs locks", Level.OK, "locks go to the server"))
    return checks


def _seconds(value: str | None) -> float:
    try:
        return float(value) if value else 0.0
    except ValueError:
        return float("inf")
