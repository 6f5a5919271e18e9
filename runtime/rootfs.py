"""The container's filesystem view, built inside its own mount namespace.

Runs in the container's init between unshare(CLONE_NEWNS) and exec, in runc's order:
make ``/`` a slave (nothing propagates back to the host), mount the image overlay (or
bind the root directory onto itself), mount ``spec.mounts`` in order, create /dev nodes
and symlinks, ``pivot_root``, then mask paths, make paths and the root read-only.

Mount targets are never re-resolved as strings inside the rootfs: each one is walked
component by component from an fd of the root with ``O_PATH|O_NOFOLLOW``, symlinks are
resolved by hand and clamped at the root (so ``/etc -> /`` or ``../../..`` cannot leave
it), missing components are created with ``mkdirat``, and the mount goes onto
``/proc/self/fd/N`` (runtime-security.md §2.4, CVE-2021-30465, CVE-2026-41579).
"""
from __future__ import annotations

import ctypes
import errno
import os
import stat

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_REMOUNT = 32
MS_MANDLOCK = 64
MS_DIRSYNC = 128
MS_NOSYMFOLLOW = 256
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_SILENT = 32768
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MNT_DETACH = 2

# option -> (clear?, flag), as runc's parseMountOptions
FLAGS: dict[str, tuple[bool, int]] = {
    "ro": (False, MS_RDONLY), "rw": (True, MS_RDONLY),
    "nosuid": (False, MS_NOSUID), "suid": (True, MS_NOSUID),
    "nodev": (False, MS_NODEV), "dev": (True, MS_NODEV),
    "noexec": (False, MS_NOEXEC), "exec": (True, MS_NOEXEC),
    "sync": (False, MS_SYNCHRONOUS), "async": (True, MS_SYNCHRONOUS),
    "dirsync": (False, MS_DIRSYNC), "remount": (False, MS_REMOUNT),
    "mand": (False, MS_MANDLOCK), "nomand": (True, MS_MANDLOCK),
    "atime": (True, MS_NOATIME), "noatime": (False, MS_NOATIME),
    "diratime": (True, MS_NODIRATIME), "nodiratime": (False, MS_NODIRATIME),
    "relatime": (False, MS_RELATIME), "norelatime": (True, MS_RELATIME),
    "strictatime": (False, MS_STRICTATIME), "nostrictatime": (True, MS_STRICTATIME),
    "bind": (False, MS_BIND), "rbind": (False, MS_BIND | MS_REC),
    "nosymfollow": (False, MS_NOSYMFOLLOW), "symfollow": (True, MS_NOSYMFOLLOW),
}
PROPAGATION = {
    "private": MS_PRIVATE, "rprivate": MS_PRIVATE | MS_REC,
    "slave": MS_SLAVE, "rslave": MS_SLAVE | MS_REC,
    "shared": MS_SHARED, "rshared": MS_SHARED | MS_REC,
    "unbindable": MS_UNBINDABLE, "runbindable": MS_UNBINDABLE | MS_REC,
}
# what a read-only remount must keep, or the kernel refuses it (EPERM) in a user's mount
PRESERVED = MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME | MS_RELATIME
_STATVFS_TO_MS = ((os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV), (os.ST_NOEXEC, MS_NOEXEC),
                  (getattr(os, "ST_NOATIME", 1024), MS_NOATIME),
                  (getattr(os, "ST_NODIRATIME", 2048), MS_NODIRATIME),
                  (getattr(os, "ST_RELATIME", 4096), MS_RELATIME), (os.ST_RDONLY, MS_RDONLY))

# the only /proc files a bind mount may cover (runc's checkProcMount, lxcfs)
PROC_BIND_ALLOWED = frozenset({"/proc/cpuinfo", "/proc/diskstats", "/proc/meminfo", "/proc/stat",
                               "/proc/swaps", "/proc/uptime", "/proc/loadavg", "/proc/slabinfo",
                               "/proc/net/dev", "/proc/sys/kernel/ns_last_pid"})

# runtime-spec default devices (config-linux.md#default-devices): name, major, minor
DEFAULT_DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8),
                   ("urandom", 1, 9), ("tty", 5, 0))
DEV_SYMLINKS = (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"))

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.syscall.restype = ctypes.c_long
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203,
                   "s390x": 217}.get(os.uname().machine, 155)


class MountError(OSError):
    """A mount the spec asks for failed; the message names the destination."""


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0,
          data: str | None = None, what: str | None = None) -> None:
    """mount(2); ``what`` names the mount in the error (the target is often /proc/self/fd/N)."""
    enc = (lambda s: s.encode() if s is not None else None)
    if _libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)) != 0:
        err = ctypes.get_errno()
        raise MountError(err, f"mount {source or fstype or ''} on {what or target}"
                              f" ({fstype or 'bind'}): {os.strerror(err)}")


