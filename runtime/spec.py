"""The OCI runtime config (config.json): Docker's defaults, and validation.

API:

    default_spec(args=["sh"], terminal=False, rootfs="rootfs", hostname=None,
                 *, seccomp=True, no_new_privileges=False) -> dict
        what `runc spec` writes, with Docker's defaults instead of runc's example ones
        (shared/reference/runtime-security.md §1): Docker's 14 capabilities, masked and
        read-only paths, /dev device cgroup rules, Docker's mounts, namespaces
        pid/network/ipc/uts/mount (+cgroup where the kernel has it), Docker's seccomp
        profile resolved for those capabilities, no rlimits (inherited), oomScoreAdj 0, and
        the two sysctls Docker sets for a private network namespace.
    make_privileged(spec) -> spec      Docker's `privileged: true` (all caps, no masks,
                                       rw /sys and cgroup, all devices, no seccomp)
    validate_spec(spec) -> None
        UserError naming the field (``process.capabilities.bounding[2]: ...``) for what
        the runtime cannot do or would do unsafely: unknown capabilities, non-namespaced
        sysctls, bad namespaces, relative mount destinations, bad rlimits, bad seccomp.
    OCI_VERSION, DEFAULT_PATH_ENV

Runtimes (pystack-runtime and runc) run the same dict, so nothing here is pystack-only.
"""
from __future__ import annotations

import os

from pystack.errors import UserError

OCI_VERSION = "1.0.2-dev"
DEFAULT_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# moby daemon/pkg/oci/defaults.go
MASKED_PATHS = ["/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore",
                "/proc/keys", "/proc/latency_stats", "/proc/sched_debug", "/proc/scsi",
                "/proc/timer_list", "/proc/timer_stats", "/sys/devices/virtual/powercap",
                "/sys/firmware"]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]

DEFAULT_MOUNTS: list[dict[str, Any]] = [
    {"destination": "/proc", "type": "proc", "source": "proc",
     "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
     "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
     "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs",
     "options": ["nosuid", "noexec", "nodev", "ro"]},
    {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
     "options": ["ro", "nosuid", "noexec", "nodev"]},
    {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
     "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
     "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
]

# Docker's device cgroup rules, in order (the spec says order matters)
DEFAULT_DEVICE_RULES: list[dict[str, Any]] = [
    {"allow": False, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},   # zero
    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},   # null
    {"allow": True, "type": "c", "major": 1, "minor": 9, "access": "rwm"},   # urandom
    {"allow": True, "type": "c", "major": 1, "minor": 8, "access": "rwm"},   # random
    {"allow": True, "type": "c", "major": 5, "minor": 0, "access": "rwm"},   # tty
    {"allow": True, "type": "c", "major": 5, "minor": 1, "access": "rwm"},   # console
    {"allow": False, "type": "c", "major": 10, "minor": 229, "access": "rwm"},  # fuse
]

NAMESPACE_TYPES = ("pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time")
_NS_PROC = {"pid": "pid", "network": "net", "mount": "mnt", "ipc": "ipc", "uts": "uts",
            "user": "user", "cgroup": "cgroup", "time": "time"}

RLIMITS = ("RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_DATA", "RLIMIT_STACK", "RLIMIT_CORE",
           "RLIMIT_RSS", "RLIMIT_NPROC", "RLIMIT_NOFILE", "RLIMIT_MEMLOCK", "RLIMIT_AS",
           "RLIMIT_LOCKS", "RLIMIT_SIGPENDING", "RLIMIT_MSGQUEUE", "RLIMIT_NICE",
           "RLIMIT_RTPRIO", "RLIMIT_RTTIME")


def kernel_has_namespace(ns_type: str) -> bool:
    """Whether this kernel offers the namespace (``/proc/self/ns/<name>`` exists)."""
    return os.path.exists(f"/proc/self/ns/{_NS_PROC[ns_type]}")


