"""The runtime core's few needs from cgroups, in one place: the container's cgroup path,
then create/place, freeze, list pids, OOM flag, kill-all, stats, remove through part B's
``pystack.runtime.cgroups`` (v1/v2 drivers, limits, Docker-shaped stats).

Paths are the dict part B's ``cg.paths()`` returns and state.json records:
``{controller: absolute directory}``, one entry per v1 hierarchy (``memory``,
``freezer``, ``name=systemd`` ...) and ``""`` for the unified (v2) hierarchy.
"""
from __future__ import annotations

import _signal as signal  # (signal.py builds enums: ~5 ms of imports per CLI run)
import os


def cgroup_path_for(spec: dict, cid: str) -> str:
    """``linux.cgroupsPath`` or ``/<PYSTACK_CGROUP_PARENT>/<id>`` (relative to each root)."""
    path = ((spec.get("linux") or {}).get("cgroupsPath") or "").strip()
    if not path:
        parent = os.environ.get("PYSTACK_CGROUP_PARENT", "pystack").strip("/") or "pystack"
        path = f"/{parent}/{cid}"
    if ":" in path and not path.startswith("/"):
        # systemd's "slice:prefix:name" (podman --cgroup-manager systemd): a plain path
        slice_, prefix, name = (path.split(":") + ["", ""])[:3]
        path = f"/{slice_}/{prefix}-{name}.scope"
    parts = [p for p in path.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise ValueError(f"invalid linux.cgroupsPath {path!r}")
    return "/" + "/".join(parts)


_LAYOUTS: dict = {}  # (parent path, driver knob, mount generation) -> {controller: dir of the parent}


def paths_for(spec: dict, cid: str) -> dict[str, str]:
    """The paths ``setup`` will return, before anything exists (the library sends them
    to the shim and creates the cgroups while the init builds its mounts). The layout
    of a parent is kept while the mount table stays the same (it is asked for on every
    create, before the request goes out: ~0.1-0.2 ms of driver objects otherwise)."""
    from pystack.runtime import cgroups
    from pystack.runtime.cgroups import common
    rel = cgroup_path_for(spec, cid)
    parent, _, name = rel.rpartition("/")
    if not parent:
        return dict(cgroups.layout(rel).paths())
    key = (parent, os.environ.get("PYSTACK_CGROUP_VERSION"), os.environ.get("PYSTACK_CGROUP_PARENT"),
           common.mount_generation())
    dirs = _LAYOUTS.get(key)
    if dirs is None:
        full = dict(cgroups.layout(rel).paths())
        if not all(p.endswith("/" + name) for p in full.values()):
            return full
        dirs = {k: p[: len(p) - len(name)] for k, p in full.items()}
        if len(_LAYOUTS) > 64:
            _LAYOUTS.clear()
        _LAYOUTS[key] = dirs
    return {k: d + name for k, d in dirs.items()}


def setup(spec: dict, cid: str) -> dict[str, str]:
    """Create the container's cgroups with ``linux.resources`` applied; their paths."""
    from pystack.runtime import cgroups
    resources = (spec.get("linux") or {}).get("resources") or {}
    return dict(cgroups.create(cgroup_path_for(spec, cid), resources).paths())


def pids(paths: dict[str, str]) -> list[int]:
    """Every process in the container's cgroup (host pids)."""
    for key in ("pids", "freezer", "memory", ""):
        if key in paths:
            try:
                with open(os.path.join(paths[key], "cgroup.procs")) as f:
                    text = f.read()
            except FileNotFoundError:
                return []
            return sorted(int(x) for x in text.split())
    return []


def freeze(paths: dict[str, str], on: bool) -> None:
    """Pause (``on``) or resume every process of the container."""
    from pystack.runtime import cgroups
    cgroups.freeze(paths, on)


def oom_killed(paths: dict[str, str]) -> bool:
    """Whether the kernel OOM-killed a process of this cgroup: the ``oom_kill`` count of
    v1's ``memory.oom_control`` or v2's ``memory.events`` (read directly: the shim asks
    once per exit, on the path from the container's exit to ``wait``)."""
    if not paths:
        return False
    if "memory" in paths:
        path = os.path.join(paths["memory"], "memory.oom_control")
    elif set(paths) == {""}:
        path = os.path.join(paths[""], "memory.events")
    else:
        return False
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return False
    for line in data.splitlines():
        key, _, value = line.partition(b" ")
        if key == b"oom_kill":
            return value.strip().isdigit() and int(value) > 0
    return False


def kill_all(paths: dict[str, str], sig: int = signal.SIGKILL) -> None:
    """Signal every process of the container's cgroup (for a shared pid namespace)."""
    for pid in pids(paths):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def stats(paths: dict[str, str]) -> dict:
    """Docker-shaped ``cpu_stats``/``memory_stats``/``pids_stats`` (part B's)."""
    from pystack.runtime import cgroups
    return cgroups.stats(paths)


def remove(paths: dict[str, str], timeout: float = 5.0) -> None:
    """Remove the container's cgroup directories (its processes must be gone)."""
    if not paths:
        return
    from pystack.runtime import cgroups
    cgroups.remove(paths, timeout)