def umount(target: str, flags: int = 0) -> None:
    if _libc.umount2(target.encode(), flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"umount {target}: {os.strerror(err)}")


def pivot_root(new_root: str, put_old: str) -> None:
    if _libc.syscall(_SYS_PIVOT_ROOT, new_root.encode(), put_old.encode()) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"pivot_root: {os.strerror(err)}")


def parse_options(options: list[str]) -> tuple[int, int, str]:
    """OCI mount options -> (mount flags, propagation flags, filesystem data string)."""
    flags = prop = 0
    data = []
    for opt in options or ():
        if opt in FLAGS:
            clear, bit = FLAGS[opt]
            flags = flags & ~bit if clear else flags | bit
        elif opt in PROPAGATION:
            prop |= PROPAGATION[opt]
        else:
            data.append(opt)
    return flags, prop, ",".join(data)


def fd_path(fd: int) -> str:
    return f"/proc/self/fd/{fd}"


# ---------------------------------------------------------------------------------------
# resolving paths inside the root without leaving it

class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


_SYS_OPENAT2 = 437  # the same number on every architecture
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_IN_ROOT = 0x10
_HOW = {nofollow: _OpenHow(os.O_PATH | os.O_CLOEXEC | (os.O_NOFOLLOW if nofollow else 0), 0,
                           _RESOLVE_IN_ROOT | _RESOLVE_NO_MAGICLINKS)
        for nofollow in (False, True)}
_HOW_REF = {k: ctypes.byref(v) for k, v in _HOW.items()}
_openat2_ok = True


def _openat2(dirfd: int, path: str, nofollow: bool) -> int:
    """openat2(O_PATH, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS): ``path`` resolved by the
    kernel as if ``dirfd`` were the root (symlinks and ``..`` cannot leave it, /proc's
    magic links are refused). OSError(ENOSYS) where the kernel or a seccomp filter has
    no openat2 (then the walk below does the same in user space)."""
    global _openat2_ok
    fd = _libc.syscall(_SYS_OPENAT2, dirfd, path.encode(), _HOW_REF[nofollow], 24)
    if fd < 0:
        err = ctypes.get_errno()
        if err in (errno.ENOSYS, errno.EPERM, errno.E2BIG):
            _openat2_ok = False
            raise OSError(errno.ENOSYS, "openat2 unavailable")
        raise OSError(err, os.strerror(err), path)
    return fd


def open_in_root(rootfd: int, path: str, create: str | None = None, mode: int = 0o755,
                 nofollow_last: bool = False) -> int:
    """An ``O_PATH`` fd for ``path`` resolved inside the tree of ``rootfd``.

    Symlinks are followed with absolute targets and ``..`` clamped at the root, like a
    chroot would. ``create`` is ``"dir"`` or ``"file"``: make missing components
    (directories, and the last one of that kind). Returns a new fd; raises OSError.

    An existing path is one openat2(RESOLVE_IN_ROOT) call; a missing one is created
    below its existing parent; anything unusual (a dangling symlink on the way, an old
    kernel) takes the component-by-component walk of ``_walk_in_root``."""
    if _openat2_ok:
        try:
            fd = _openat2(rootfd, path, nofollow_last)
        except FileNotFoundError:
            if create is not None:
                fd = _create_in_root(rootfd, path, create, mode)
                if fd is not None:
                    return fd
        except OSError as exc:
            if exc.errno not in (errno.ENOSYS, errno.ELOOP, errno.EXDEV, errno.EAGAIN):
                raise
        else:
            if nofollow_last and stat.S_ISLNK(os.fstat(fd).st_mode):
                os.close(fd)
                raise OSError(errno.ELOOP, f"{path} is a symlink")
            return fd
    return _walk_in_root(rootfd, path, create, mode, nofollow_last)


def _create_in_root(rootfd: int, path: str, create: str, mode: int) -> int | None:
    """The missing last component of ``path`` made in its existing parent (resolved in
    the root); None if that is not the simple case (the caller walks instead)."""
    parts = [c for c in path.split("/") if c not in ("", ".")]
    if not parts or parts[-1] == "..":
        return None
    try:
        parent = _openat2(rootfd, "/".join(parts[:-1]) or "/", False)
    except OSError:
        return None
    try:
        name = parts[-1]
        try:
            if create == "file":
                os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC
                                 | os.O_NOFOLLOW, 0o644, dir_fd=parent))
            else:
                os.mkdir(name, mode, dir_fd=parent)
        except FileExistsError:
            return None  # e.g. a dangling symlink: the walk resolves it in the root
        fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        if stat.S_ISLNK(os.fstat(fd).st_mode):
            os.close(fd)
            return None
        return fd
    finally:
        os.close(parent)


