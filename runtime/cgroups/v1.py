"""cgroup v1 driver: one directory per mounted hierarchy, ``<mount>/<parent>/<id>``.

Writes OCI ``linux.resources`` to the v1 control files (memory, cpu, cpuset, pids,
devices, blkio), freezes with the freezer, reads Docker-style stats, watches OOM kills
through ``memory.oom_control`` + an eventfd registered in ``cgroup.event_control``.
"""
from __future__ import annotations

import errno
import os
import _signal as signal  # (signal.py builds enums: ~5 ms per CLI run)
from pystack.runtime.cgroups.common import CgPath as Path  # (not pathlib: see CgPath)

from pystack.runtime.cgroups import common
from pystack.runtime.cgroups.base import CgroupMixin
from pystack.runtime.cgroups.common import read, read_int, read_keyed, write


def hierarchies() -> dict[str, Path]:
    """Mounted v1 hierarchies: key = their controllers joined by commas (``cpu,cpuacct``,
    ``memory``, ``name=systemd``), value = mount point; from /proc/self/mountinfo."""
    return dict(common.from_mountinfo("v1", _parse_hierarchies))


def _parse_hierarchies(text: str) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for line in text.splitlines():
        left, _, right = line.partition(" - ")
        fields = right.split()
        if len(fields) < 3 or fields[0] != "cgroup":
            continue
        ctls = [o for o in fields[2].split(",") if o not in ("rw", "ro") and
                (o.startswith("name=") or o.isidentifier())]
        ctls = [o for o in ctls if o not in ("relatime", "noatime", "nosuid", "nodev",
                                             "noexec", "clone_children", "xattr")]
        if ctls:
            out[",".join(sorted(ctls))] = Path(left.split()[4])
    return out


def with_unified(hier: dict[str, Path]) -> dict[str, Path]:
    """Add the controller-less cgroup2 of a hybrid host under the key ``""``: runc puts
    its containers there too, so ``/proc/<pid>/cgroup`` shows ``0::/<parent>/<id>``
    under either runtime."""
    from pystack.runtime.cgroups.v2 import unified_mount

    u = unified_mount()
    out = dict(hier)
    if u is not None and u not in hier.values():
        out[""] = u
    return out


def controller_map(hier: dict[str, Path]) -> dict[str, str]:
    """controller name -> hierarchy key."""
    return {c: key for key in hier for c in key.split(",")}


RUNC_ALLOWED_DEVICES = common.RUNC_ALLOWED_DEVICES


def device_rule(rule: dict) -> tuple[bool, str]:
    """(allow, "c 1:3 rwm") for one OCI device rule; -1/None major or minor is ``*``."""
    t = rule.get("type") or "a"
    acc = rule.get("access") or "rwm"
    if t == "a":
        return bool(rule.get("allow")), "a *:* rwm" if set(acc) == set("rwm") else f"a *:* {acc}"

    def num(v: Any) -> str:
        return "*" if v is None or v == -1 else str(v)

    return bool(rule.get("allow")), f"{t} {num(rule.get('major'))}:{num(rule.get('minor'))} {acc}"


