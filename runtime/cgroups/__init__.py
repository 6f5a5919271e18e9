"""cgroups v1 and v2 for containers, detected at run time.

Layout (docs/contracts.md): v1 ``/sys/fs/cgroup/<controller>/<parent>/<id>``, v2
``/sys/fs/cgroup/<parent>/<id>``; ``parent`` from ``PYSTACK_CGROUP_PARENT`` (default
``pystack``).  A hybrid host (v1 controllers + a controller-less cgroup2 at
/sys/fs/cgroup/unified, like this project's CI) uses the v1 driver.

API (part A's runtime and the engine call these):

    mode() -> "v1" | "v2" | "hybrid"
    cg = Cgroup.create(parent, name, resources=None)   # dirs + linux.resources; on a
                                                       # failure nothing is left behind
    cg = Cgroup.find(parent, name)                     # existing one (recovery) or None
    cg.add(pid); cg.apply(resources)                   # OCI linux.resources (update)
    cg.freeze(); cg.thaw(); cg.frozen()                # pause / unpause
    cg.stats() -> {"cpu_stats", "memory_stats", "pids_stats"}   (Docker's field names)
    cg.limits() -> {"memory.limit": ..., "cpu.quota": ...}      (as the kernel holds them)
    cg.oom_killed() -> bool; cg.oom_kill_count() -> int
    w = cg.oom_watcher(); w.fileno(); w.wait(timeout); w.check(); w.close()
    cg.pids() -> list[int]; cg.kill_all(sig=SIGKILL); cg.destroy()
    cg.namespace_mounts() -> [{"name", "host_path", "fstype", "options"}]
                           # what to mount at the container's /sys/fs/cgroup[/name]
    cg.version (1 | 2); cg.warnings (limits that could not be applied, e.g. v2 devices)
    list_cgroups(parent) -> set[str]; cleanup_parent(parent)   # crash recovery, tests
    default_parent()
    cg.paths() -> {controller: dir} ("" = unified)   # what a state file records

By path (``linux.cgroupsPath`` style ``/a/b/id``) and by recorded paths, for the runtime
core's state records:

    create(rel, resources=None) -> cg;  open_path(rel) -> cg | None
    from_paths(paths) -> cg;  freeze(paths, on); oom_killed(paths); stats(paths);
    remove(paths); kill_all(paths, sig)

Drivers: :mod:`.v1` and :mod:`.v2`; both expose the same methods.
"""
from __future__ import annotations

import os
import _signal as signal  # (signal.py builds enums: ~5 ms per CLI run)
from pystack.runtime.cgroups.common import CgPath as Path  # (not pathlib: see CgPath)

from pystack.errors import UserError
from pystack.runtime.cgroups import v1, v2
from pystack.runtime.cgroups.common import check_name, default_parent
from pystack.runtime.cgroups.v1 import CgroupV1
from pystack.runtime.cgroups.v2 import CgroupV2

AnyCgroup = CgroupV1 | CgroupV2  # (no typing import: the CLI's start path)

__all__ = ["Cgroup", "CgroupV1", "CgroupV2", "mode", "default_parent", "list_cgroups",
           "cleanup_parent"]


def mode() -> str:
    """``v2`` (unified at /sys/fs/cgroup), ``hybrid`` (v1 controllers + cgroup2 at
    /sys/fs/cgroup/unified) or ``v1``."""
    unified = v2.unified_mount()
    if unified is not None and unified == Path("/sys/fs/cgroup"):
        return "v2"
    if v1.hierarchies():
        return "hybrid" if unified is not None else "v1"
    if unified is not None:
        return "v2"
    raise UserError("no cgroup filesystem is mounted under /sys/fs/cgroup")


def _driver_version(version: int | None) -> int:
    if version is not None:
        return version
    env = os.environ.get("PYSTACK_CGROUP_VERSION")
    if env in ("1", "2"):
        return int(env)
    return 2 if mode() == "v2" else 1


def _make(parent: str, name: str, version: int | None, mount: Path | None) -> AnyCgroup:
    parent = check_name(parent, "cgroup parent")
    name = check_name(name)
    if _driver_version(version) == 2:
        return CgroupV2(parent, name, mount)
    return CgroupV1(parent, name)


class Cgroup:
    """Factory for the driver of this host (see the module docstring for the API)."""

    @staticmethod
    def create(parent: str | None, name: str, resources: dict | None = None, *,
               version: int | None = None, mount: Path | None = None) -> AnyCgroup:
        """Make the container's cgroup and apply ``resources`` (OCI linux.resources).

        ``version``/``mount`` force a driver (tests use the controller-less cgroup2 of a
        hybrid host); normally both are detected."""
        cg = _make(parent or default_parent(), name, version, mount)
        existed = cg.exists()
        try:
            cg.create_dirs()
            cg.apply(resources)
        except BaseException:
            if not existed:
                cg.destroy(timeout=1.0)
            raise
        return cg

    @staticmethod
    def find(parent: str | None, name: str, *, version: int | None = None,
             mount: Path | None = None) -> AnyCgroup | None:
        """The cgroup of container ``name`` if it exists (after a daemon restart)."""
        cg = _make(parent or default_parent(), name, version, mount)
        return cg if cg.exists() else None


def list_cgroups(parent: str | None = None, *, version: int | None = None,
                 mount: Path | None = None) -> set[str]:
    """Names of the container cgroups under ``parent``."""
    parent = check_name(parent or default_parent(), "cgroup parent")
    if _driver_version(version) == 2:
        return v2.children(parent, mount)
    return v1.children(parent)


def cleanup_parent(parent: str | None = None, *, version: int | None = None,
                   mount: Path | None = None) -> list[str]:
    """Kill what runs in every cgroup under ``parent``, remove them and the parent:
    the engine's crash recovery and the tests' teardown.  Returns the names removed."""
    parent = check_name(parent or default_parent(), "cgroup parent")
    names = sorted(list_cgroups(parent, version=version, mount=mount))
    for name in names:
        cg = _make(parent, name, version, mount)
        if cg.pids():
            cg.kill_all(signal.SIGKILL)
        cg.destroy()
    if _driver_version(version) == 2:
        v2.remove_parent(parent, mount)
    else:
        v1.remove_parent(parent)
    return names


def _split_rel(rel: str) -> tuple[str, str]:
    parts = [p for p in rel.strip().split("/") if p]
    if len(parts) < 2:
        # a bare name goes under the default parent
        return default_parent(), check_name(parts[0] if parts else "")
    return "/".join(parts[:-1]), parts[-1]


def create(rel: str, resources: dict | None = None) -> AnyCgroup:
    """``Cgroup.create`` for a cgroupsPath-style path ``/parent/.../id``."""
    parent, name = _split_rel(rel)
    return Cgroup.create(parent, name, resources)


def layout(rel: str) -> AnyCgroup:
    """The driver object of the cgroup ``create(rel)`` would make, without making it
    (its ``paths()`` are known before the directories exist)."""
    parent, name = _split_rel(rel)
    return _make(parent or default_parent(), name, None, None)


def open_path(rel: str) -> AnyCgroup | None:
    """``Cgroup.find`` for a cgroupsPath-style path."""
    parent, name = _split_rel(rel)
    return Cgroup.find(parent, name)


def from_paths(paths: dict[str, str]) -> AnyCgroup:
    """The driver object for recorded ``cg.paths()`` (no kernel object is created)."""
    if set(paths) == {""}:
        d = Path(paths[""])
        mount = v2.unified_mount()
        if mount is None:
            raise UserError("no cgroup2 hierarchy is mounted")
        parent, name = _split_rel(str(d.relative_to(mount)))
        return CgroupV2(parent, name, mount)
    hier = v1.with_unified(v1.hierarchies())
    ctl = v1.controller_map(hier)
    for c, d in paths.items():
        if c in ctl:
            parent, name = _split_rel(str(Path(d).relative_to(hier[ctl[c]])))
            cg = CgroupV1(parent, name, hier)
            if "" not in paths:   # recorded before the unified hierarchy was joined
                cg.dirs.pop("", None)
            return cg
    raise UserError(f"no mounted cgroup hierarchy matches {sorted(paths)}")


def freeze(paths: dict[str, str], on: bool) -> None:
    """Freeze (``on``) or thaw the cgroup recorded as ``paths``."""
    cg = from_paths(paths)
    cg.freeze() if on else cg.thaw()


def oom_killed(paths: dict[str, str]) -> bool:
    return from_paths(paths).oom_killed()


def stats(paths: dict[str, str]) -> dict:
    return from_paths(paths).stats()


def kill_all(paths: dict[str, str], sig: int = signal.SIGKILL) -> None:
    from_paths(paths).kill_all(sig)


def remove(paths: dict[str, str], timeout: float = 5.0) -> None:
    from_paths(paths).destroy(timeout)