def _walk_in_root(rootfd: int, path: str, create: str | None = None, mode: int = 0o755,
                  nofollow_last: bool = False) -> int:
    """``open_in_root`` by hand: each component opened with ``O_NOFOLLOW`` from the
    directory before it, symlinks read and resolved inside the root."""
    todo = [c for c in path.split("/") if c not in ("", ".")]
    stack = [os.dup(rootfd)]  # fds of the directories walked, stack[0] = root
    links = 0
    try:
        while todo:
            comp = todo.pop(0)
            if comp == "..":
                if len(stack) > 1:
                    os.close(stack.pop())
                continue
            cur = stack[-1]
            last = not todo
            try:
                fd = os.open(comp, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=cur)
            except FileNotFoundError:
                if create is None:
                    raise
                if last and create == "file":
                    os.close(os.open(comp, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW,
                                     0o644, dir_fd=cur))
                else:
                    try:
                        os.mkdir(comp, mode, dir_fd=cur)
                    except FileExistsError:
                        pass
                fd = os.open(comp, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=cur)
            st = os.fstat(fd)
            if stat.S_ISLNK(st.st_mode) and last and nofollow_last:
                os.close(fd)
                raise OSError(errno.ELOOP, f"{path} is a symlink")
            if stat.S_ISLNK(st.st_mode):
                links += 1
                if links > 40:
                    os.close(fd)
                    raise OSError(errno.ELOOP, f"too many symlinks resolving {path}")
                target = os.readlink(comp, dir_fd=cur)
                os.close(fd)
                if target.startswith("/"):
                    while len(stack) > 1:
                        os.close(stack.pop())
                todo = [c for c in target.split("/") if c not in ("", ".")] + todo
                continue
            if not last and not stat.S_ISDIR(st.st_mode):
                os.close(fd)
                raise OSError(errno.ENOTDIR, f"{path}: a component is not a directory")
            stack.append(fd)
        return os.dup(stack[-1])
    finally:
        for fd in stack:
            os.close(fd)


def _is_dir_fd(fd: int) -> bool:
    return stat.S_ISDIR(os.fstat(fd).st_mode)


def _mount_flags_of(path: str) -> int:
    st = os.statvfs(path)
    return sum(ms for bit, ms in _STATVFS_TO_MS if st.f_flag & bit)


def remount_ro(target: str, extra: int = 0, what: str | None = None, rec: bool = False) -> None:
    """Make a bind mount read-only, keeping the flags it has (else EPERM)."""
    keep = _mount_flags_of(target) & PRESERVED
    mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | keep | extra
          | (MS_REC if rec else 0), None, what or target)


# ---------------------------------------------------------------------------------------
# the steps, in the order the container init calls them

def prepare_root(root: str, propagation: str | None, lowerdirs: list[str] | None,
                 upper: str | None, work: str | None) -> None:
    """Private view of ``/`` then the root itself: overlay of the image, or a self-bind."""
    prop = PROPAGATION.get(propagation or "", MS_SLAVE | MS_REC)
    mount(None, "/", None, prop, None, "/")
    if lowerdirs:
        if bool(upper) != bool(work):
            raise ValueError("rootfs_upper and rootfs_work go together")
        opts = "lowerdir=" + ":".join(lowerdirs)
        if upper:
            opts += f",upperdir={upper},workdir={work}"
        mount("overlay", root, "overlay", 0, opts, root)
    else:
        mount(root, root, None, MS_BIND | MS_REC, None, root)
    # pivot_root refuses a shared parent: make the root mount itself private
    mount(None, root, None, MS_PRIVATE, None, root)


