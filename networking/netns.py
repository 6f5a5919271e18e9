"""Network namespaces as bind-mounted files, and netlink sockets inside them.

Why not ``pyroute2.netns.create`` / ``NetNS``: they fork helper processes, and the engine
must never fork while it runs threads (DESIGN.md). Instead the namespace is made by
``unshare --net=<file>`` (fork+exec, safe with threads), and a netlink socket is opened
inside it from a short-lived thread that ``setns``-es itself: a socket stays bound to the
namespace it was created in, so the rest of the program can use it from any thread.
"""
from __future__ import annotations

import ctypes
import os
import socket
import subprocess
import threading
from pathlib import Path
from typing import Any

CLONE_NEWNET = 0x40000000
MNT_DETACH = 2
_libc = ctypes.CDLL(None, use_errno=True)


def create(path: Path) -> None:
    """Make a new network namespace pinned at ``path`` with ``lo`` up."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(exist_ok=False)
    try:
        # `ip link set lo up` runs inside the new namespace before it is pinned.
        subprocess.run(["unshare", f"--net={path}", "ip", "link", "set", "lo", "up"],
                       check=True, capture_output=True, text=True)
    except subprocess.CalledProcessError as exc:
        path.unlink(missing_ok=True)
        raise RuntimeError(f"cannot create network namespace {path}: {exc.stderr.strip()}") from exc


def is_mounted(path: Path) -> bool:
    """True when ``path`` is a namespace bind mount (not just a leftover file)."""
    target = str(path)
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == target for line in f if len(line.split()) > 1)


def remove(path: Path) -> None:
    """Unpin a namespace (its interfaces die with it once no process holds it)."""
    if is_mounted(path):
        if _libc.umount2(str(path).encode(), MNT_DETACH) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"umount {path}: {os.strerror(err)}")
    path.unlink(missing_ok=True)


def netlink_socket(path: Path | None, proto: int = 0) -> socket.socket:
    """A NETLINK socket (``proto`` 0 = route) created inside the namespace at ``path``."""
    if path is None:
        return socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, proto)
    result: dict[str, Any] = {}

    def inside() -> None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns {path}: {os.strerror(err)}")
            finally:
                os.close(fd)
            result["sock"] = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, proto)
        except BaseException as exc:  # handed to the caller's thread
            result["error"] = exc

    # The thread ends in the other namespace and is discarded: nothing else runs there.
    t = threading.Thread(target=inside, name="pystack-netns")
    t.start()
    t.join()
    if "error" in result:
        raise result["error"]
    return result["sock"]


def iproute(path: Path | None = None):
    """A pyroute2 ``IPRoute`` working in the namespace at ``path`` (host's when None)."""
    from pyroute2 import IPRoute

    if path is None:
        return IPRoute()
    return IPRoute(fileno=netlink_socket(path).detach())
