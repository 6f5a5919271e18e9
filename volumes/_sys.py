"""Thin ctypes wrappers for the few Linux calls storage needs that ``os`` does not offer.

``mount(2)``/``umount2(2)`` (to mount tmpfs-backed volumes and read-only overlays of image
layers on the host), ``openat2(2)`` (path resolution the kernel confines: no symlinks, or
beneath a root) and the ``FICLONE`` ioctl (reflink copies). Kept apart so that the modules
using them read as plain Python and so that the ctypes import is paid only when needed.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import os
import struct
from functools import lru_cache

# mount(2) flags (linux/mount.h)
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2

# openat2(2) resolve flags (linux/openat2.h)
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10

SYS_OPENAT2 = 437  # the same number on every architecture (new syscalls are unified)
FICLONE = 0x40049409


@lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def mount(source: str, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    """mount(2); raises OSError with the errno and the target in the message."""
    libc = _libc()
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    rc = libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None, flags,
                    data.encode() if data else None)
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source} on {target}: {os.strerror(err)}")


def umount(target: str, flags: int = MNT_DETACH) -> None:
    """umount2(2), lazily by default so that a busy mount is still detached from the tree."""
    libc = _libc()
    libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
    if libc.umount2(target.encode(), flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"umount {target}: {os.strerror(err)}")


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_openat2_missing = False


def openat2(dirfd: int, path: str, flags: int, resolve: int, mode: int = 0) -> int:
    """openat2(2). Raises OSError(ENOSYS) on kernels older than 5.6 (callers fall back)."""
    global _openat2_missing
    if _openat2_missing:
        raise OSError(errno.ENOSYS, "openat2 not available")
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    fd = libc.syscall(ctypes.c_long(SYS_OPENAT2), ctypes.c_int(dirfd), ctypes.c_char_p(path.encode()),
                      ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)))
    if fd < 0:
        err = ctypes.get_errno()
        if err == errno.ENOSYS:
            _openat2_missing = True
        raise OSError(err, os.strerror(err), path)
    return int(fd)


def ficlone(src_fd: int, dst_fd: int) -> None:
    """Make ``dst_fd`` share ``src_fd``'s blocks (btrfs, XFS with reflink, bcachefs...)."""
    fcntl.ioctl(dst_fd, FICLONE, src_fd)


def statfs_type(path: str) -> int:
    """f_type of statfs(2), to name the filesystem in notes (ext4, tmpfs...)."""
    libc = _libc()
    buf = ctypes.create_string_buffer(128)
    if libc.statfs(path.encode(), buf) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return struct.unpack_from("l", buf.raw, 0)[0]


FS_NAMES = {0xEF53: "ext4", 0x01021994: "tmpfs", 0x58465342: "xfs", 0x9123683E: "btrfs",
            0x794C7630: "overlayfs", 0xCAFE4A11: "bcachefs", 0x2FC12FC1: "zfs"}


def fs_name(path: str) -> str:
    """A readable filesystem name for ``path`` (hex magic when unknown)."""
    try:
        magic = statfs_type(path) & 0xFFFFFFFF
    except OSError:
        return "unknown"
    return FS_NAMES.get(magic, hex(magic))