def mount_one(rootfd: int, root: str, m: dict, bundle: str, cgroup_paths: dict,
              cgroupns: bool = False) -> None:
    """One entry of ``spec.mounts`` onto its destination inside the root."""
    dest = m.get("destination") or ""
    if not dest.startswith("/"):
        raise ValueError(f"mount destination {dest!r} must be absolute")
    kind = m.get("type") or ""
    options = list(m.get("options") or ())
    flags, prop, data = parse_options(options)
    source = m.get("source") or kind
    if dest.rstrip("/") == "/proc" or dest.startswith("/proc/"):
        # runc's checkProcMount: procfs on /proc, binds only over lxcfs-style files
        if not (kind == "proc" and dest.rstrip("/") == "/proc") and not (
                flags & MS_BIND and dest in PROC_BIND_ALLOWED):
            raise ValueError(f"mount of type {kind or 'bind'!r} on {dest} is not allowed")
    if flags & MS_BIND:
        src = source if os.path.isabs(source) else os.path.join(bundle, source)
        try:
            sfd = os.open(src, os.O_PATH | os.O_CLOEXEC)
        except OSError as exc:
            raise MountError(exc.errno, f"bind source {src} for {dest}: {exc.strerror}") from None
        try:
            tfd = open_in_root(rootfd, dest, "dir" if _is_dir_fd(sfd) else "file")
            try:
                mount(fd_path(sfd), fd_path(tfd), None, flags & (MS_BIND | MS_REC), None, dest)
            finally:
                os.close(tfd)
            rest = flags & ~(MS_BIND | MS_REC)
            if rest or prop:
                tfd = open_in_root(rootfd, dest)  # the new mount, not what is below it
                try:
                    if rest:
                        # a bind ignores other flags: apply them with a remount
                        keep = _mount_flags_of(fd_path(tfd)) & PRESERVED
                        mount(None, fd_path(tfd), None,
                              MS_BIND | MS_REMOUNT | rest | keep | (flags & MS_REC), None, dest)
                    if prop:
                        mount(None, fd_path(tfd), None, prop, None, dest)
                finally:
                    os.close(tfd)
        finally:
            os.close(sfd)
        return
    if kind == "cgroup":
        _mount_cgroup_v1(rootfd, dest, flags, cgroup_paths, cgroupns)
        return
    # procfs/sysfs never go onto a symlink planted in the image (CVE-2019-19921 class)
    tfd = open_in_root(rootfd, dest, "dir", nofollow_last=kind in ("proc", "sysfs"))
    try:
        mount(source, fd_path(tfd), kind, flags & ~MS_REMOUNT, data or None, dest)
    finally:
        os.close(tfd)
    if prop:
        tfd = open_in_root(rootfd, dest)
        try:
            mount(None, fd_path(tfd), None, prop, None, dest)
        finally:
            os.close(tfd)


def _mount_cgroup_v1(rootfd: int, dest: str, flags: int, cgroup_paths: dict,
                     private_ns: bool) -> None:
    """A ``cgroup`` mount: cgroup2 on a unified host; on v1, runc's layout: a tmpfs with
    one bind of the container's own cgroup directory per hierarchy (host cgroup ns)."""
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        tfd = open_in_root(rootfd, dest, "dir")
        try:
            mount("cgroup2", fd_path(tfd), "cgroup2", flags & ~MS_REMOUNT, None, dest)
        finally:
            os.close(tfd)
        return
    tfd = open_in_root(rootfd, dest, "dir")
    try:
        mount("tmpfs", fd_path(tfd), "tmpfs", flags & ~MS_RDONLY, "mode=755", dest)
    finally:
        os.close(tfd)
    tfd = open_in_root(rootfd, dest)  # the new tmpfs, not the directory below it
    try:
        for name, opts in _v1_hierarchies():
            host_dir = cgroup_paths.get(name) or cgroup_paths.get(opts)
            sub = open_in_root(tfd, name, "dir")
            try:
                if private_ns:
                    # our cgroup namespace's root is the container's cgroup: mount directly
                    src = opts.removeprefix("name=") if opts.startswith("name=") else "cgroup"
                    mount(src, fd_path(sub), "cgroup",
                          flags & (MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC), opts,
                          f"{dest}/{name}")
                    continue
                if not host_dir or not os.path.isdir(host_dir):
                    continue
                mount(host_dir, fd_path(sub), None, MS_BIND | MS_REC, None, f"{dest}/{name}")
            finally:
                os.close(sub)
            sub = open_in_root(tfd, name)
            try:
                mount(None, fd_path(sub), None,
                      MS_BIND | MS_REMOUNT | (flags & (MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)),
                      None, f"{dest}/{name}")
            finally:
                os.close(sub)
    finally:
        os.close(tfd)


