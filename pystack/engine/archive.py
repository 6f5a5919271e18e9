"""Copying files out of and into a container's filesystem (``docker cp``), never outside it.

Every path from a request is resolved by the kernel against the container's root
directory fd (``openat2`` with ``RESOLVE_IN_ROOT``: ``..`` and absolute symlinks stay
inside, see pystack.volumes.safepath); the last component is then handled through its
parent directory fd with ``O_NOFOLLOW`` / ``*at`` calls, so a symlink planted by the
container (or by an earlier tar entry) is never followed out. Tar entries are applied one
by one (never ``tarfile.extractall``): names cleaned, ``..`` refused, hard-link targets
resolved inside the root, directory times set last.

The root is ``/proc/<pid>/root`` of a created/running/paused container (its mount
namespace: volumes included), or, for a stopped one, its overlay (image layers + upper)
mounted for the time of the copy under ``<run>/archive/`` (volumes are not mounted then).
"""
from __future__ import annotations

import base64
import errno
import json
import os
import posixpath
import stat
import tarfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from pystack.errors import NotFound, UserError

# Go's os.FileMode bits (what the docker CLI decodes from X-Docker-Container-Path-Stat)
MODE_DIR = 1 << 31
MODE_SYMLINK = 1 << 27
MODE_DEVICE = 1 << 26
MODE_PIPE = 1 << 25
MODE_SOCKET = 1 << 24
MODE_SETUID = 1 << 23
MODE_SETGID = 1 << 22
MODE_CHARDEV = 1 << 21
MODE_STICKY = 1 << 20


class ArchiveError(UserError):
    """A copy the engine refuses (bad path, wrong kind of file): HTTP 400."""


class ContainerGone(ArchiveError):
    """The container's process went away between looking it up and opening its root."""


def _sys():
    from pystack.volumes import _sys as s
    return s


def go_mode(st: os.stat_result) -> int:
    m = st.st_mode
    out = stat.S_IMODE(m) & 0o777
    if stat.S_ISDIR(m):
        out |= MODE_DIR
    elif stat.S_ISLNK(m):
        out |= MODE_SYMLINK
    elif stat.S_ISFIFO(m):
        out |= MODE_PIPE
    elif stat.S_ISSOCK(m):
        out |= MODE_SOCKET
    elif stat.S_ISCHR(m):
        out |= MODE_DEVICE | MODE_CHARDEV
    elif stat.S_ISBLK(m):
        out |= MODE_DEVICE
    if m & stat.S_ISUID:
        out |= MODE_SETUID
    if m & stat.S_ISGID:
        out |= MODE_SETGID
    if m & stat.S_ISVTX:
        out |= MODE_STICKY
    return out


def _rfc3339(t: float) -> str:
    secs = int(t)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{int((t - secs) * 1e9):09d}Z"


def clean_path(path: str) -> str:
    """The container path as an absolute, normalised path ('/a/../b' -> '/b', '' refused)."""
    if not path:
        raise ArchiveError("path is required (path=/...)")
    if "\x00" in path:
        raise ArchiveError("path contains a NUL byte")
    return posixpath.normpath("/" + path.lstrip("/"))


def open_in_root(root_fd: int, path: str, *, follow_last: bool = True, container: str = "") -> int:
    """O_PATH fd of ``path`` inside the root (RESOLVE_IN_ROOT); NotFound when missing."""
    s = _sys()
    rel = path.lstrip("/") or "."
    flags = os.O_PATH | (0 if follow_last else os.O_NOFOLLOW)
    try:
        return s.openat2(root_fd, rel, flags, s.RESOLVE_IN_ROOT | s.RESOLVE_NO_MAGICLINKS)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            raise NotFound(f"Could not find the file {path} in container {container}") from None
        if exc.errno == errno.ENOSYS:
            raise ArchiveError("this kernel lacks openat2(2): copying is refused") from None
        raise ArchiveError(f"{path}: {exc.strerror}") from None