def default_masked_paths() -> list[str]:
    """Docker's list plus each CPU's thermal_throttle directory on this host."""
    import glob  # (lazily: the CLI's start path only validates specs)
    extra = sorted(glob.glob("/sys/devices/system/cpu/cpu[0-9]*/thermal_throttle"))
    return MASKED_PATHS + extra


def default_spec(args: list[str] | None = None, terminal: bool = False,
                 rootfs: str = "rootfs", hostname: str | None = None, *,
                 seccomp: bool = True, no_new_privileges: bool = False) -> dict:
    """A fresh config.json dict with Docker's defaults (see the module docstring)."""
    import copy  # (lazily: the CLI's start path only validates specs)

    from pystack.runtime.caps import DOCKER_DEFAULT

    caps = list(DOCKER_DEFAULT)
    env = [DEFAULT_PATH_ENV]
    if terminal:
        env.append("TERM=xterm")
    namespaces = [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")]
    if kernel_has_namespace("cgroup"):
        namespaces.append({"type": "cgroup"})
    spec: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": terminal,
            "user": {"uid": 0, "gid": 0},
            "args": list(args) if args is not None else ["sh"],
            "env": env,
            "cwd": "/",
            "capabilities": {"bounding": caps[:], "effective": caps[:],
                             "permitted": caps[:]},
            # Docker sets no rlimits: the container inherits the runtime's (raising a hard
            # limit from inside the container would fail without CAP_SYS_RESOURCE)
            "rlimits": [],
            "noNewPrivileges": no_new_privileges,
            "oomScoreAdj": 0,
        },
        "root": {"path": rootfs, "readonly": False},
        "mounts": copy.deepcopy(DEFAULT_MOUNTS),
        "linux": {
            "resources": {"devices": copy.deepcopy(DEFAULT_DEVICE_RULES)},
            "namespaces": namespaces,
            "maskedPaths": default_masked_paths(),
            "readonlyPaths": READONLY_PATHS[:],
            "sysctl": {"net.ipv4.ip_unprivileged_port_start": "0",
                       "net.ipv4.ping_group_range": "0 2147483647"},
        },
    }
    if hostname is not None:
        spec["hostname"] = hostname
    if seccomp:
        from pystack.runtime.seccomp import default_oci

        spec["linux"]["seccomp"] = default_oci(caps)
    return spec


def make_privileged(spec: dict) -> dict:
    """What Docker's ``privileged: true`` changes, applied to ``spec`` in place: every
    capability in every set but ambient/inheritable, no masked or read-only paths, /sys
    and /sys/fs/cgroup read-write, all devices allowed, no seccomp filter.  (Docker also
    bind-mounts the host's /dev nodes; pystack does not, so a privileged container sees
    only the default /dev.)  Namespaces stay private."""
    from pystack.runtime.caps import all_caps

    every = all_caps()
    proc = spec.setdefault("process", {})
    proc["capabilities"] = {"bounding": every[:], "effective": every[:],
                            "permitted": every[:]}
    linux = spec.setdefault("linux", {})
    linux["maskedPaths"] = []
    linux["readonlyPaths"] = []
    linux.pop("seccomp", None)
    linux.setdefault("resources", {})["devices"] = [{"allow": True, "access": "rwm"}]
    for m in spec.get("mounts") or []:
        if m.get("destination") in ("/sys", "/sys/fs/cgroup"):
            m["options"] = [o for o in m.get("options", []) if o != "ro"] + ["rw"]
    return spec


# ---------------------------------------------------------------------------------------
# validation

def _fail(path: str, message: str) -> None:
    raise UserError(f"{path}: {message}")


