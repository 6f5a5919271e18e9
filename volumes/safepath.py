"""Open mount sources so that what is mounted is exactly what was checked.

A path string checked and then handed to mount(2) can be swapped in between (a symlink
put under a bind source, a volume subpath turned into a link to ``/``): runc's
CVE-2021-30465 class. Here every source is resolved once into an ``O_PATH`` file
descriptor, with the kernel confining the walk (``openat2`` with ``RESOLVE_NO_SYMLINKS``,
``RESOLVE_BENEATH`` or ``RESOLVE_IN_ROOT``); that fd is then bind-mounted (through its
magic link ``/proc/self/fd/<n>``, which names that very inode whatever happens to the path
later) onto a staging point the runtime mounts from (pins.py).
Where ``openat2`` is missing (kernels before 5.6), the walk is done one component at a
time with ``O_NOFOLLOW`` and symlinks are refused.
"""
from __future__ import annotations

import errno
import os
import stat

from pystack.errors import UserError
from pystack.volumes import _sys


class UnsafePath(UserError):
    """A path would reach outside what it names, or changed under us while being opened."""


def proc_fd_path(fd: int) -> str:
    """The magic link naming ``fd``'s inode from other processes of the same mount namespace
    (not from a container's new one: the kernel refuses such a bind, hence pins.py)."""
    return f"/proc/{os.getpid()}/fd/{fd}"


def fd_real_path(fd: int) -> str:
    """The path the kernel currently gives the inode behind ``fd`` (for messages and records)."""
    return os.readlink(f"/proc/self/fd/{fd}")


def _walk_nofollow(dirfd: int, rel: str, what: str) -> int:
    """Fallback for kernels without openat2: component-wise O_NOFOLLOW walk, no symlinks, no '..'."""
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise UnsafePath(f"{what}: '..' is not allowed")
    fd = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dirfd)
    try:
        for part in parts:
            nfd = os.open(part, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = nfd
            if stat.S_ISLNK(os.fstat(fd).st_mode):
                raise UnsafePath(f"{what}: a symbolic link is in the way ({part})")
        return fd
    except BaseException:
        os.close(fd)
        raise


def open_beneath(root_fd: int, rel: str, *, what: str, allow_symlinks: bool = True) -> int:
    """O_PATH fd of ``rel`` inside the directory ``root_fd``; never anything outside it.

    Symlinks that stay beneath the root are followed unless ``allow_symlinks`` is false;
    one that leads out, or a ``..`` that climbs out, is refused with :class:`UnsafePath`.
    """
    rel = rel.lstrip("/") or "."
    resolve = _sys.RESOLVE_BENEATH | _sys.RESOLVE_NO_MAGICLINKS
    if not allow_symlinks:
        resolve |= _sys.RESOLVE_NO_SYMLINKS
    try:
        return _sys.openat2(root_fd, rel, os.O_PATH, resolve)
    except OSError as exc:
        if exc.errno == errno.ENOSYS:
            return _walk_nofollow(root_fd, rel, what)
        if exc.errno == errno.EXDEV:
            raise UnsafePath(f"{what}: path escapes its root") from None
        if exc.errno == errno.ELOOP:
            raise UnsafePath(f"{what}: a symbolic link is in the way") from None
        if exc.errno == errno.ENOENT:
            raise UserError(f"{what}: no such file or directory") from None
        raise UserError(f"{what}: {exc.strerror}") from None


def open_in_root(root_fd: int, rel: str, *, what: str) -> int:
    """O_PATH fd of ``rel`` resolved as if ``root_fd`` were ``/`` (image paths: absolute links stay inside)."""
    rel = rel.lstrip("/") or "."
    try:
        return _sys.openat2(root_fd, rel, os.O_PATH, _sys.RESOLVE_IN_ROOT | _sys.RESOLVE_NO_MAGICLINKS)
    except OSError as exc:
        if exc.errno == errno.ENOSYS:
            return _walk_nofollow(root_fd, rel, what)
        raise


def open_host_path(path: str, *, what: str) -> int:
    """Pin a host path (a bind source): resolve it once, then open exactly that, no symlinks.

    Symlinks in a bind source are followed as Docker does, but only at this one moment:
    the resolved path is opened with ``RESOLVE_NO_SYMLINKS``, so a link swapped in between
    the resolution and the open fails instead of redirecting the mount.
    """
    real = os.path.realpath(path)
    try:
        fd = _sys.openat2(-100, real, os.O_PATH, _sys.RESOLVE_NO_SYMLINKS)  # AT_FDCWD
    except OSError as exc:
        if exc.errno == errno.ENOSYS:
            root = os.open("/", os.O_PATH | os.O_CLOEXEC)
            try:
                return _walk_nofollow(root, real, what)
            finally:
                os.close(root)
        if exc.errno == errno.ELOOP:
            raise UnsafePath(f"{what}: {path} changed into a symbolic link while being opened") from None
        if exc.errno == errno.ENOENT:
            raise UserError(f"{what}: {path}: no such file or directory") from None
        raise UserError(f"{what}: {path}: {exc.strerror}") from None
    if fd_real_path(fd) != real:  # renamed between realpath and open: refuse rather than guess
        os.close(fd)
        raise UnsafePath(f"{what}: {path} moved while being opened")
    return fd


def open_dir(path: str) -> int:
    """O_PATH|O_DIRECTORY fd of a directory the engine itself owns (volume roots)."""
    return os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