def _split(path: str) -> tuple[str, str]:
    """(parent, base) of a cleaned absolute path; base '' for '/'."""
    if path == "/":
        return "/", ""
    return posixpath.dirname(path), posixpath.basename(path)


class Target:
    """A resolved path: its parent directory fd and base name (the last component is never
    followed unless the request asked for it with a trailing '/' or '/.')."""

    def __init__(self, root_fd: int, raw_path: str, container: str = "") -> None:
        self.container = container
        path = clean_path(raw_path)
        follow = raw_path.endswith("/") or raw_path.endswith("/.") or path == "/"
        self.path = path
        self.name = posixpath.basename(path) or "/"
        if raw_path.endswith("/.") or raw_path == ".":
            self.name = "."
        self.fds: list[int] = []
        try:
            self._open(root_fd, raw_path, path, follow, container)
        except NotFound:
            raise NotFound(f"Could not find the file {path} in container {container}") from None

    def _open(self, root_fd: int, raw_path: str, path: str, follow: bool, container: str) -> None:
        if follow:
            fd = open_in_root(root_fd, path, follow_last=True, container=container)
            self.fds.append(fd)
            self.parent_fd, self.base = fd, "."
            st = os.fstat(fd)
            if not stat.S_ISDIR(st.st_mode) and raw_path.endswith("/"):
                self.close()
                raise ArchiveError(f"{raw_path}: not a directory")
        else:
            parent, base = _split(path)
            pfd = open_in_root(root_fd, parent, follow_last=True, container=container)
            self.fds.append(pfd)
            self.parent_fd, self.base = pfd, base

    def lstat(self) -> os.stat_result:
        try:
            if self.base == ".":
                return os.fstat(self.parent_fd)
            return os.stat(self.base, dir_fd=self.parent_fd, follow_symlinks=False)
        except FileNotFoundError:
            raise NotFound(f"Could not find the file {self.path} in container {self.container}") from None
        except NotADirectoryError:
            raise NotFound(f"Could not find the file {self.path} in container {self.container}") from None

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []


def stat_doc(root_fd: int, raw_path: str, container: str = "") -> dict:
    """Docker's ContainerPathStat: name, size, mode (Go FileMode), mtime, linkTarget."""
    t = Target(root_fd, raw_path, container)
    try:
        st = t.lstat()
        link = ""
        if stat.S_ISLNK(st.st_mode):
            target = os.readlink(t.base, dir_fd=t.parent_fd)
            link = target if target.startswith("/") else posixpath.normpath(
                posixpath.join(posixpath.dirname(t.path), target))
        return {"name": t.name, "size": st.st_size, "mode": go_mode(st), "mtime": _rfc3339(st.st_mtime),
                "linkTarget": link}
    finally:
        t.close()


def stat_header(doc: dict) -> str:
    return base64.b64encode(json.dumps(doc).encode()).decode()


# -- GET: tar out --------------------------------------------------------------------------

def _tarinfo(name: str, st: os.stat_result) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.mode = stat.S_IMODE(st.st_mode)
    ti.uid, ti.gid = st.st_uid, st.st_gid
    ti.mtime = int(st.st_mtime)
    ti.uname = ti.gname = ""
    return ti


