"""cgroup v2 driver: one directory ``<mount>/<parent>/<id>`` in the unified hierarchy.

OCI ``linux.resources`` are converted as runc converts them (cpu.shares -> cpu.weight,
memory.swap = memory+swap -> memory.swap.max = swap - limit, quota/period -> cpu.max).
Device rules become an eBPF BPF_PROG_TYPE_CGROUP_DEVICE program (devices_bpf.py), as
runc attaches one; where the kernel cannot load it, ``apply`` records a warning instead
(runtime-security.md §1.6: then drop CAP_MKNOD).
"""
from __future__ import annotations

import errno
import os
import _signal as signal  # (signal.py builds enums: ~5 ms per CLI run)
from pystack.runtime.cgroups.common import CgPath as Path  # (not pathlib: see CgPath)

from pystack.runtime.cgroups import common
from pystack.runtime.cgroups.base import CgroupMixin
from pystack.runtime.cgroups.common import read, read_int, read_keyed, write

WANTED = ("cpu", "cpuset", "memory", "pids", "io", "hugetlb")


def unified_mount() -> Path | None:
    """Where the cgroup2 hierarchy is mounted (/sys/fs/cgroup or /sys/fs/cgroup/unified)."""
    return common.from_mountinfo("unified", _parse_unified)


def _parse_unified(text: str) -> Path | None:
    for line in text.splitlines():
        left, _, right = line.partition(" - ")
        if right.split()[:1] == ["cgroup2"]:
            return Path(left.split()[4])
    return None


