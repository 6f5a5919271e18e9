"""Small helpers shared by the v1 and v2 cgroup drivers: file I/O, conversions, removal.

Kept free of imports beyond the standard library: the shim and the runtime CLI import
the cgroup code on their start-up path.
"""
from __future__ import annotations

import errno
import os
import time

from pystack.errors import UserError


class CgPath(str):
    """The paths of this package: a ``str`` with the few ``pathlib.Path`` methods the
    drivers use (``/``, ``joinpath``, ``name``, ``parent``, ``relative_to``, ``exists``,
    ``is_dir``, ``read_text``, ``glob``). The runtime CLI creates and removes cgroups on
    every run, and pathlib's imports (re, enum, functools, urllib.parse, ipaddress,
    fnmatch) cost it ~10 ms of CPU on a slow VM. Any function taking a path also takes a
    ``pathlib.Path`` or a plain string."""

    __slots__ = ()

    def __new__(cls, *parts) -> "CgPath":
        return str.__new__(cls, os.path.join(*map(os.fspath, parts)) if parts else ".")

    def __truediv__(self, other) -> "CgPath":
        if type(other) is str and other and other[0] != "/" and self and self[-1] != "/":
            return str.__new__(CgPath, f"{self}/{other}")  # (os.path.join's result)
        return CgPath(self, other)

    def __rtruediv__(self, other) -> "CgPath":
        return CgPath(other, self)

    def __fspath__(self) -> str:
        return str(self)

    def __repr__(self) -> str:
        return f"CgPath({str.__repr__(self)})"

    def joinpath(self, *parts) -> "CgPath":
        return CgPath(self, *parts)

    @property
    def name(self) -> str:
        return os.path.basename(self.rstrip("/"))

    @property
    def parent(self) -> "CgPath":
        return CgPath(os.path.dirname(self.rstrip("/")) or ("/" if self.startswith("/") else "."))

    def relative_to(self, other) -> "CgPath":
        base = os.fspath(other).rstrip("/")
        if self.rstrip("/") == base:
            return CgPath(".")
        if not self.startswith(base + "/"):
            raise ValueError(f"{str(self)!r} is not in the subpath of {os.fspath(other)!r}")
        return CgPath(self[len(base) + 1:])

    def exists(self) -> bool:
        return os.path.exists(self)

    def is_dir(self) -> bool:
        return os.path.isdir(self)

    def read_text(self) -> str:
        with open(self) as f:
            return f.read()

    def glob(self, pattern: str) -> list["CgPath"]:
        import fnmatch
        try:
            names = os.listdir(self)
        except OSError:
            return []
        return [CgPath(self, n) for n in names if fnmatch.fnmatchcase(n, pattern)]


Path = CgPath  # (the drivers were written for pathlib: the same spelling)

DEFAULT_ROOT = CgPath("/sys/fs/cgroup")


class _Mountinfo:
    """This process's /proc/self/mountinfo, parsed per key and kept until the mount table
    changes. The kernel says when: a poll of an open mountinfo file reports POLLPRI once
    after each change of the mount namespace, so an unchanged table costs one poll, not a
    read (the text is ~20 KB that the kernel formats for every read: ~0.1 ms; a create
    asks for the layout eight times)."""

    def __init__(self) -> None:
        import _thread
        self.lock = _thread.allocate_lock()  # (the engine creates containers from threads)
        self.fd = -1
        self.owner: tuple[int, int] = (0, 0)  # (pid, mount namespace inode) of the fd
        self.parsed: dict = {}
        self.generation = 0  # +1 each time the table is found changed

    def _check(self) -> None:
        owner = (os.getpid(), os.stat("/proc/self/ns/mnt").st_ino)
        if self.fd < 0 or owner != self.owner:
            # first use, a forked child (the fd, if inherited, is its parent's: left
            # alone) or another mount namespace (setns)
            self.fd = os.open("/proc/self/mountinfo", os.O_RDONLY | os.O_CLOEXEC)
            self.owner = owner
            self.parsed = {}
            self.generation += 1
        elif self._changed():
            self.parsed = {}
            self.generation += 1

    def get(self, key: str, parse):
        with self.lock:
            self._check()
            if key not in self.parsed:
                self.parsed[key] = parse(self._text())
            return self.parsed[key]

    def current(self) -> int:
        """The generation of the table: equal numbers, the same mounts."""
        with self.lock:
            self._check()
            return self.generation

    def _changed(self) -> bool:
        import select
        p = select.poll()
        p.register(self.fd, select.POLLPRI)
        return any(ev & (select.POLLPRI | select.POLLERR) for _, ev in p.poll(0))

    def _text(self) -> str:
        # a change from here on is reported by the next poll (its event is set after the
        # one this read may already include): never a stale table kept
        os.lseek(self.fd, 0, os.SEEK_SET)
        chunks = []
        while True:
            b = os.read(self.fd, 65536)
            if not b:
                break
            chunks.append(b)
        return b"".join(chunks).decode(errors="surrogateescape")


_MOUNTINFO = _Mountinfo()


def mount_generation() -> int:
    """Changes whenever the mount table may have (for caches of what depends on it)."""
    return _MOUNTINFO.current()


def from_mountinfo(key: str, parse):
    """``parse(text of /proc/self/mountinfo)``, remembered until the mount table changes:
    each container's create asks for the layout several times (v1 hierarchies, the
    unified mount, the driver's mode)."""
    return _MOUNTINFO.get(key, parse)