def _v1_hierarchies() -> list[tuple[str, str]]:
    """(directory name, mount options) of each v1 hierarchy under /sys/fs/cgroup, in the
    host's mount order (runc's order); the hybrid unified mount is left out, as runc does."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            fields = pre.split()
            parts = post.split()
            if len(parts) < 3 or parts[0] != "cgroup":
                continue
            mnt = fields[4]
            if os.path.dirname(mnt) != "/sys/fs/cgroup":
                continue
            opts = ",".join(o for o in parts[2].split(",") if o not in ("rw", "ro"))
            out.append((os.path.basename(mnt), opts))
    return out


def create_devices(rootfd: int, devices: list[dict], terminal: bool) -> None:
    """Default device nodes, the spec's ``linux.devices``, and runc's /dev symlinks.

    Only when /dev is a fresh tmpfs the runtime mounted (``dev_is_ours``); an image's own
    /dev directory is never written through."""
    devfd = open_in_root(rootfd, "/dev", "dir")
    try:
        dirfd = os.open(fd_path(devfd), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    finally:
        os.close(devfd)
    try:
        old = os.umask(0)
        try:
            wanted = {name: (stat.S_IFCHR | 0o666, os.makedev(ma, mi), 0, 0)
                      for name, ma, mi in DEFAULT_DEVICES}
            for d in devices or ():
                path = d["path"].removeprefix("/dev/")
                kind = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK,
                        "p": stat.S_IFIFO}[d.get("type", "c")]
                wanted[path] = (kind | (d.get("fileMode", 0o666) & 0o7777),
                                os.makedev(d.get("major", 0), d.get("minor", 0)),
                                d.get("uid", 0), d.get("gid", 0))
            for name, (mode, dev, uid, gid) in wanted.items():
                if "/" in name:
                    parent = os.path.dirname(name)
                    pfd = open_in_root(dirfd, parent, "dir")
                    os.close(pfd)
                try:
                    os.unlink(name, dir_fd=dirfd)
                except FileNotFoundError:
                    pass
                except IsADirectoryError:
                    raise OSError(errno.EISDIR, f"/dev/{name} is a directory") from None
                os.mknod(name, mode, dev, dir_fd=dirfd)
                os.chown(name, uid, gid, dir_fd=dirfd, follow_symlinks=False)
        finally:
            os.umask(old)
        links = list(DEV_SYMLINKS) + [("ptmx", "pts/ptmx")]
        if os.path.exists("/proc/kcore"):
            links.append(("core", "/proc/kcore"))
        for name, target in links:
            try:
                os.symlink(target, name, dir_fd=dirfd)
            except FileExistsError:
                pass
        if terminal:
            os.close(os.open("console", os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW,
                             0o600, dir_fd=dirfd))
    finally:
        os.close(dirfd)


def do_pivot(root: str) -> None:
    """pivot_root(".", ".") then detach the old root (runc's trick: no put_old dir needed)."""
    oldroot = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    newroot = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fchdir(newroot)
        pivot_root(".", ".")
        os.fchdir(oldroot)
        # the old root must not propagate the unmount to the host
        mount(None, ".", None, MS_SLAVE | MS_REC, None, "old root")
        umount(".", MNT_DETACH)
        os.fchdir(newroot)
    finally:
        os.close(oldroot)
        os.close(newroot)
    os.chdir("/")


def mask_paths(paths: list[str]) -> None:
    """Docker's masked paths: /dev/null over files, an empty read-only tmpfs over dirs."""
    rootfd = os.open("/", os.O_PATH | os.O_CLOEXEC)
    try:
        null = os.open("/dev/null", os.O_PATH | os.O_CLOEXEC)
        st = os.fstat(null)
        if not stat.S_ISCHR(st.st_mode) or st.st_rdev != os.makedev(1, 3):
            raise OSError(errno.EINVAL, "/dev/null is not the null device")
        try:
            for p in paths or ():
                try:
                    fd = open_in_root(rootfd, p)
                except FileNotFoundError:
                    continue
                try:
                    if _is_dir_fd(fd):
                        mount("tmpfs", fd_path(fd), "tmpfs", MS_RDONLY, None, p)
                    else:
                        mount(fd_path(null), fd_path(fd), None, MS_BIND, None, p)
                finally:
                    os.close(fd)
        finally:
            os.close(null)
    finally:
        os.close(rootfd)


def readonly_paths(paths: list[str]) -> None:
    """Docker's read-only paths under /proc (bind onto itself, then remount read-only)."""
    rootfd = os.open("/", os.O_PATH | os.O_CLOEXEC)
    try:
        for p in paths or ():
            try:
                fd = open_in_root(rootfd, p)
            except FileNotFoundError:
                continue
            try:
                mount(fd_path(fd), fd_path(fd), None, MS_BIND | MS_REC, None, p)
            finally:
                os.close(fd)
            # remount the new mount (re-open: the fd points below it)
            fd = open_in_root(rootfd, p)
            try:
                remount_ro(fd_path(fd), what=p, rec=True)
            finally:
                os.close(fd)
    finally:
        os.close(rootfd)


def readonly_root() -> None:
    """``root.readonly``: remount / read-only, keeping its other flags."""
    remount_ro("/", what="/")
