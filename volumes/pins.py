"""Pin checked mount sources as bind mounts the runtime can mount from by path.

A source opened as an ``O_PATH`` fd (safepath.py) cannot be handed to runc as
``/proc/<pid>/fd/<n>``: runc mounts from inside the container's new mount namespace, and
the kernel refuses (EINVAL) to bind a mount that belongs to another namespace. So the fd
is bind-mounted, from this process, onto a staging point the engine alone owns:

    <pin root>/<container-id>.<random>/<n>       (pin root: run_root()/volumes/pins, 0700;
                                                  each <container-id>.<random> is a tiny tmpfs)

The staging path cannot be redirected (no one else can write there) and names the very
inode that was checked. Once the runtime has created the container (its mount namespace
holds its own copies), ``close()`` detaches the staging mounts. After a crash,
``cleanup_pins`` removes whatever is left.
"""
from __future__ import annotations

import os
import secrets
import shutil
import stat
from pathlib import Path

from pystack.volumes import _sys


def default_pin_root() -> Path:
    from pystack.paths import run_root

    return run_root() / "volumes" / "pins"


class PinSet:
    """The staging mounts of one plan. Not thread-safe; one per container create."""

    def __init__(self, pin_root: Path, container_id: str) -> None:
        self.pin_root = Path(pin_root)
        self.container_id = container_id
        self.dir: Path | None = None
        self.mounted: list[str] = []

    def _ensure_dir(self) -> Path:
        if self.dir is None:
            self.pin_root.mkdir(parents=True, exist_ok=True)
            os.chmod(self.pin_root, 0o700)
            d = self.pin_root / f"{self.container_id}.{secrets.token_hex(4)}"
            d.mkdir(mode=0o700)
            # a small tmpfs holds the staging points: close() is then one detach of the whole
            # subtree (each umount waits for an RCU grace period, ~5 ms) and no disk rmdirs
            _sys.mount("tmpfs", str(d), "tmpfs", _sys.MS_NOSUID | _sys.MS_NODEV | _sys.MS_NOEXEC,
                       "size=64k,mode=0700")
            self.dir = d
        return self.dir

    def pin(self, fd: int) -> str:
        """Bind-mount the inode behind ``fd`` (with its sub-mounts) on a fresh staging point."""
        target = self._ensure_dir() / str(len(self.mounted))
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            target.mkdir(mode=0o700)
        else:
            target.touch(mode=0o600)
        _sys.mount(f"/proc/self/fd/{fd}", str(target), None, _sys.MS_BIND | _sys.MS_REC)
        self.mounted.append(str(target))
        return str(target)

    def close(self) -> None:
        """Detach the staging mounts and remove their directory (the container keeps its copies)."""
        if self.dir is not None:
            try:
                _sys.umount(str(self.dir), _sys.MNT_DETACH)  # the tmpfs and every pin under it
            except OSError:
                for target in reversed(self.mounted):  # not ours any more? detach one by one
                    try:
                        _sys.umount(target, _sys.MNT_DETACH)
                    except OSError:
                        pass
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
        self.mounted.clear()


def cleanup_pins(pin_root: Path | None = None) -> int:
    """After an engine crash: detach every staging mount under ``pin_root``; returns how many."""
    root = str(pin_root or default_pin_root())
    count = 0
    from pystack.volumes.local_driver import mount_points

    points = mount_points()
    for mp in sorted(points, key=len, reverse=True):
        if mp.startswith(root + "/"):
            try:
                _sys.umount(mp, _sys.MNT_DETACH)
                count += 1
            except OSError:
                pass
    if os.path.isdir(root):
        for entry in os.listdir(root):
            shutil.rmtree(os.path.join(root, entry), ignore_errors=True)
    return count
