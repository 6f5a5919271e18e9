"""Linux namespaces through libc: unshare, setns, and joining a namespace by path.

Python 3.11 has no ``os.unshare``/``os.setns``, so these are thin ctypes calls. The OCI
spec lists namespaces as ``{"type": "network", "path": "/run/netns/x"}``; without a path
the container gets a new one (``unshare``), with one it joins it (``setns``), which is how
``network_mode: container:x`` / ``pid: host`` / ``ipc: shareable`` are expressed.
"""
from __future__ import annotations

import ctypes
import os

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWTIME = 0x00000080

# OCI namespace type -> (clone flag, name under /proc/<pid>/ns)
TYPES: dict[str, tuple[int, str]] = {
    "pid": (CLONE_NEWPID, "pid"),
    "network": (CLONE_NEWNET, "net"),
    "mount": (CLONE_NEWNS, "mnt"),
    "ipc": (CLONE_NEWIPC, "ipc"),
    "uts": (CLONE_NEWUTS, "uts"),
    "user": (CLONE_NEWUSER, "user"),
    "cgroup": (CLONE_NEWCGROUP, "cgroup"),
    "time": (CLONE_NEWTIME, "time"),
}
# the order runc joins namespaces in: user first would change privileges; mount last so
# that the other paths are still resolved in the caller's mount namespace.
JOIN_ORDER = ("user", "ipc", "uts", "network", "pid", "cgroup", "time", "mount")

_libc = ctypes.CDLL(None, use_errno=True)
_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]


def unshare(flags: int) -> None:
    """unshare(2); raises OSError with the flags in the message."""
    if flags and _libc.unshare(flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare(0x{flags:x}): {os.strerror(err)}")


def setns(fd: int, nstype: int = 0) -> None:
    """setns(2) on an open namespace file descriptor."""
    if _libc.setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns(fd {fd}, 0x{nstype:x}): {os.strerror(err)}")


def split(namespaces: list[dict]) -> tuple[int, list[tuple[str, str]]]:
    """From an OCI ``linux.namespaces`` list: (flags to unshare, [(type, path) to join]).

    Raises ValueError for an unknown type or a namespace listed twice."""
    flags = 0
    joins: list[tuple[str, str]] = []
    seen: set[str] = set()
    for ns in namespaces or ():
        kind = ns.get("type")
        if kind not in TYPES:
            raise ValueError(f"unknown namespace type {kind!r}")
        if kind in seen:
            raise ValueError(f"namespace {kind!r} listed twice")
        seen.add(kind)
        if ns.get("path"):
            joins.append((kind, ns["path"]))
        else:
            flags |= TYPES[kind][0]
    joins.sort(key=lambda j: JOIN_ORDER.index(j[0]))
    return flags, joins


def open_joins(joins: list[tuple[str, str]]) -> list[tuple[str, int]]:
    """Open every namespace path first (while all paths still resolve), as (type, fd)."""
    out = []
    try:
        for kind, path in joins:
            out.append((kind, os.open(path, os.O_RDONLY | os.O_CLOEXEC)))
    except OSError as exc:
        for _, fd in out:
            os.close(fd)
        raise OSError(exc.errno, f"cannot open {kind} namespace {path}: {exc.strerror}") from None
    return out


def join(fds: list[tuple[str, int]], skip: tuple[str, ...] = ()) -> None:
    """setns into each opened namespace (closing the fds), except the types in ``skip``."""
    for kind, fd in fds:
        if kind in skip:
            continue
        setns(fd, TYPES[kind][0])
        os.close(fd)


def proc_ns_paths(pid: int, kinds: tuple[str, ...] = JOIN_ORDER) -> list[tuple[str, str]]:
    """The namespaces of a running process that differ from ours, for ``exec``."""
    out = []
    for kind in kinds:
        name = TYPES[kind][1]
        path = f"/proc/{pid}/ns/{name}"
        try:
            if os.stat(path).st_ino == os.stat(f"/proc/self/ns/{name}").st_ino:
                continue
        except FileNotFoundError:
            continue
        out.append((kind, path))
    return out
