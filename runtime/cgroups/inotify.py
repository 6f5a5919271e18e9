"""A minimal inotify watch through ctypes: cgroup v2 signals memory.events changes by
"modified" events, which is how an OOM kill is noticed without polling."""
from __future__ import annotations

import ctypes
import os
from pystack.runtime.cgroups.common import CgPath as Path  # (not pathlib: see CgPath)

IN_MODIFY = 0x00000002
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000


def watch_modify(path: Path) -> int:
    """An inotify fd (non-blocking, close-on-exec) readable whenever ``path`` changes."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)  # not find_library: it runs ldconfig
    fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    if libc.inotify_add_watch(fd, os.fsencode(path), IN_MODIFY) < 0:
        err = ctypes.get_errno()
        os.close(fd)
        raise OSError(err, f"inotify_add_watch {path}: {os.strerror(err)}")
    return fd


def drain(fd: int) -> None:
    """Read and discard pending events (the fd is non-blocking)."""
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass
