"""Which sysctls a container may set (namespaced ones only) and writing them.

API:

    namespace_of(key) -> "ipc" | "net" | "uts" | None   which namespace makes it per-container
    validate(sysctls, namespaces, where="linux.sysctl")  UserError for keys that would change
                                                         the host (not namespaced, or the
                                                         container shares that namespace)
    proc_path(key) -> str                                "net.ipv4.ip_forward" -> "net/ipv4/ip_forward"
    apply(sysctls, proc="/proc")                         write them (in the container's
                                                         namespaces, before pivot_root or with
                                                         the container's own /proc)

The allow-list is runc's and Docker's (runc libcontainer/configs/validate sysctl, moby
opts.ValidateSysctl): IPC ``kernel.msgmax, msgmnb, msgmni, sem, shmall, shmmax, shmmni,
shm_rmid_forced`` and ``fs.mqueue.*``; ``net.*``; UTS ``kernel.domainname``.
``kernel.hostname`` is refused: the spec's ``hostname`` field sets it.
"""
from __future__ import annotations

import os

from pystack.errors import UserError

IPC_KEYS = frozenset({"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
                      "kernel.shmall", "kernel.shmmax", "kernel.shmmni",
                      "kernel.shm_rmid_forced"})
IPC_PREFIXES = ("fs.mqueue.",)
UTS_KEYS = frozenset({"kernel.domainname"})

# OCI namespace type for each sysctl namespace class
_OCI_NS = {"ipc": "ipc", "net": "network", "uts": "uts"}


def _norm(key: str) -> str:
    """sysctl(8) accepts "/" as separator; compare in the dotted form."""
    return key.replace("/", ".") if "/" in key else key


def namespace_of(key: str) -> str | None:
    """The namespace that isolates ``key`` ("ipc", "net", "uts"), or None for a host-wide one."""
    k = _norm(key)
    if k in IPC_KEYS or k.startswith(IPC_PREFIXES):
        return "ipc"
    if k.startswith("net."):
        return "net"
    if k in UTS_KEYS:
        return "uts"
    return None


def _private(namespaces: Iterable[dict] | Mapping[str, str | None], oci_type: str) -> bool:
    """Whether the container has its own namespace of this type.

    Joining another container's namespace by path counts as private (Docker allows it
    for ``network_mode: container:x``); joining the runtime's own namespace (the host's:
    the runtime runs there) does not."""
    if isinstance(namespaces, (list, tuple)):
        mapping = False
    elif isinstance(namespaces, dict):
        mapping = True
    else:  # (collections.abc only here: it is not on the CLI's start path)
        from collections.abc import Mapping
        mapping = isinstance(namespaces, Mapping)
    if mapping:
        entries = [{"type": t, "path": p} for t, p in namespaces.items()]
    else:
        entries = list(namespaces)
    for ns in entries:
        if ns.get("type") == oci_type:
            path = ns.get("path")
            if not path:
                return True
            try:
                host = os.stat(f"/proc/self/ns/{'net' if oci_type == 'network' else oci_type}")
                return os.stat(path).st_ino != host.st_ino
            except OSError:
                return True
    return False


def validate(sysctls: Mapping[str, str] | None, namespaces: Iterable[dict] | Mapping,
             where: str = "linux.sysctl") -> None:
    """Refuse, naming the key, any sysctl that is not namespaced or whose namespace the
    container shares with the host: setting it would change the host."""
    for key, value in (sysctls or {}).items():
        path = f"{where}.{key}"
        if not isinstance(value, str):
            raise UserError(f"{path}: value must be a string")
        k = _norm(key)
        if ".." in key or k.startswith(".") or k.endswith(".") or not k:
            raise UserError(f"{path}: invalid sysctl name")
        if k == "kernel.hostname":
            raise UserError(f"{path}: not allowed, set the container's hostname instead")
        ns = namespace_of(k)
        if ns is None:
            raise UserError(f"{path}: not a namespaced sysctl, it would change the host "
                            "(allowed: net.*, kernel.msg*/sem/shm*, fs.mqueue.*, kernel.domainname)")
        if not _private(namespaces, _OCI_NS[ns]):
            raise UserError(f"{path}: the container shares the host's {ns} namespace, "
                            "so this sysctl would change the host")


def proc_path(key: str) -> str:
    """Relative path under /proc/sys for a key, dots to slashes unless given with slashes."""
    rel = key if "/" in key else key.replace(".", "/")
    if rel.startswith("/") or ".." in rel.split("/"):
        raise UserError(f"linux.sysctl.{key}: invalid sysctl name")
    return rel


def apply(sysctls: Mapping[str, str] | None, proc: str = "/proc") -> None:
    """Write each sysctl under ``<proc>/sys``; run inside the container's namespaces.

    /proc/sys/net reflects the network namespace of the *writer*, /proc/sys/kernel's IPC
    keys the IPC namespace of the writer, so the host's /proc is fine before pivot_root."""
    for key, value in (sysctls or {}).items():
        fd = os.open(f"{proc}/sys/{proc_path(key)}", os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)