class CgroupV1(CgroupMixin):
    """A container's cgroup in every mounted v1 hierarchy."""

    version = 1

    def __init__(self, parent: str, name: str, hier: dict[str, Path] | None = None) -> None:
        self.parent = parent
        self.name = name
        self.hier = hier if hier is not None else with_unified(hierarchies())
        self.ctl = controller_map(self.hier)
        self.rel = f"{parent}/{name}"
        self.dirs = {key: mount / self.rel for key, mount in self.hier.items()}
        self.warnings: list[str] = []

    # -- layout -------------------------------------------------------------------------
    def path(self, controller: str) -> Path | None:
        """Directory of this cgroup in the hierarchy holding ``controller`` (None if absent)."""
        key = self.ctl.get(controller)
        return self.dirs[key] if key else None

    def paths(self) -> dict[str, str]:
        """{controller: directory}, each controller of a shared hierarchy listed on its
        own (``cpu`` and ``cpuacct`` when mounted together), ``name=systemd`` as is."""
        return {c: str(d) for key, d in self.dirs.items() for c in key.split(",")}

    def exists(self) -> bool:
        """Whether the cgroup directories are there (any hierarchy)."""
        return any(d.is_dir() for d in self.dirs.values())

    def create_dirs(self) -> None:
        """mkdir -p in each hierarchy; cpuset dirs get their parent's cpus/mems first (a
        fresh v1 cpuset is empty and refuses tasks)."""
        for key, mount in self.hier.items():
            d = mount
            for part in self.rel.split("/"):
                d = d / part
                try:
                    os.mkdir(d, 0o755)
                except FileExistsError:
                    pass
                if "cpuset" in key.split(","):
                    for f in ("cpuset.cpus", "cpuset.mems"):
                        if read(d / f) == "":
                            write(d / f, read(d.parent / f))

    def add(self, pid: int) -> None:
        """Move ``pid`` (a whole process) into the cgroup, in every hierarchy."""
        for d in self.dirs.values():
            write(d / "cgroup.procs", pid)

    def namespace_mounts(self) -> list[dict[str, Any]]:
        """What to show under the container's /sys/fs/cgroup: one entry per hierarchy,
        ``{"name": "cpu,cpuacct", "host_path": Path, "fstype": "cgroup",
        "options": "cpu,cpuacct"}``.  Without a cgroup namespace, bind ``host_path`` at
        /sys/fs/cgroup/<name> (as runc does on v1); inside one, mount ``fstype`` with
        ``options`` and the kernel shows the container's cgroup as the root.  Where a
        hierarchy holds several controllers, runc also adds symlinks (cpu -> cpu,cpuacct)."""
        out = []
        for key, d in self.dirs.items():
            if key == "":
                out.append({"name": "unified", "host_path": d, "fstype": "cgroup2",
                            "options": ""})
                continue
            name = key.removeprefix("name=") if key.startswith("name=") else key
            out.append({"name": name, "host_path": d, "fstype": "cgroup",
                        "options": key if not key.startswith("name=") else f"none,{key}"})
        return out

    # -- limits -------------------------------------------------------------------------
    def apply(self, resources: dict | None) -> None:
        """Write an OCI ``linux.resources`` object (missing keys are left as they are)."""
        res = resources or {}
        self._memory(res.get("memory") or {})
        self._cpu(res.get("cpu") or {})
        pids = res.get("pids") or {}
        if "limit" in pids and self.path("pids"):
            lim = pids["limit"]
            write(self.path("pids") / "pids.max", "max" if lim is None or lim <= 0 else lim,
                  "linux.resources.pids.limit")
        if res.get("devices") is not None:
            self._devices(res["devices"])
        self._blkio(res.get("blockIO") or {})
        self._hugetlb(res.get("hugepageLimits") or [])
        if res.get("unified"):
            raise common.UserError("linux.resources.unified: needs cgroup v2 (this host "
                                   "runs its controllers on cgroup v1)")

    def _blkio(self, blk: dict) -> None:
        if not blk:
            return
        d = self.path("blkio")
        f = "linux.resources.blockIO."
        if d is None:
            self.warnings.append("no blkio cgroup: block I/O limits ignored")
            return
        if blk.get("weight"):
            w = d / "blkio.weight" if (d / "blkio.weight").exists() else d / "blkio.bfq.weight"
            if w.exists():
                write(w, blk["weight"], f + "weight")
            else:
                self.warnings.append("blkio weight not supported by this kernel: ignored")
        for i, dev in enumerate(blk.get("weightDevice") or []):
            w = d / "blkio.weight_device"
            if not w.exists():
                w = d / "blkio.bfq.weight_device"
            if not w.exists():
                self.warnings.append("blkio weight_device not supported by this kernel: ignored")
                break
            write(w, f"{dev['major']}:{dev['minor']} {dev.get('weight', 0)}", f"{f}weightDevice[{i}]")
        for key, fname in common.BLKIO_THROTTLE.items():
            for i, dev in enumerate(blk.get(key) or []):
                write(d / f"blkio.throttle.{fname}",
                      f"{dev['major']}:{dev['minor']} {dev['rate']}", f"{f}{key}[{i}]")

    def _hugetlb(self, limits: list[dict]) -> None:
        d = self.path("hugetlb")
        for i, hl in enumerate(limits):
            field = f"linux.resources.hugepageLimits[{i}]"
            if d is None:
                self.warnings.append("no hugetlb cgroup: hugepage limits ignored")
                return
            write(d / f"hugetlb.{hl['pageSize']}.limit_in_bytes", hl["limit"], field)

    def _memory(self, mem: dict) -> None:
        d = self.path("memory")
        if d is None or not mem:
            return
        limit, swap = mem.get("limit"), mem.get("swap")
        f = "linux.resources.memory."
        has_memsw = (d / "memory.memsw.limit_in_bytes").exists()
        if swap is not None and not has_memsw:
            self.warnings.append("swap limit not supported (no memory.memsw): ignored")
            swap = None
        if limit is not None:
            if swap is not None:
                # the kernel requires limit <= memsw at every step: order the two writes
                try:
                    write(d / "memory.limit_in_bytes", limit, f + "limit")
                    write(d / "memory.memsw.limit_in_bytes", swap, f + "swap")
                except Exception:
                    write(d / "memory.memsw.limit_in_bytes", swap, f + "swap")
                    write(d / "memory.limit_in_bytes", limit, f + "limit")
            else:
                # (Docker's "swap = 2 x memory" default is the engine's to put in the spec)
                write(d / "memory.limit_in_bytes", limit, f + "limit")
        elif swap is not None:
            write(d / "memory.memsw.limit_in_bytes", swap, f + "swap")
        if mem.get("reservation") is not None:
            write(d / "memory.soft_limit_in_bytes", mem["reservation"], f + "reservation")
        if mem.get("swappiness") is not None and 0 <= mem["swappiness"] <= 100:
            write(d / "memory.swappiness", mem["swappiness"], f + "swappiness")
        if mem.get("disableOOMKiller"):
            write(d / "memory.oom_control", 1, f + "disableOOMKiller")

    def _cpu(self, cpu: dict) -> None:
        d = self.path("cpu")
        f = "linux.resources.cpu."
        if d is not None:
            if cpu.get("shares"):
                write(d / "cpu.shares", cpu["shares"], f + "shares")
            if cpu.get("period"):
                write(d / "cpu.cfs_period_us", cpu["period"], f + "period")
            if cpu.get("quota") is not None and cpu.get("quota") != 0:
                write(d / "cpu.cfs_quota_us", cpu["quota"], f + "quota")
            if cpu.get("burst") is not None:
                write(d / "cpu.cfs_burst_us", cpu["burst"], f + "burst")
        c = self.path("cpuset")
        if c is not None:
            if cpu.get("cpus"):
                write(c / "cpuset.cpus", cpu["cpus"], f + "cpus")
            if cpu.get("mems"):
                write(c / "cpuset.mems", cpu["mems"], f + "mems")

    def _devices(self, rules: list[dict]) -> None:
        d = self.path("devices")
        if d is None:
            self.warnings.append("no devices cgroup: device rules not enforced")
            return
        for rule in list(rules) + RUNC_ALLOWED_DEVICES:
            allow, text = device_rule(rule)
            write(d / ("devices.allow" if allow else "devices.deny"), text,
                  "linux.resources.devices")

    # -- state --------------------------------------------------------------------------
    def freeze(self, timeout: float = 5.0) -> None:
        """Freeze every task (``docker pause``); waits until the kernel says FROZEN."""
        d = self._freezer()

        def frozen() -> bool:
            write(d / "freezer.state", "FROZEN")
            return read(d / "freezer.state") == "FROZEN"

        if not common.wait_for(frozen, timeout):
            write(d / "freezer.state", "THAWED")
            raise TimeoutError(f"cgroup {self.rel} did not freeze")

    def thaw(self) -> None:
        """Let the tasks run again (``docker unpause``)."""
        d = self._freezer()
        write(d / "freezer.state", "THAWED")
        common.wait_for(lambda: read(d / "freezer.state") == "THAWED")

    def frozen(self) -> bool:
        """Whether the freezer state is FROZEN."""
        d = self.path("freezer")
        return bool(d) and read(d / "freezer.state") == "FROZEN"

    def _freezer(self) -> Path:
        d = self.path("freezer")
        if d is None:
            raise RuntimeError("no freezer cgroup hierarchy is mounted")
        return d

    def pids(self) -> list[int]:
        """PIDs in the cgroup (from the pids hierarchy, or any other)."""
        for ctl in ("pids", "freezer", "memory", "cpu"):
            d = self.path(ctl)
            if d is not None:
                return common.procs_in(d)
        return common.procs_in(next(iter(self.dirs.values())))

    def kill_all(self, sig: int = signal.SIGKILL) -> None:
        """Signal every process; frozen meanwhile so that none can fork past the kill."""
        can_freeze = self.path("freezer") is not None and self.exists()
        if can_freeze:
            try:
                self.freeze()
            except (OSError, TimeoutError):
                can_freeze = False
        try:
            for pid in self.pids():
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        finally:
            if can_freeze:
                self.thaw()

    def destroy(self, timeout: float = 5.0) -> None:
        """Remove the directories in all hierarchies (retrying while busy)."""
        for d in self.dirs.values():
            common.remove_tree(d, timeout)

    # -- observation --------------------------------------------------------------------
    def oom_kill_count(self) -> int:
        """How many processes the kernel OOM-killed in this cgroup (memory.oom_control)."""
        d = self.path("memory")
        return read_keyed(d / "memory.oom_control").get("oom_kill", 0) if d else 0

    def oom_eventfd(self) -> int:
        """An eventfd that becomes readable on each OOM in the cgroup (and when the cgroup
        is removed), registered through ``cgroup.event_control``; the caller closes it."""
        d = self.path("memory")
        if d is None:
            raise RuntimeError("no memory cgroup hierarchy is mounted")
        efd = os.eventfd(0, os.EFD_CLOEXEC)
        try:
            ofd = os.open(d / "memory.oom_control", os.O_RDONLY | os.O_CLOEXEC)
            try:
                write(d / "cgroup.event_control", f"{efd} {ofd}")
            finally:
                os.close(ofd)
        except BaseException:
            os.close(efd)
            raise
        return efd

    def stats(self) -> dict[str, Any]:
        """Docker's stats shape: cpu_stats, memory_stats, pids_stats."""
        out: dict[str, Any] = {}
        acct = self.path("cpuacct")
        cpu = self.path("cpu")
        usage: dict[str, Any] = {}
        if acct is not None:
            usage["total_usage"] = read_int(acct / "cpuacct.usage", 0)
            usage["usage_in_usermode"] = read_int(acct / "cpuacct.usage_user", 0)
            usage["usage_in_kernelmode"] = read_int(acct / "cpuacct.usage_sys", 0)
            try:
                usage["percpu_usage"] = [int(x) for x in read(acct / "cpuacct.usage_percpu").split()]
            except OSError:
                pass
        st = read_keyed(cpu / "cpu.stat") if cpu else {}
        out["cpu_stats"] = {"cpu_usage": usage, "system_cpu_usage": common.system_cpu_usage(),
                            "online_cpus": os.cpu_count() or 1, "throttling_data": {
            "periods": st.get("nr_periods", 0), "throttled_periods": st.get("nr_throttled", 0),
            "throttled_time": st.get("throttled_time", 0)}}
        mem = self.path("memory")
        if mem is not None:
            limit = read_int(mem / "memory.limit_in_bytes", 0) or 0
            host = common.host_memory()
            out["memory_stats"] = {
                "usage": read_int(mem / "memory.usage_in_bytes", 0),
                "max_usage": read_int(mem / "memory.max_usage_in_bytes", 0),
                "limit": min(limit, host) if host else limit,
                "failcnt": read_int(mem / "memory.failcnt", 0),
                "stats": read_keyed(mem / "memory.stat"),
            }
        p = self.path("pids")
        if p is not None:
            out["pids_stats"] = {"current": read_int(p / "pids.current", 0),
                                 "limit": read_int(p / "pids.max", None)}
        return out

    def limits(self) -> dict[str, Any]:
        """The limits as the kernel holds them (for comparisons with runc); unlimited
        byte counts (the kernel's page-rounded LLONG_MAX) read as -1."""
        out: dict[str, Any] = {}
        if (m := self.path("memory")) is not None:
            out["memory.limit"] = read_int(m / "memory.limit_in_bytes")
            out["memory.reservation"] = read_int(m / "memory.soft_limit_in_bytes")
            out["memory.swap"] = read_int(m / "memory.memsw.limit_in_bytes")
        if (b := self.path("blkio")) is not None:
            for key, fname in common.BLKIO_THROTTLE.items():
                try:
                    out[f"blkio.{key}"] = read(b / f"blkio.throttle.{fname}")
                except OSError:
                    pass
        if (c := self.path("cpu")) is not None:
            out["cpu.shares"] = read_int(c / "cpu.shares")
            out["cpu.quota"] = read_int(c / "cpu.cfs_quota_us")
            out["cpu.period"] = read_int(c / "cpu.cfs_period_us")
        if (s := self.path("cpuset")) is not None:
            out["cpu.cpus"] = read(s / "cpuset.cpus")
            out["cpu.mems"] = read(s / "cpuset.mems")
        if (p := self.path("pids")) is not None:
            out["pids.limit"] = read_int(p / "pids.max", -1)
        return {k: (-1 if isinstance(v, int) and v >= 1 << 62 else v) for k, v in out.items()}


def children(parent: str, hier: dict[str, Path] | None = None) -> set[str]:
    """Names of the cgroups under ``parent`` in any hierarchy (for recovery and cleanup)."""
    names: set[str] = set()
    for mount in (hier if hier is not None else with_unified(hierarchies())).values():
        try:
            names.update(e.name for e in os.scandir(mount / parent) if e.is_dir())
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.ENOTDIR):
                raise
    return names


def remove_parent(parent: str, hier: dict[str, Path] | None = None) -> None:
    """rmdir the (empty) parent directories, deepest component first."""
    for mount in (hier if hier is not None else with_unified(hierarchies())).values():
        parts = parent.split("/")
        for i in range(len(parts), 0, -1):
            try:
                os.rmdir(mount.joinpath(*parts[:i]))
            except FileNotFoundError:
                continue
            except OSError as exc:
                if exc.errno in (errno.EBUSY, errno.ENOTEMPTY):
                    break
                raise
