"""Docker's ``local`` volume driver options: what is accepted, and the host mounts they need.

Supported, as in Docker: no options (a plain directory), ``type: tmpfs`` (a tmpfs mounted
on the volume's ``_data`` while at least one container uses it, so its content is gone
when the last one stops, exactly like Docker), and ``type: none`` + ``o: bind`` +
``device: /host/dir`` (the host directory *is* the volume's data). Anything else (nfs,
cifs, a block device) is refused with a clear message instead of being half-supported.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

from pystack.errors import UserError

ALLOWED_KEYS = {"type", "o", "device"}
# tmpfs mount options a user may pass in `o` (others, e.g. `exec`, are accepted by the kernel
# but we keep to what is meaningful for a volume).
TMPFS_KEYS = {"size", "mode", "uid", "gid", "nr_inodes", "nr_blocks", "huge", "mpol"}
TMPFS_FLAGS = {"rw", "ro", "exec", "noexec", "suid", "nosuid", "dev", "nodev", "atime", "noatime",
               "relatime", "strictatime", "sync", "async"}


@dataclass(frozen=True)
class LocalOptions:
    """Parsed driver_opts. ``kind`` is ``dir``, ``tmpfs`` or ``bind``."""

    kind: str
    o: str = ""
    device: str = ""

    @property
    def needs_host_mount(self) -> bool:
        """tmpfs volumes are mounted on the host at first use and unmounted after the last."""
        return self.kind == "tmpfs"


def parse_opts(name: str, opts: dict[str, str] | None) -> LocalOptions:
    """Validate ``driver_opts`` for volume ``name``; a clear :class:`UserError` when unsupported."""
    opts = dict(opts or {})
    unknown = sorted(set(opts) - ALLOWED_KEYS)
    if unknown:
        raise UserError(f"volume {name}: driver_opts {', '.join(unknown)} not supported by the local driver "
                        f"(supported: type, o, device)")
    fstype = opts.get("type", "")
    o = opts.get("o", "")
    device = opts.get("device", "")
    if not opts:
        return LocalOptions("dir")
    if fstype == "tmpfs":
        if not device:  # dockerd: `missing required option: "device"`
            raise UserError(f"volume {name}: driver_opts type 'tmpfs' needs device (e.g. device: tmpfs)")
        for item in filter(None, o.split(",")):
            key = item.split("=", 1)[0]
            if key not in TMPFS_KEYS and item not in TMPFS_FLAGS:
                raise UserError(f"volume {name}: tmpfs option {item!r} not supported")
        return LocalOptions("tmpfs", o=o, device=device)
    if fstype == "none":
        flags = set(filter(None, o.split(",")))
        if not flags & {"bind", "rbind"}:
            raise UserError(f"volume {name}: driver_opts type 'none' needs o: bind")
        if flags - {"bind", "rbind", "ro", "rw"}:
            raise UserError(f"volume {name}: bind options {','.join(sorted(flags - {'bind', 'rbind', 'ro', 'rw'}))} "
                            f"not supported")
        if not device:
            raise UserError(f"volume {name}: driver_opts type 'none' with o: bind needs device: /host/path")
        if not os.path.isabs(device):
            raise UserError(f"volume {name}: device {device!r} must be an absolute path")
        return LocalOptions("bind", o=o, device=device)
    if not fstype:
        raise UserError(f"volume {name}: driver_opts need a type (tmpfs, or none with o: bind)")
    raise UserError(f"volume {name}: driver_opts type {fstype!r} is not supported by pystack's local driver "
                    f"(supported: tmpfs, and none with o: bind + device)")


def mount_points() -> list[str]:
    """Every mount point of this process's mount namespace (mountinfo's octal escapes undone)."""
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        return [re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4]) for line in f]


def is_mounted(path: str) -> bool:
    """True when something is mounted exactly on ``path``."""
    return path in mount_points()


def mount_tmpfs(opts: LocalOptions, data_dir: str) -> None:
    """Mount the volume's tmpfs on ``data_dir`` (nosuid,nodev as Docker's local driver defaults)."""
    from pystack.volumes import _sys

    flags = _sys.MS_NOSUID | _sys.MS_NODEV
    data = []
    for item in filter(None, opts.o.split(",")):
        if item == "ro":
            flags |= _sys.MS_RDONLY
        elif item == "noexec":
            flags |= _sys.MS_NOEXEC
        elif "=" in item:
            data.append(item)
    _sys.mount(opts.device or "tmpfs", data_dir, "tmpfs", flags, ",".join(data) or None)


def unmount(data_dir: str) -> None:
    """Detach whatever is mounted on ``data_dir`` (lazy: a straggling open file cannot block it)."""
    from pystack.volumes import _sys

    if is_mounted(data_dir):
        _sys.umount(data_dir)
