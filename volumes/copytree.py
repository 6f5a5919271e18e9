"""Copy a directory tree exactly (owners, modes, times, links, xattrs), reflinking where possible.

Used by copy-up (image content into a new volume) and by snapshots. The walk goes through
directory file descriptors opened with ``O_NOFOLLOW``, never through joined path strings,
so a container writing into the tree while it is copied cannot redirect the copy outside
it with a symlink swap. File bodies are shared with ``FICLONE`` when the filesystem allows
(btrfs, XFS, bcachefs), else copied in the kernel with ``copy_file_range``.
"""
from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field

from pystack.volumes import _sys

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_ROOT_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_NO_REFLINK = {errno.EOPNOTSUPP, errno.EXDEV, errno.EINVAL, errno.ENOTTY, errno.EBADF, errno.ENOSYS}


@dataclass
class CopyStats:
    """What a copy did: counts, bytes, and how many files shared blocks instead of copying."""

    files: int = 0
    dirs: int = 0
    bytes: int = 0
    reflinked: int = 0
    reflink_tried: bool = False
    reflink_ok: bool = True
    _links: dict[tuple[int, int], str] = field(default_factory=dict, repr=False)


def _copy_xattrs(sfd: int, dfd: int) -> None:
    """Best effort: security.* and trusted.* may be refused; the data matters more."""
    try:
        names = os.listxattr(sfd)
    except OSError:
        return
    for name in names:
        try:
            os.setxattr(dfd, name, os.getxattr(sfd, name))
        except OSError:
            pass


def _copy_meta(dfd: int, st: os.stat_result) -> None:
    os.fchown(dfd, st.st_uid, st.st_gid)
    os.fchmod(dfd, stat.S_IMODE(st.st_mode))
    os.utime(dfd, ns=(st.st_atime_ns, st.st_mtime_ns))


def _copy_body(sfd: int, dfd: int) -> None:
    """In-kernel copy; copy_file_range refuses some pairs (overlayfs -> ext4: EXDEV), sendfile not."""
    try:
        while os.copy_file_range(sfd, dfd, 1 << 30):
            pass
        return
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise
    offset = os.lseek(dfd, 0, os.SEEK_CUR)
    os.lseek(sfd, offset, os.SEEK_SET)
    while True:
        n = os.sendfile(dfd, sfd, None, 1 << 30)
        if n == 0:
            break


def _copy_file(name: str, sdir: int, ddir: int, st: os.stat_result, stats: CopyStats, reflink: bool) -> None:
    sfd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=sdir)
    try:
        dfd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=ddir)
        try:
            done = False
            if reflink and stats.reflink_ok and st.st_size > 0:
                stats.reflink_tried = True
                try:
                    _sys.ficlone(sfd, dfd)
                    done = True
                    stats.reflinked += 1
                except OSError as exc:
                    if exc.errno not in _NO_REFLINK:
                        raise
                    stats.reflink_ok = False
            if not done:
                _copy_body(sfd, dfd)
            _copy_xattrs(sfd, dfd)
            _copy_meta(dfd, st)
        finally:
            os.close(dfd)
    finally:
        os.close(sfd)
    stats.files += 1
    stats.bytes += st.st_size


def _copy_dir(sdir: int, ddir: int, rel: str, stats: CopyStats, reflink: bool, root_ddir: int) -> None:
    with os.scandir(sdir) as entries:
        names = [e.name for e in entries]
    for name in names:
        try:
            st = os.stat(name, dir_fd=sdir, follow_symlinks=False)
        except FileNotFoundError:
            continue  # removed while copying (a live volume): skip it
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            os.mkdir(name, 0o700, dir_fd=ddir)
            csd = os.open(name, _DIR_FLAGS, dir_fd=sdir)
            cdd = os.open(name, _DIR_FLAGS, dir_fd=ddir)
            try:
                _copy_dir(csd, cdd, f"{rel}{name}/", stats, reflink, root_ddir)
                _copy_xattrs(csd, cdd)
                _copy_meta(cdd, os.fstat(csd))
            finally:
                os.close(csd)
                os.close(cdd)
            stats.dirs += 1
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(name, dir_fd=sdir), name, dir_fd=ddir)
            os.chown(name, st.st_uid, st.st_gid, dir_fd=ddir, follow_symlinks=False)
            os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=ddir, follow_symlinks=False)
        elif stat.S_ISREG(mode):
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in stats._links:
                os.link(stats._links[key], name, src_dir_fd=root_ddir, dst_dir_fd=ddir, follow_symlinks=False)
                continue
            _copy_file(name, sdir, ddir, st, stats, reflink)
            if st.st_nlink > 1:
                stats._links[key] = f"{rel}{name}"
        elif stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            os.mknod(name, mode, st.st_rdev, dir_fd=ddir)
            os.chown(name, st.st_uid, st.st_gid, dir_fd=ddir, follow_symlinks=False)
            os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=ddir, follow_symlinks=False)
        # sockets are not copied (Docker's archive skips them too)


def copy_tree(src: str, dst: str, *, reflink: bool = True, root_meta: bool = True) -> CopyStats:
    """Copy the contents of directory ``src`` into the existing directory ``dst``.

    ``dst`` should be empty; entries that exist there make the copy fail (never overwrite
    silently). With ``root_meta`` the owner, mode and times of ``src`` itself are given to
    ``dst`` as Docker's copy-up does for a volume's root.
    """
    stats = CopyStats()
    # the roots are the caller's (possibly /proc/self/fd/N magic links): follow them; below
    # the roots nothing is followed
    sfd = os.open(src, _ROOT_FLAGS)
    try:
        dfd = os.open(dst, _ROOT_FLAGS)
        try:
            _copy_dir(sfd, dfd, "", stats, reflink, dfd)
            if root_meta:
                _copy_xattrs(sfd, dfd)
                _copy_meta(dfd, os.fstat(sfd))
        finally:
            os.close(dfd)
    finally:
        os.close(sfd)
    return stats


def clear_dir(path: str) -> None:
    """Remove everything inside ``path`` (not ``path`` itself), through fds, never following links."""
    fd = os.open(path, _ROOT_FLAGS)
    try:
        _clear(fd)
    finally:
        os.close(fd)


def _clear(dfd: int) -> None:
    with os.scandir(dfd) as entries:
        names = [(e.name, e.is_dir(follow_symlinks=False)) for e in entries]
    for name, is_dir in names:
        if is_dir:
            cfd = os.open(name, _DIR_FLAGS, dir_fd=dfd)
            try:
                _clear(cfd)
            finally:
                os.close(cfd)
            os.rmdir(name, dir_fd=dfd)
        else:
            os.unlink(name, dir_fd=dfd)


def dir_is_empty(path: str) -> bool:
    """True when ``path`` has no entries (a new volume, before copy-up)."""
    with os.scandir(path) as entries:
        return next(entries, None) is None
