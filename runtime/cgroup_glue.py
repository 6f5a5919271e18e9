"""The runtime core's few needs from cgroups, in one place: create/place, freeze, list
pids, OOM flag, kill-all, stats, remove.

Part B owns ``pystack.runtime.cgroups`` (limits, stats, v1/v2 drivers). Until a call is
available there, a minimal local version is used, so the container core works on its
own; each function is the single place to switch to part B's.

Paths are a dict ``{controller: absolute directory}``; on cgroup v1 one entry per
hierarchy (``memory``, ``freezer``, ``name=systemd`` ...), ``""`` for the unified (v2)
hierarchy, so that ``/proc/<pid>/cgroup`` lines map onto it directly.
"""
from __future__ import annotations

import errno
import os
import signal
import time
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")


def _b():
    """Part B's module, or None while it is not there."""
    return None  # switched on once part B's API is read and wired in


def unified() -> bool:
    return (ROOT / "cgroup.controllers").exists()


def cgroup_path_for(spec: dict, cid: str) -> str:
    """``linux.cgroupsPath`` or ``/<PYSTACK_CGROUP_PARENT>/<id>`` (relative to each root)."""
    path = ((spec.get("linux") or {}).get("cgroupsPath") or "").strip()
    if not path:
        parent = os.environ.get("PYSTACK_CGROUP_PARENT", "pystack").strip("/") or "pystack"
        path = f"/{parent}/{cid}"
    if ":" in path and not path.startswith("/"):
        # systemd's "slice:prefix:name": a plain path of its parts on cgroupfs
        slice_, prefix, name = (path.split(":") + ["", ""])[:3]
        path = f"/{slice_}/{prefix}-{name}.scope"
    parts = [p for p in path.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise ValueError(f"invalid linux.cgroupsPath {path!r}")
    return "/" + "/".join(parts)


def hierarchies() -> dict[str, Path]:
    """{key: mount point} of the cgroup hierarchies mounted under /sys/fs/cgroup."""
    if unified():
        return {"": ROOT}
    out: dict[str, Path] = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            fields = pre.split()
            fstype, _src, opts = post.split()[:3]
            mnt = Path(fields[4])
            if not str(mnt).startswith(str(ROOT) + "/"):
                continue
            if fstype == "cgroup2":
                out[""] = mnt
            elif fstype == "cgroup":
                subs = [o for o in opts.split(",") if o not in ("rw", "ro") and "=" not in o
                        or o.startswith("name=")]
                for s in subs:
                    out[s] = mnt
    return out


def setup(spec: dict, cid: str) -> dict[str, str]:
    """Create the container's cgroups and apply ``linux.resources``; return the paths."""
    b = _b()
    rel = cgroup_path_for(spec, cid)
    resources = (spec.get("linux") or {}).get("resources") or {}
    if b is not None and hasattr(b, "create"):
        cg = b.create(rel, resources)
        return _paths_of(cg)
    paths: dict[str, str] = {}
    for key, mnt in hierarchies().items():
        d = mnt / rel.lstrip("/")
        _mkdirs(mnt, d, key)
        paths[key] = str(d)
    _apply_local(paths, resources)
    return paths


def _paths_of(cg) -> dict[str, str]:
    paths = getattr(cg, "paths", None)
    if callable(paths):
        paths = paths()
    return {k: str(v) for k, v in dict(paths).items()}


def _mkdirs(mnt: Path, d: Path, key: str) -> None:
    """mkdir -p, copying cpuset.cpus/mems down on v1 (an empty cpuset refuses tasks)."""
    cur = mnt
    for part in d.relative_to(mnt).parts:
        parent, cur = cur, cur / part
        try:
            cur.mkdir()
        except FileExistsError:
            continue
        if key == "cpuset":
            for f in ("cpuset.cpus", "cpuset.mems"):
                if not (cur / f).read_text().strip():
                    (cur / f).write_text((parent / f).read_text())


def _write(path: Path, value) -> None:
    with open(path, "w") as f:
        f.write(str(value))


def _apply_local(paths: dict[str, str], res: dict) -> None:
    """The handful of limits the core's own tests need, until part B's module lands."""
    mem = res.get("memory") or {}
    if "memory" in paths and mem.get("limit") is not None:
        _write(Path(paths["memory"], "memory.limit_in_bytes"), mem["limit"])
        if mem.get("swap") is not None:
            _write(Path(paths["memory"], "memory.memsw.limit_in_bytes"), mem["swap"])
    pids = res.get("pids") or {}
    if "pids" in paths and pids.get("limit") is not None:
        lim = pids["limit"]
        _write(Path(paths["pids"], "pids.max"), "max" if lim <= 0 else lim)
    cpu = res.get("cpu") or {}
    if "cpu" in paths:
        if cpu.get("period"):
            _write(Path(paths["cpu"], "cpu.cfs_period_us"), cpu["period"])
        if cpu.get("quota"):
            _write(Path(paths["cpu"], "cpu.cfs_quota_us"), cpu["quota"])
        if cpu.get("shares"):
            _write(Path(paths["cpu"], "cpu.shares"), cpu["shares"])


def pids(paths: dict[str, str]) -> list[int]:
    """Every process in the container's cgroup."""
    for key in ("pids", "freezer", "memory", ""):
        if key in paths:
            try:
                text = Path(paths[key], "cgroup.procs").read_text()
            except FileNotFoundError:
                return []
            return sorted(int(x) for x in text.split())
    return []


def freeze(paths: dict[str, str], on: bool) -> None:
    """Pause/resume every process of the container (v1 freezer, else v2 cgroup.freeze)."""
    b = _b()
    if b is not None and hasattr(b, "freeze"):
        b.freeze(paths, on)
        return
    if "freezer" in paths:
        f = Path(paths["freezer"], "freezer.state")
        _write(f, "FROZEN" if on else "THAWED")
        want = "FROZEN" if on else "THAWED"
        for _ in range(1000):
            if f.read_text().strip() == want:
                return
            time.sleep(0.001)
        raise OSError(errno.EBUSY, f"freezer did not reach {want}")
    if "" in paths:
        _write(Path(paths[""], "cgroup.freeze"), "1" if on else "0")
        return
    raise OSError(errno.ENOTSUP, "no freezer cgroup")


def oom_killed(paths: dict[str, str]) -> bool:
    """Whether the kernel OOM-killed a process of this cgroup (oom_kill counter > 0)."""
    b = _b()
    if b is not None and hasattr(b, "oom_killed"):
        try:
            return bool(b.oom_killed(paths))
        except Exception:  # noqa: BLE001 - fall back to reading the counter
            pass
    candidates = []
    if "memory" in paths:
        candidates.append(Path(paths["memory"], "memory.oom_control"))
    if "" in paths:
        candidates.append(Path(paths[""], "memory.events"))
    for f in candidates:
        try:
            for line in f.read_text().splitlines():
                k, _, v = line.partition(" ")
                if k == "oom_kill" and int(v) > 0:
                    return True
        except (OSError, ValueError):
            continue
    return False


def kill_all(paths: dict[str, str], sig: int = signal.SIGKILL) -> None:
    """Signal every process of the container's cgroup (for a shared pid namespace)."""
    for pid in pids(paths):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def stats(paths: dict[str, str]) -> dict:
    """CPU, memory and pids usage (part B's richer stats when available)."""
    b = _b()
    if b is not None and hasattr(b, "stats"):
        return b.stats(paths)
    out: dict = {"pids": {"current": len(pids(paths))}}
    if "memory" in paths:
        d = Path(paths["memory"])
        out["memory"] = {"usage": int((d / "memory.usage_in_bytes").read_text()),
                         "limit": int((d / "memory.limit_in_bytes").read_text())}
    if "cpuacct" in paths:
        out["cpu"] = {"usage_ns": int(Path(paths["cpuacct"], "cpuacct.usage").read_text())}
    return out


def remove(paths: dict[str, str], timeout: float = 5.0) -> None:
    """Remove the container's cgroup directories (after its processes are gone)."""
    b = _b()
    if b is not None and hasattr(b, "remove"):
        b.remove(paths)
        return
    deadline = time.monotonic() + timeout
    for key, d in sorted(paths.items()):
        p = Path(d)
        while p.exists():
            try:
                _rmtree_cgroup(p)
                break
            except OSError as exc:
                if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                    raise
                time.sleep(0.005)


def _rmtree_cgroup(p: Path) -> None:
    for child in [c for c in p.iterdir() if c.is_dir()]:
        _rmtree_cgroup(child)
    p.rmdir()