def _add(tar: tarfile.TarFile, dir_fd: int, base: str, arcname: str, seen: dict) -> None:
    """Add the entry ``base`` of directory ``dir_fd`` (not following it if a link)."""
    if base == ".":
        st = os.fstat(dir_fd)
    else:
        try:
            st = os.stat(base, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return  # gone while copying
    ti = _tarinfo(arcname, st)
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        ti.type = tarfile.DIRTYPE
        tar.addfile(ti)
        try:
            fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        except OSError:
            return
        try:
            for entry in sorted(os.listdir(fd)):
                _add(tar, fd, entry, f"{arcname}/{entry}" if arcname != "." else f"./{entry}", seen)
        finally:
            os.close(fd)
    elif stat.S_ISREG(mode):
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in seen:
            ti.type = tarfile.LNKTYPE
            ti.linkname = seen[key]
            tar.addfile(ti)
            return
        try:
            fd = os.open(base, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
        except OSError:
            return
        with os.fdopen(fd, "rb") as fh:
            st2 = os.fstat(fh.fileno())
            if not stat.S_ISREG(st2.st_mode):
                return  # swapped under us
            ti.size = st2.st_size
            tar.addfile(ti, _Exact(fh, st2.st_size))
        if st.st_nlink > 1:
            seen[key] = arcname
    elif stat.S_ISLNK(mode):
        ti.type = tarfile.SYMTYPE
        ti.linkname = os.readlink(base, dir_fd=dir_fd)
        tar.addfile(ti)
    elif stat.S_ISFIFO(mode):
        ti.type = tarfile.FIFOTYPE
        tar.addfile(ti)
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        ti.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
        ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        tar.addfile(ti)
    # sockets are skipped, as Docker does


class _Exact:
    """A file reader that returns exactly ``size`` bytes (zero-padded if the file shrank)."""

    def __init__(self, fh, size: int) -> None:
        self.fh, self.left = fh, size

    def read(self, n: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        n = self.left if n is None or n < 0 else min(n, self.left)
        data = self.fh.read(n)
        if len(data) < n:
            data += b"\0" * (n - len(data))
        self.left -= len(data)
        return data


def write_tar(root_fd: int, raw_path: str, out, container: str = "") -> None:
    """Write the tar of ``raw_path`` (Docker's naming: entries under its base name) to ``out``."""
    t = Target(root_fd, raw_path, container)
    try:
        t.lstat()
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT, bufsize=64 * 1024) as tar:
            _add(tar, t.parent_fd, t.base, t.name if t.name != "/" else ".", {})
    finally:
        t.close()


# -- PUT: tar in ---------------------------------------------------------------------------

def _member_parts(name: str) -> list[str]:
    """Clean a tar entry name into path parts below the extraction point; refuse escapes."""
    norm = posixpath.normpath("/" + name.lstrip("/")) if name else "/"
    # normpath of "/" + name removes every "..": check the raw name for climbing instead
    depth = 0
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            depth -= 1
            if depth < 0:
                raise ArchiveError(f"archive entry {name!r} points outside the extraction point")
        else:
            depth += 1
    return [p for p in norm.split("/") if p]


def _open_dir_at(dir_fd: int, name: str) -> int:
    return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)


def _remove_at(dir_fd: int, name: str) -> None:
    """Remove ``name`` in ``dir_fd`` (a whole tree for a directory), never following links."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        fd = _open_dir_at(dir_fd, name)
        try:
            for entry in os.listdir(fd):
                _remove_at(fd, entry)
        finally:
            os.close(fd)
        os.rmdir(name, dir_fd=dir_fd)
    else:
        os.unlink(name, dir_fd=dir_fd)


class Extractor:
    """Applies tar entries below ``dest`` (a directory fd inside the container root)."""

    def __init__(self, root_fd: int, dest_path: str, no_overwrite_dir_non_dir: bool = False,
                 container: str = "", owner: tuple[int, int] | None = None) -> None:
        self.owner = owner  # copyUIDGID: every entry owned by the container's user
        self.root_fd = root_fd
        self.no_overwrite = no_overwrite_dir_non_dir
        self.container = container
        self.dest_path = clean_path(dest_path)
        fd = open_in_root(root_fd, self.dest_path, container=container)
        try:
            if not stat.S_ISDIR(os.fstat(fd).st_mode):
                raise ArchiveError(f"extraction point is not a directory: {dest_path}")
            self.dest_fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
        finally:
            os.close(fd)
        self.dir_times: list[tuple[list[str], float]] = []

    def close(self) -> None:
        os.close(self.dest_fd)

    def _in_root(self, parts: list[str]) -> int:
        """Directory fd of dest/parts resolved inside the container root (in-root links followed)."""
        s = _sys()
        rel = posixpath.join(self.dest_path, *parts).lstrip("/") or "."
        return s.openat2(self.root_fd, rel, os.O_RDONLY | os.O_DIRECTORY,
                         s.RESOLVE_IN_ROOT | s.RESOLVE_NO_MAGICLINKS)

    def _parent(self, parts: list[str], create: bool = True) -> int:
        """A directory fd for ``parts`` below dest: existing symlinks are followed only inside
        the container root (RESOLVE_IN_ROOT, as Docker's chrooted extraction); missing
        directories are created one at a time, never following a link."""
        for i in range(len(parts), -1, -1):
            try:
                fd = self._in_root(parts[:i])
            except OSError as exc:
                if exc.errno == errno.ENOENT and create:
                    continue
                what = "/".join(parts[:i]) or "."
                if exc.errno in (errno.ENOTDIR, errno.ENOENT):
                    raise ArchiveError(f"cannot extract below {what}: not a directory") from None
                raise ArchiveError(f"cannot extract below {what}: {exc.strerror}") from None
            try:
                for part in parts[i:]:
                    try:
                        os.mkdir(part, 0o755, dir_fd=fd)
                    except FileExistsError:
                        pass
                    nfd = _open_dir_at(fd, part)
                    os.close(fd)
                    fd = nfd
                return fd
            except OSError as exc:
                os.close(fd)
                raise ArchiveError(f"cannot extract below {'/'.join(parts)}: {exc.strerror}") from None
        raise ArchiveError("extraction point vanished")

    def apply(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        parts = _member_parts(member.name)
        if not parts:  # the extraction point itself ("./")
            return
        if self.owner is not None:
            member.uid, member.gid = self.owner
        if member.type in (tarfile.XHDTYPE, tarfile.XGLTYPE):
            return
        pfd = self._parent(parts[:-1])
        base = parts[-1]
        try:
            try:
                old = os.stat(base, dir_fd=pfd, follow_symlinks=False)
            except FileNotFoundError:
                old = None
            if old is not None:
                old_dir = stat.S_ISDIR(old.st_mode)
                if member.isdir() and old_dir:
                    pass
                elif self.no_overwrite and old_dir != member.isdir():
                    kind = "directory" if old_dir else "non-directory"
                    raise ArchiveError(f"cannot overwrite {kind} {'/'.join(parts)} with "
                                       f"{'directory' if member.isdir() else 'non-directory'}")
                else:
                    _remove_at(pfd, base)
            if member.isdir():
                if old is None or not stat.S_ISDIR(old.st_mode):
                    os.mkdir(base, 0o700, dir_fd=pfd)
                os.chown(base, member.uid, member.gid, dir_fd=pfd, follow_symlinks=False)
                self._chmod_dir(pfd, base, member.mode)
                self.dir_times.append((parts, member.mtime))
            elif member.isreg():
                fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                             0o600, dir_fd=pfd)
                with os.fdopen(fd, "wb") as out:
                    src = tar.extractfile(member)
                    if src is not None:
                        while True:
                            chunk = src.read(1 << 20)
                            if not chunk:
                                break
                            out.write(chunk)
                    out.flush()
                    os.fchown(out.fileno(), member.uid, member.gid)
                    os.fchmod(out.fileno(), member.mode & 0o7777)
                    os.utime(out.fileno(), (member.mtime, member.mtime))
            elif member.issym():
                os.symlink(member.linkname, base, dir_fd=pfd)
                os.chown(base, member.uid, member.gid, dir_fd=pfd, follow_symlinks=False)
                try:
                    os.utime(base, (member.mtime, member.mtime), dir_fd=pfd, follow_symlinks=False)
                except OSError:
                    pass
            elif member.islnk():
                lparts = _member_parts(member.linkname)
                if not lparts:
                    raise ArchiveError(f"hard link {member.name!r} to the extraction point")
                lfd = self._parent(lparts[:-1], create=False)
                try:
                    os.link(lparts[-1], base, src_dir_fd=lfd, dst_dir_fd=pfd, follow_symlinks=False)
                except FileNotFoundError:
                    raise ArchiveError(f"hard link target {member.linkname!r} not found") from None
                finally:
                    os.close(lfd)
            elif member.isfifo():
                os.mkfifo(base, member.mode & 0o777, dir_fd=pfd)
                os.chown(base, member.uid, member.gid, dir_fd=pfd, follow_symlinks=False)
            # device nodes are not created (a container could use them to reach host devices)
        except ArchiveError:
            raise
        except OSError as exc:
            raise ArchiveError(f"extracting {member.name}: {exc.strerror}") from None
        finally:
            os.close(pfd)

    @staticmethod
    def _chmod_dir(pfd: int, base: str, mode: int) -> None:
        fd = _open_dir_at(pfd, base)
        try:
            os.fchmod(fd, mode & 0o7777)
        finally:
            os.close(fd)

    def finish(self) -> None:
        for parts, mtime in reversed(self.dir_times):
            try:
                pfd = self._parent(parts[:-1], create=False)
            except ArchiveError:
                continue
            try:
                fd = _open_dir_at(pfd, parts[-1])
                try:
                    os.utime(fd, (mtime, mtime))
                finally:
                    os.close(fd)
            except OSError:
                pass
            finally:
                os.close(pfd)


def container_owner(root_fd: int, user: str | None) -> tuple[int, int]:
    """uid/gid of the container's ``User`` (Config.User) from its own /etc/passwd."""
    from pystack.runtime.userdb import resolve_user
    u = resolve_user(f"/proc/self/fd/{root_fd}", user or "")
    return u.uid, u.gid


def extract_tar(root_fd: int, dest: str, stream, *, no_overwrite_dir_non_dir: bool = False,
                container: str = "", copy_uid_gid_of: str | None = None) -> int:
    """Extract the tar read from ``stream`` (plain, gzip, bzip2 or xz: decompressed in
    process) below ``dest``; returns the number of entries applied. ``copy_uid_gid_of``:
    a container user (``docker cp -a``): entries are owned by it instead of the archive's ids."""
    owner = container_owner(root_fd, copy_uid_gid_of) if copy_uid_gid_of is not None else None
    ex = Extractor(root_fd, dest, no_overwrite_dir_non_dir, container, owner)
    n = 0
    try:
        try:
            tar = tarfile.open(fileobj=stream, mode="r|*")
        except tarfile.TarError as exc:
            raise ArchiveError(f"request body is not a tar archive: {exc}") from None
        with tar:
            try:
                for member in tar:
                    ex.apply(tar, member)
                    n += 1
            except tarfile.TarError as exc:
                raise ArchiveError(f"bad tar archive: {exc}") from None
        ex.finish()
    finally:
        ex.close()
    return n


# -- the container's root ------------------------------------------------------------------

def _mount_overlay(target: Path, lowerdirs: list[str], upper: str, work: str) -> None:
    s = _sys()
    opts = f"lowerdir={':'.join(lowerdirs)},upperdir={upper},workdir={work}"
    s.mount("overlay", str(target), "overlay", 0, opts)


def cleanup_stale_mounts(run: Path) -> None:
    """Unmount what a crashed engine left under ``<run>/archive`` (called before first use)."""
    base = Path(run) / "archive"
    if not base.is_dir():
        return
    for d in base.iterdir():
        try:
            _sys().umount(str(d))
        except OSError:
            pass
        try:
            d.rmdir()
        except OSError:
            pass


def open_container_proc(pid: int, container_id: str) -> int:
    """An fd of ``/proc/<pid>`` checked to be a process of container ``container_id`` (its
    cgroup path names the id). The fd pins that very process: if it exits and the pid is
    reused, lookups through the fd fail instead of reaching another process (the host's
    root, say). OSError when it is not (or no longer) the container's."""
    fd = os.open(f"/proc/{pid}", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        cg = os.open("cgroup", os.O_RDONLY | os.O_CLOEXEC, dir_fd=fd)
        try:
            text = os.read(cg, 65536).decode(errors="replace")
        finally:
            os.close(cg)
        if container_id not in text:
            raise OSError(errno.ESRCH, f"pid {pid} is not a process of container {container_id[:12]}")
        return fd
    except BaseException:
        os.close(fd)
        raise


@contextmanager
def container_root(pid: int | None, extra: dict, run: Path, container_id: str) -> Iterator[int]:
    """A directory fd of the container's root: ``/proc/<pid>/root`` while it has a process,
    else its overlay mounted on a temporary directory (unmounted on exit)."""
    if pid:
        # never fall back to mounting the overlay here: the container may still use it
        try:
            procfd = open_container_proc(pid, container_id)
            try:
                fd = os.open("root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=procfd)
            finally:
                os.close(procfd)
        except OSError:
            raise ContainerGone(f"container {container_id[:12]} changed state during the copy") from None
        try:
            yield fd
        finally:
            os.close(fd)
        return
    lowers = extra.get("lowerdirs") or []
    upper, work = extra.get("upper"), extra.get("work")
    if not lowers or not upper or not work:
        raise ArchiveError(f"container {container_id} has no filesystem to copy from")
    base = Path(run) / "archive"
    base.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = base / f"{container_id[:12]}-{os.getpid()}-{time.monotonic_ns()}"
    target.mkdir(mode=0o700)
    try:
        _mount_overlay(target, [str(p) for p in lowers], str(upper), str(work))
    except OSError as exc:
        target.rmdir()
        raise ArchiveError(f"cannot mount the container's filesystem: {exc}") from None
    try:
        fd = os.open(target, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            yield fd
        finally:
            os.close(fd)
    finally:
        try:
            _sys().umount(str(target))
        finally:
            try:
                target.rmdir()
            except OSError:
                pass


# -- one file, atomically (the /pystack/containers/{id}/files extra) -----------------------

def write_file(root_fd: int, raw_path: str, chunks, *, mode: int | None = None, uid: int | None = None,
               gid: int | None = None, make_parents: bool = False, container: str = "") -> dict:
    """Replace (or create) the file ``raw_path`` with the bytes of ``chunks`` atomically: a
    temporary file in the same directory, fsynced, then renamed over the target, so a
    process in the container never reads half a file. Owner and mode default to the old
    file's (else root and 0644). Returns ``{"path", "size"}``."""
    path = clean_path(raw_path)
    if path == "/" or raw_path.endswith("/"):
        raise ArchiveError(f"{raw_path}: a file path is required")
    parent, base = _split(path)
    if make_parents:
        ex = Extractor(root_fd, "/", container=container)
        try:
            pfd = ex._parent([p for p in parent.split("/") if p])
        finally:
            ex.close()
    else:
        opath = open_in_root(root_fd, parent, container=container)
        try:
            if not stat.S_ISDIR(os.fstat(opath).st_mode):
                raise ArchiveError(f"{parent}: not a directory")
            pfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=opath)
        finally:
            os.close(opath)
    try:
        try:
            old = os.stat(base, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            old = None
        if old is not None and not stat.S_ISREG(old.st_mode):
            raise ArchiveError(f"{path}: exists and is not a regular file")
        fmode = mode if mode is not None else (stat.S_IMODE(old.st_mode) if old else 0o644)
        fuid = uid if uid is not None else (old.st_uid if old else 0)
        fgid = gid if gid is not None else (old.st_gid if old else 0)
        tmp = f".{base}.pystack-{os.getpid()}-{time.monotonic_ns()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                     dir_fd=pfd)
        size = 0
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    out.write(chunk)
                    size += len(chunk)
                out.flush()
                os.fchown(out.fileno(), fuid, fgid)
                os.fchmod(out.fileno(), fmode & 0o7777)
                os.fsync(out.fileno())
            os.rename(tmp, base, src_dir_fd=pfd, dst_dir_fd=pfd)
        except BaseException:
            try:
                os.unlink(tmp, dir_fd=pfd)
            except OSError:
                pass
            raise
        return {"path": path, "size": size}
    except OSError as exc:
        raise ArchiveError(f"writing {path}: {exc.strerror}") from None
    finally:
        os.close(pfd)