def default_parent() -> str:
    """The parent of all pystack cgroups: ``PYSTACK_CGROUP_PARENT`` (default ``pystack``)."""
    parent = os.environ.get("PYSTACK_CGROUP_PARENT", "pystack").strip("/")
    return parent or "pystack"


def check_name(name: str, what: str = "cgroup name") -> str:
    """Refuse names that would climb out of the parent (``..``, absolute paths)."""
    parts = name.strip("/").split("/")
    if not name.strip("/") or any(p in ("", ".", "..") for p in parts):
        raise UserError(f"invalid {what} {name!r}")
    return name.strip("/")


def write(path: Path, value: str | int, field: str | None = None) -> None:
    """Write one value to a cgroup control file; a user-fixable failure names the field."""
    data = str(value).encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        if field:
            raise UserError(f"{field}: not supported here ({path.name} is missing)") from None
        raise
    try:
        os.write(fd, data)
    except OSError as exc:
        if field and exc.errno in (errno.EINVAL, errno.EBUSY, errno.ERANGE, errno.ENOSPC,
                                   errno.EPERM):
            raise UserError(f"{field}: the kernel refused {value!s} for {path.name} "
                            f"({os.strerror(exc.errno)})") from None
        raise
    finally:
        os.close(fd)


def read(path: Path) -> str:
    """The stripped content of a control file."""
    with open(path) as f:
        return f.read().strip()


def read_int(path: Path, default: int | None = None) -> int | None:
    """An integer control file; ``max`` and missing files give ``default``."""
    try:
        text = read(path)
    except OSError:
        return default
    if text == "max":
        return default
    try:
        return int(text)
    except ValueError:
        return default


def read_keyed(path: Path) -> dict[str, int]:
    """Files of ``key value`` lines (memory.stat, cpu.stat, memory.events, oom_control)."""
    out: dict[str, int] = {}
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2:
                    try:
                        out[parts[0]] = int(parts[1])
                    except ValueError:
                        pass
    except OSError:
        pass
    return out


def host_memory() -> int:
    """MemTotal in bytes: Docker reports it as the limit of an unlimited container."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


# OCI blockIO throttle keys -> v1 file suffix (blkio.throttle.<x>) / v2 io.max key
BLKIO_THROTTLE = {"throttleReadBpsDevice": "read_bps_device",
                  "throttleWriteBpsDevice": "write_bps_device",
                  "throttleReadIOPSDevice": "read_iops_device",
                  "throttleWriteIOPSDevice": "write_iops_device"}
IO_MAX_KEYS = {"throttleReadBpsDevice": "rbps", "throttleWriteBpsDevice": "wbps",
               "throttleReadIOPSDevice": "riops", "throttleWriteIOPSDevice": "wiops"}


def system_cpu_usage() -> int:
    """Host CPU time in nanoseconds (/proc/stat "cpu" line, user..steal), the
    ``system_cpu_usage`` Docker clients divide by to get a container's CPU %."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:9]
    return sum(int(x) for x in fields) * 1_000_000_000 // os.sysconf("SC_CLK_TCK")


def shares_to_weight(shares: int) -> int:
    """cgroup v1 cpu.shares (2..262144) to v2 cpu.weight (1..10000), runc's formula."""
    if shares == 0:
        return 0
    return 1 + ((shares - 2) * 9999) // 262142


def procs_in(path: Path) -> list[int]:
    """PIDs in a cgroup directory and all its descendants."""
    pids: list[int] = []
    try:
        with open(os.path.join(path, "cgroup.procs")) as f:
            pids.extend(int(x) for x in f.read().split())
    except FileNotFoundError:
        return pids
    try:
        subdirs = [e.path for e in os.scandir(path) if e.is_dir(follow_symlinks=False)]
    except OSError:
        subdirs = []
    for d in subdirs:
        pids.extend(procs_in(Path(d)))
    return pids


def remove_tree(path: Path, timeout: float = 5.0) -> None:
    """rmdir a cgroup and its children, deepest first, retrying while the kernel still
    reports it busy (processes that were killed but not yet reaped/exited)."""
    if not os.path.isdir(path):
        return
    for entry in os.scandir(path):
        if entry.is_dir(follow_symlinks=False):
            remove_tree(Path(entry.path), timeout)
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def wait_for(predicate, timeout: float = 5.0) -> bool:
    """Poll ``predicate`` with a short back-off until it is true or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    delay = 0.0005
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.02)


# runc's specconv.AllowedDevices: appended after the spec's own rules so that a
# container's /dev/pts, ptmx, null ... always work (and mknod of any node is allowed;
# opening it is what the rules deny).
RUNC_ALLOWED_DEVICES: list[dict[str, Any]] = [
    {"allow": True, "type": "c", "major": None, "minor": None, "access": "m"},
    {"allow": True, "type": "b", "major": None, "minor": None, "access": "m"},
    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 8, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 7, "access": "rwm"},
    {"allow": True, "type": "c", "major": 5, "minor": 0, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 9, "access": "rwm"},
    {"allow": True, "type": "c", "major": 136, "minor": None, "access": "rwm"},
    {"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"},
    {"allow": True, "type": "c", "major": 10, "minor": 200, "access": "rwm"},
]