def _is_uint(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def validate_spec(spec: dict) -> None:
    """Raise UserError with the field path for anything the runtime cannot honour."""
    if not isinstance(spec, dict):
        _fail("config.json", "must be a JSON object")
    ver = spec.get("ociVersion")
    if not isinstance(ver, str) or not ver.startswith("1."):
        _fail("ociVersion", f"unsupported OCI version {ver!r} (1.x expected)")
    root = spec.get("root")
    if not isinstance(root, dict) or not isinstance(root.get("path"), str) or not root["path"]:
        _fail("root.path", "required")
    if "hostname" in spec and not isinstance(spec["hostname"], str):
        _fail("hostname", "must be a string")
    linux = spec.get("linux") or {}
    namespaces = _validate_namespaces(linux.get("namespaces") or [])
    if spec.get("hostname") and "uts" not in namespaces:
        _fail("hostname", "setting a hostname needs a private uts namespace")
    if "process" in spec:
        _validate_process(spec["process"])
    for i, m in enumerate(spec.get("mounts") or []):
        dest = m.get("destination") if isinstance(m, dict) else None
        if not isinstance(dest, str) or not dest.startswith("/"):
            _fail(f"mounts[{i}].destination", f"must be an absolute path, got {dest!r}")
        if ".." in dest.split("/"):
            _fail(f"mounts[{i}].destination", "must not contain '..'")
        if not isinstance(m.get("options", []), list):
            _fail(f"mounts[{i}].options", "must be a list of strings")
    from pystack.runtime import sysctl

    sysctl.validate(linux.get("sysctl"), linux.get("namespaces") or [])
    _validate_resources(linux.get("resources") or {})
    for key in ("maskedPaths", "readonlyPaths"):
        for i, p in enumerate(linux.get(key) or []):
            if not isinstance(p, str) or not p.startswith("/"):
                _fail(f"linux.{key}[{i}]", "must be an absolute path")
    if linux.get("seccomp") is not None:
        from pystack.runtime import seccomp

        seccomp.validate(linux["seccomp"])
    if linux.get("uidMappings") or linux.get("gidMappings") or "user" in namespaces:
        _fail("linux.namespaces", "user namespaces are not supported by pystack-runtime yet")


def _validate_namespaces(entries: list) -> dict[str, str | None]:
    seen: dict[str, str | None] = {}
    for i, ns in enumerate(entries):
        t = ns.get("type") if isinstance(ns, dict) else None
        if t not in NAMESPACE_TYPES:
            _fail(f"linux.namespaces[{i}].type", f"unknown namespace type {t!r}")
        if t in seen:
            _fail(f"linux.namespaces[{i}].type", f"duplicate namespace {t!r}")
        path = ns.get("path")
        if path is not None and (not isinstance(path, str) or not path.startswith("/")):
            _fail(f"linux.namespaces[{i}].path", "must be an absolute path")
        if path is None and not kernel_has_namespace(t):
            _fail(f"linux.namespaces[{i}].type", f"this kernel has no {t} namespace")
        seen[t] = path
    return seen


def _validate_process(proc: Any) -> None:
    from pystack.runtime.caps import SETS, is_known

    if not isinstance(proc, dict):
        _fail("process", "must be an object")
    args = proc.get("args")
    if not isinstance(args, list) or not args or not all(isinstance(a, str) for a in args):
        _fail("process.args", "a non-empty list of strings is required")
    cwd = proc.get("cwd", "/")
    if not isinstance(cwd, str) or not cwd.startswith("/"):
        _fail("process.cwd", f"must be an absolute path, got {cwd!r}")
    for i, e in enumerate(proc.get("env") or []):
        if not isinstance(e, str) or "=" not in e:
            _fail(f"process.env[{i}]", f"must be KEY=value, got {e!r}")
    user = proc.get("user") or {}
    for k in ("uid", "gid"):
        if k in user and not _is_uint(user[k]):
            _fail(f"process.user.{k}", "must be a non-negative integer")
    for i, g in enumerate(user.get("additionalGids") or []):
        if not _is_uint(g):
            _fail(f"process.user.additionalGids[{i}]", "must be a non-negative integer")
    capabilities = proc.get("capabilities") or {}
    for s in capabilities:
        if s not in SETS:
            _fail(f"process.capabilities.{s}", "unknown capability set")
        for i, name in enumerate(capabilities[s] or []):
            if not isinstance(name, str) or not is_known(name):
                _fail(f"process.capabilities.{s}[{i}]", f"unknown capability {name!r}")
    seen: set[str] = set()
    for i, rl in enumerate(proc.get("rlimits") or []):
        t = rl.get("type")
        if t not in RLIMITS:
            _fail(f"process.rlimits[{i}].type", f"unknown rlimit {t!r}")
        if t in seen:
            _fail(f"process.rlimits[{i}].type", f"duplicate rlimit {t}")
        seen.add(t)
        soft, hard = rl.get("soft"), rl.get("hard")
        if not _is_uint(soft) or not _is_uint(hard):
            _fail(f"process.rlimits[{i}]", "soft and hard must be non-negative integers")
        if soft > hard:
            _fail(f"process.rlimits[{i}]", f"soft limit {soft} exceeds hard limit {hard}")
    adj = proc.get("oomScoreAdj")
    if adj is not None and (not isinstance(adj, int) or not -1000 <= adj <= 1000):
        _fail("process.oomScoreAdj", "must be an integer in -1000..1000")
    cs = proc.get("consoleSize")
    if cs is not None and not (_is_uint(cs.get("height")) and _is_uint(cs.get("width"))):
        _fail("process.consoleSize", "height and width must be non-negative integers")


def _validate_resources(res: dict) -> None:
    mem = res.get("memory") or {}
    for k in ("limit", "reservation", "swap"):
        v = mem.get(k)
        if v is not None and (not isinstance(v, int) or (v < 0 and v != -1)):
            _fail(f"linux.resources.memory.{k}", "must be a byte count or -1 (unlimited)")
    limit, swap = mem.get("limit"), mem.get("swap")
    if limit is not None and 0 < limit < 6 * 1024 * 1024:
        _fail("linux.resources.memory.limit", "minimum memory limit allowed is 6MB")
    if swap is not None and swap > 0 and limit is not None and 0 < limit and swap < limit:
        _fail("linux.resources.memory.swap",
              "memory+swap limit must be at least the memory limit")
    if swap is not None and swap > 0 and (limit is None or limit <= 0):
        _fail("linux.resources.memory.swap", "a swap limit needs a memory limit")
    cpu = res.get("cpu") or {}
    shares = cpu.get("shares")
    if shares is not None and (not _is_uint(shares) or (shares and shares < 2)):
        _fail("linux.resources.cpu.shares", "must be at least 2")
    period = cpu.get("period")
    if period is not None and (not _is_uint(period) or not 1000 <= period <= 1_000_000):
        _fail("linux.resources.cpu.period", "must be between 1000 and 1000000 microseconds")
    quota = cpu.get("quota")
    if quota is not None and quota != -1 and (not isinstance(quota, int) or quota < 1000):
        _fail("linux.resources.cpu.quota", "must be at least 1000 microseconds (or -1)")
    for k in ("cpus", "mems"):
        v = cpu.get(k)
        if v is not None and not _valid_cpulist(v):
            _fail(f"linux.resources.cpu.{k}", f"invalid list {v!r} (e.g. '0-2,4')")
    pids = res.get("pids") or {}
    if "limit" in pids and not isinstance(pids["limit"], int):
        _fail("linux.resources.pids.limit", "must be an integer (<= 0 for unlimited)")
    for i, d in enumerate(res.get("devices") or []):
        if not isinstance(d.get("allow"), bool):
            _fail(f"linux.resources.devices[{i}].allow", "must be true or false")
        if d.get("type", "a") not in ("a", "b", "c"):
            _fail(f"linux.resources.devices[{i}].type", "must be a, b or c")
        acc = d.get("access", "rwm")
        if not isinstance(acc, str) or not acc or set(acc) - set("rwm"):
            _fail(f"linux.resources.devices[{i}].access", "must be made of r, w, m")
        for k in ("major", "minor"):
            if d.get(k) is not None and not (isinstance(d[k], int) and d[k] >= -1):
                _fail(f"linux.resources.devices[{i}].{k}", "must be an integer or -1 (any)")


def _valid_cpulist(text: Any) -> bool:
    if not isinstance(text, str):
        return False
    if text == "":
        return True
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        if not lo.isdigit() or (hi and (not hi.isdigit() or int(hi) < int(lo))):
            return False
    return True
