"""Resolve a container's ``user`` (``uid``, ``uid:gid``, ``name``, ``name:group``...)
against the image's /etc/passwd and /etc/group, read safely inside the root filesystem.

API:

    resolve_user(rootfs, user, group_add=()) -> ExecUser(uid, gid, additional_gids, home, name)
    with_home(env, home) -> list[str]          add HOME=... unless the env has one (as runc)
    open_in_root(rootfs, path) -> int | None    an O_RDONLY fd of a regular file inside
                                                rootfs, symlinks resolved *inside* it

Semantics follow runc/moby's ``user.GetExecUser``: an empty user is root; a name must exist
in /etc/passwd ("unable to find user x: no matching entries in passwd file"), a numeric uid
need not (gid 0, HOME /); an explicit group overrides the primary gid, and only when no
group is given are the supplementary groups (/etc/group member lists) added.
``group_add`` is Compose's ``group_add`` (names or numbers), resolved the same way.

Why the care with paths: the image is untrusted.  Its /etc/passwd may be a symlink to
``/../../../etc/shadow`` or a FIFO; reading must never leave the rootfs nor block.  Files
are opened with openat2(RESOLVE_IN_ROOT) where the kernel has it (5.6+), else by walking
the path one component at a time with O_PATH|O_NOFOLLOW and resolving each symlink against
the rootfs ourselves.
"""
from __future__ import annotations

import ctypes
import errno
import os
import stat
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from pystack.errors import UserError

MAX_FILE = 4 << 20      # refuse to parse giant passwd/group files
MAX_ID = (1 << 31) - 1
MAX_LINKS = 40

_SYS_OPENAT2 = 437      # same number on every architecture (unified syscall table)
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_IN_ROOT = 0x10


@dataclass
class ExecUser:
    """What the container's process runs as."""

    uid: int
    gid: int
    additional_gids: list[int] = field(default_factory=list)
    home: str = "/"
    name: str | None = None

    def to_oci(self) -> dict:
        """The OCI ``process.user`` object."""
        out: dict = {"uid": self.uid, "gid": self.gid}
        if self.additional_gids:
            out["additionalGids"] = list(self.additional_gids)
        return out


# ---------------------------------------------------------------------------------------
# safe open inside a root

class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


_openat2_works: bool | None = None


def _openat2(rootfd: int, path: str) -> int:
    """openat2(RESOLVE_IN_ROOT); raises OSError(ENOSYS) when unavailable."""
    global _openat2_works
    if _openat2_works is False:
        raise OSError(errno.ENOSYS, "openat2 unavailable")
    libc = ctypes.CDLL("libc.so.6", use_errno=True)  # not find_library: it runs ldconfig
    libc.syscall.restype = ctypes.c_long
    how = _OpenHow(os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK, 0,
                   _RESOLVE_IN_ROOT | _RESOLVE_NO_MAGICLINKS)
    fd = libc.syscall(ctypes.c_long(_SYS_OPENAT2), ctypes.c_int(rootfd),
                      ctypes.c_char_p(os.fsencode(path)), ctypes.byref(how),
                      ctypes.c_size_t(ctypes.sizeof(how)))
    if fd < 0:
        err = ctypes.get_errno()
        if err in (errno.ENOSYS, errno.EPERM) and _openat2_works is None:
            _openat2_works = False   # old kernel, or a seccomp profile without openat2
            raise OSError(errno.ENOSYS, "openat2 unavailable")
        raise OSError(err, os.strerror(err), path)
    _openat2_works = True
    return fd


def _walk(rootfd: int, path: str) -> int:
    """Component-by-component resolution of ``path`` with ``rootfd`` as "/": ``..`` stops
    at the root, absolute symlinks restart at the root, never a step outside."""
    parts = deque(p for p in path.split("/") if p not in ("", "."))
    stack = [os.dup(rootfd)]
    links = 0
    try:
        while parts:
            comp = parts.popleft()
            if comp == "..":
                if len(stack) > 1:
                    os.close(stack.pop())
                continue
            fd = os.open(comp, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=stack[-1])
            st = os.fstat(fd)
            if stat.S_ISLNK(st.st_mode):
                target = os.readlink(comp, dir_fd=stack[-1])
                os.close(fd)
                links += 1
                if links > MAX_LINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
                if target.startswith("/"):
                    while len(stack) > 1:
                        os.close(stack.pop())
                parts.extendleft(reversed([p for p in target.split("/") if p not in ("", ".")]))
                continue
            if parts:
                if not stat.S_ISDIR(st.st_mode):
                    os.close(fd)
                    raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
                stack.append(fd)
                continue
            try:
                return os.open(f"/proc/self/fd/{fd}",
                               os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
            finally:
                os.close(fd)
        return os.open(f"/proc/self/fd/{stack[-1]}", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        for d in stack:
            os.close(d)


def open_in_root(rootfs: str | Path, path: str, *, use_openat2: bool = True) -> int | None:
    """An fd for reading the regular file ``path`` of the container, or None if it does
    not exist there (or is not a regular file: a FIFO or device must not be read)."""
    rootfd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            if not use_openat2:
                raise OSError(errno.ENOSYS, "openat2 not wanted")
            fd = _openat2(rootfd, path)
        except OSError as exc:
            if exc.errno == errno.ENOSYS:
                fd = _walk(rootfd, path)
            else:
                raise
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EXDEV,
                         errno.ENXIO):
            return None
        raise
    finally:
        os.close(rootfd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd


def read_in_root(rootfs: str | Path, path: str, *, use_openat2: bool = True) -> str | None:
    """Text of a small regular file inside ``rootfs`` (None when absent)."""
    fd = open_in_root(rootfs, path, use_openat2=use_openat2)
    if fd is None:
        return None
    try:
        os.set_blocking(fd, True)
        data = os.read(fd, MAX_FILE + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_FILE:
        raise UserError(f"{path} in the image is larger than {MAX_FILE} bytes")
    return data.decode("utf-8", "replace")


# ---------------------------------------------------------------------------------------
# parsing and resolution

def _parse(text: str | None, min_fields: int) -> list[list[str]]:
    rows = []
    for line in (text or "").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        cols = line.split(":")
        if len(cols) >= min_fields:
            rows.append(cols)
    return rows


def _int(text: str) -> int | None:
    try:
        v = int(text)
    except ValueError:
        return None
    return v if 0 <= v <= MAX_ID else None


def _numeric(text: str, what: str) -> int | None:
    """Numeric id, or None for a name; out-of-range numbers are an error."""
    if text.isdigit():
        v = int(text)
        if v > MAX_ID:
            raise UserError(f"{what} {text} is out of range (0..{MAX_ID})")
        return v
    return None


def resolve_user(rootfs: str | Path, user: str | None, group_add: Iterable[str | int] = (),
                 *, use_openat2: bool = True) -> ExecUser:
    """Resolve ``user`` for a container whose root filesystem is ``rootfs``."""
    spec = (user or "").strip()
    user_arg, _, group_arg = spec.partition(":")
    passwd = _parse(read_in_root(rootfs, "/etc/passwd", use_openat2=use_openat2), 7)
    groups_text: str | None = None

    def groups() -> list[list[str]]:
        nonlocal groups_text
        if groups_text is None:
            groups_text = read_in_root(rootfs, "/etc/group", use_openat2=use_openat2) or ""
        return _parse(groups_text, 3)

    result = ExecUser(uid=0, gid=0, home="/")
    matched_name: str | None = None
    if user_arg:
        uid = _numeric(user_arg, "uid")
        entry = None
        for cols in passwd:
            if (uid is None and cols[0] == user_arg) or (uid is not None and _int(cols[2]) == uid):
                entry = cols
                break
        if entry is not None:
            result.uid = _int(entry[2]) or 0
            result.gid = _int(entry[3]) or 0
            result.home = entry[5] or "/"
            result.name = matched_name = entry[0]
        elif uid is not None:
            result.uid = uid
        else:
            raise UserError(f"unable to find user {user_arg}: no matching entries in passwd file")
    elif group_arg == "" and spec:
        raise UserError(f"invalid user {spec!r}")
    else:
        for cols in passwd:  # root's HOME and supplementary groups
            if _int(cols[2]) == 0:
                result.home = cols[5] or "/"
                result.name = matched_name = cols[0]
                break

    if group_arg:
        gid = _numeric(group_arg, "gid")
        found = None
        for cols in groups():
            if (gid is None and cols[0] == group_arg) or (gid is not None and _int(cols[2]) == gid):
                found = cols
                break
        if found is not None:
            result.gid = _int(found[2]) or 0
        elif gid is not None:
            result.gid = gid
        else:
            raise UserError(f"unable to find group {group_arg}: no matching entries in group file")
    elif matched_name is not None:
        for cols in groups():
            members = [m.strip() for m in cols[3].split(",")] if len(cols) > 3 else []
            g = _int(cols[2])
            if matched_name in members and g is not None and g not in result.additional_gids:
                result.additional_gids.append(g)

    for extra in group_add:
        text = str(extra)
        gid = _numeric(text, "gid")
        if gid is None:
            for cols in groups():
                if cols[0] == text:
                    gid = _int(cols[2])
                    break
            if gid is None:
                raise UserError(f"unable to find group {text}: no matching entries in group file")
        if gid not in result.additional_gids:
            result.additional_gids.append(gid)
    return result


def with_home(env: list[str], home: str) -> list[str]:
    """``env`` plus ``HOME=<home>`` unless it already sets HOME (runc does the same)."""
    if any(e.startswith("HOME=") for e in env):
        return list(env)
    return list(env) + [f"HOME={home}"]