class CgroupV2(CgroupMixin):
    """A container's cgroup in the unified hierarchy."""

    version = 2

    def __init__(self, parent: str, name: str, mount: Path | None = None) -> None:
        self.parent = parent
        self.name = name
        m = mount or unified_mount()
        if m is None:
            raise RuntimeError("no cgroup2 hierarchy is mounted")
        self.mount = m
        self.rel = f"{parent}/{name}"
        self.dir = m / self.rel
        self.warnings: list[str] = []

    # -- layout -------------------------------------------------------------------------
    def paths(self) -> dict[str, str]:
        """{"": directory}: the unified hierarchy, keyed as /proc/<pid>/cgroup's "0::"."""
        return {"": str(self.dir)}

    def exists(self) -> bool:
        return self.dir.is_dir()

    def controllers(self) -> set[str]:
        """Controllers available in this cgroup (cgroup.controllers)."""
        try:
            return set(read(self.dir / "cgroup.controllers").split())
        except OSError:
            return set()

    def create_dirs(self) -> None:
        """mkdir -p, enabling the wanted controllers in each ancestor's subtree_control
        (only those the ancestor has; a v2 tree without controllers still works for
        processes, freezing and killing)."""
        d = self.mount
        for part in self.rel.split("/"):
            avail = set(read(d / "cgroup.controllers").split()) if (d / "cgroup.controllers").exists() else set()
            enable = [c for c in WANTED if c in avail]
            if enable:
                try:
                    write(d / "cgroup.subtree_control", " ".join("+" + c for c in enable))
                except OSError:
                    # e.g. EBUSY: the parent has processes of its own (no-internal-process
                    # rule); limits will then be missing, which apply() reports
                    pass
            d = d / part
            try:
                os.mkdir(d, 0o755)
            except FileExistsError:
                pass

    def add(self, pid: int) -> None:
        write(self.dir / "cgroup.procs", pid)

    def namespace_mounts(self) -> list[dict[str, Any]]:
        """One entry: bind ``host_path`` at /sys/fs/cgroup, or inside a cgroup namespace
        mount a fresh ``cgroup2`` (its root is then the container's cgroup)."""
        return [{"name": "", "host_path": self.dir, "fstype": "cgroup2", "options": ""}]

    # -- limits -------------------------------------------------------------------------
    def _write(self, fname: str, value: Any, field: str) -> None:
        if not (self.dir / fname).exists():
            ctl = fname.split(".")[0]
            raise common.UserError(
                f"{field}: the {ctl} controller is not enabled in cgroup v2 at {self.dir.parent}")
        write(self.dir / fname, value, field)

    def apply(self, resources: dict | None) -> None:
        res = resources or {}
        mem = res.get("memory") or {}
        f = "linux.resources.memory."
        limit, swap = mem.get("limit"), mem.get("swap")
        if limit is not None:
            self._write("memory.max", "max" if limit == -1 else limit, f + "limit")
        if swap is not None:
            if swap == -1:
                value: Any = "max"
            elif limit is not None and limit > 0:
                value = swap - limit
            else:
                raise common.UserError(f"{f}swap: a swap limit needs a memory limit on cgroup v2")
            self._write("memory.swap.max", value, f + "swap")
        if mem.get("reservation") is not None:
            self._write("memory.low", mem["reservation"], f + "reservation")
        if mem.get("disableOOMKiller"):
            self.warnings.append("disableOOMKiller is not available on cgroup v2: ignored")
        cpu = res.get("cpu") or {}
        c = "linux.resources.cpu."
        if cpu.get("shares"):
            self._write("cpu.weight", common.shares_to_weight(cpu["shares"]), c + "shares")
        quota, period = cpu.get("quota"), cpu.get("period")
        if (quota not in (None, 0)) or period:
            q = "max" if quota in (None, -1, 0) else str(quota)
            self._write("cpu.max", f"{q} {period or 100000}", c + "quota")
        if cpu.get("burst") is not None:
            self._write("cpu.max.burst", cpu["burst"], c + "burst")
        if cpu.get("cpus"):
            self._write("cpuset.cpus", cpu["cpus"], c + "cpus")
        if cpu.get("mems"):
            self._write("cpuset.mems", cpu["mems"], c + "mems")
        pids = res.get("pids") or {}
        if "limit" in pids:
            lim = pids["limit"]
            self._write("pids.max", "max" if lim is None or lim <= 0 else lim,
                        "linux.resources.pids.limit")
        if res.get("devices") is not None:
            self._devices(res["devices"])
        self._io(res.get("blockIO") or {})
        for i, hl in enumerate(res.get("hugepageLimits") or []):
            self._write(f"hugetlb.{hl['pageSize']}.max", hl["limit"],
                        f"linux.resources.hugepageLimits[{i}]")
        for key, value in (res.get("unified") or {}).items():
            field = f"linux.resources.unified.{key}"
            if "/" in key or key.startswith(".") or not key:
                raise common.UserError(f"{field}: not a cgroup file name")
            self._write(key, value, field)

    def _io(self, blk: dict) -> None:
        f = "linux.resources.blockIO."
        if blk.get("weight"):
            self._write("io.weight", f"default {blk['weight']}", f + "weight")
        for i, dev in enumerate(blk.get("weightDevice") or []):
            self._write("io.weight", f"{dev['major']}:{dev['minor']} {dev.get('weight', 0)}",
                        f"{f}weightDevice[{i}]")
        per_dev: dict[str, list[str]] = {}
        for key, name in common.IO_MAX_KEYS.items():
            for dev in blk.get(key) or []:
                per_dev.setdefault(f"{dev['major']}:{dev['minor']}", []).append(f"{name}={dev['rate']}")
        for dev, settings in per_dev.items():
            self._write("io.max", f"{dev} {' '.join(settings)}", f + "throttle")

    def _devices(self, rules: list[dict]) -> None:
        """Device rules (plus runc's always-allowed ones) as an eBPF program; where the
        kernel refuses BPF (no CONFIG_CGROUP_BPF, no privilege), a warning instead."""
        from pystack.runtime.cgroups import devices_bpf

        try:
            devices_bpf.attach(self.dir, list(rules) + common.RUNC_ALLOWED_DEVICES)
        except OSError as exc:
            self.warnings.append(f"cgroup v2: device rules are not enforced ({exc})")

    # -- state --------------------------------------------------------------------------
    def freeze(self, timeout: float = 5.0) -> None:
        write(self.dir / "cgroup.freeze", 1)
        if not common.wait_for(self.frozen, timeout):
            write(self.dir / "cgroup.freeze", 0)
            raise TimeoutError(f"cgroup {self.rel} did not freeze")

    def thaw(self) -> None:
        write(self.dir / "cgroup.freeze", 0)
        common.wait_for(lambda: not self.frozen())

    def frozen(self) -> bool:
        return read_keyed(self.dir / "cgroup.events").get("frozen") == 1

    def pids(self) -> list[int]:
        return common.procs_in(self.dir)

    def kill_all(self, sig: int = signal.SIGKILL) -> None:
        """SIGKILL through cgroup.kill (5.14+) when possible; other signals (or older
        kernels) go to each pid with the cgroup frozen meanwhile."""
        if sig == signal.SIGKILL and (self.dir / "cgroup.kill").exists():
            write(self.dir / "cgroup.kill", 1)
            return
        try:
            self.freeze()
            frozen = True
        except (OSError, TimeoutError):
            frozen = False
        try:
            for pid in self.pids():
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        finally:
            if frozen:
                self.thaw()

    def destroy(self, timeout: float = 5.0) -> None:
        common.remove_tree(self.dir, timeout)

    # -- observation --------------------------------------------------------------------
    def oom_kill_count(self) -> int:
        return read_keyed(self.dir / "memory.events").get("oom_kill", 0)

    def oom_eventfd(self) -> int:
        """An inotify fd that becomes readable when memory.events changes; the caller
        reads it (drain) and then checks ``oom_kill_count``."""
        from pystack.runtime.cgroups.inotify import watch_modify

        target = self.dir / "memory.events"
        if not target.exists():
            raise RuntimeError("the memory controller is not enabled for this cgroup")
        return watch_modify(target)

    def stats(self) -> dict[str, Any]:
        st = read_keyed(self.dir / "cpu.stat")
        out: dict[str, Any] = {"cpu_stats": {
            "cpu_usage": {"total_usage": st.get("usage_usec", 0) * 1000,
                          "usage_in_usermode": st.get("user_usec", 0) * 1000,
                          "usage_in_kernelmode": st.get("system_usec", 0) * 1000},
            "system_cpu_usage": common.system_cpu_usage(), "online_cpus": os.cpu_count() or 1,
            "throttling_data": {"periods": st.get("nr_periods", 0),
                                "throttled_periods": st.get("nr_throttled", 0),
                                "throttled_time": st.get("throttled_usec", 0) * 1000}}}
        if (self.dir / "memory.current").exists():
            host = common.host_memory()
            limit = read_int(self.dir / "memory.max", None)
            out["memory_stats"] = {
                "usage": read_int(self.dir / "memory.current", 0),
                "max_usage": read_int(self.dir / "memory.peak", 0),
                "limit": host if limit is None else min(limit, host or limit),
                "failcnt": read_keyed(self.dir / "memory.events").get("max", 0),
                "stats": read_keyed(self.dir / "memory.stat"),
            }
        if (self.dir / "pids.current").exists():
            out["pids_stats"] = {"current": read_int(self.dir / "pids.current", 0),
                                 "limit": read_int(self.dir / "pids.max", None)}
        else:
            out["pids_stats"] = {"current": len(self.pids()), "limit": None}
        return out

    def limits(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, fname in (("memory.limit", "memory.max"), ("memory.reservation", "memory.low"),
                           ("memory.swap", "memory.swap.max"), ("cpu.weight", "cpu.weight"),
                           ("pids.limit", "pids.max")):
            if (self.dir / fname).exists():
                out[key] = read_int(self.dir / fname, -1)
        if (self.dir / "cpu.max").exists():
            q, p = read(self.dir / "cpu.max").split()
            out["cpu.quota"] = -1 if q == "max" else int(q)
            out["cpu.period"] = int(p)
        for f in sorted(self.dir.glob("hugetlb.*.max")):
            out[f.name] = read_int(f, -1)
        for k in ("cpus", "mems"):
            if (self.dir / f"cpuset.{k}").exists():
                out[f"cpu.{k}"] = read(self.dir / f"cpuset.{k}")
        return out


def children(parent: str, mount: Path | None = None) -> set[str]:
    m = mount or unified_mount()
    if m is None:
        return set()
    try:
        return {e.name for e in os.scandir(m / parent) if e.is_dir()}
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return set()
        raise


def remove_parent(parent: str, mount: Path | None = None) -> None:
    m = mount or unified_mount()
    if m is None:
        return
    parts = parent.split("/")
    for i in range(len(parts), 0, -1):
        try:
            os.rmdir(m.joinpath(*parts[:i]))
        except FileNotFoundError:
            continue
        except OSError as exc:
            if exc.errno in (errno.EBUSY, errno.ENOTEMPTY):
                break
            raise
