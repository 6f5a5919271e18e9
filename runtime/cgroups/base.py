"""Behaviour shared by both drivers on top of their primitives (``oom_kill_count``,
``oom_eventfd``): the OOM flag and a waitable OOM event source."""
from __future__ import annotations

import os
import select


class OomWatcher:
    """Readable (``fileno()``) when the kernel OOM-kills something in the cgroup.

    v1: an eventfd registered on memory.oom_control; v2: inotify on memory.events.
    ``wait(timeout)`` returns True once a new OOM kill has been counted since creation.
    Usable from a selector loop: on readability call ``check()``."""

    def __init__(self, cgroup) -> None:
        self.cgroup = cgroup
        self.baseline = cgroup.oom_kill_count()
        self.fd = cgroup.oom_eventfd()

    def fileno(self) -> int:
        return self.fd

    def check(self) -> bool:
        """Drain the fd and say whether the OOM-kill count went up."""
        try:
            if self.cgroup.version == 1:
                os.set_blocking(self.fd, False)
                os.read(self.fd, 8)
            else:
                from pystack.runtime.cgroups.inotify import drain

                drain(self.fd)
        except (BlockingIOError, OSError):
            pass
        return self.cgroup.oom_kill_count() > self.baseline

    def wait(self, timeout: float | None = None) -> bool:
        """Block until an OOM kill is seen (True) or ``timeout`` passes (False)."""
        if self.cgroup.oom_kill_count() > self.baseline:
            return True
        ready, _, _ = select.select([self.fd], [], [], timeout)
        return bool(ready) and self.check()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> "OomWatcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class CgroupMixin:
    """Methods every driver gets from its primitives."""

    def oom_killed(self) -> bool:
        """Whether the kernel has OOM-killed any process of this (per-container) cgroup:
        the ``OOMKilled`` flag of ``docker inspect``."""
        return self.oom_kill_count() > 0  # type: ignore[attr-defined]

    def oom_watcher(self) -> OomWatcher:
        """A waitable OOM event source (see :class:`OomWatcher`); close it when done."""
        return OomWatcher(self)
