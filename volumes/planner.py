"""Docker Engine API mount descriptions -> OCI runtime-spec ``mounts`` entries.

Input is what a container-create body carries: ``HostConfig.Binds`` (short strings),
``HostConfig.Mounts`` (long form), ``HostConfig.Tmpfs``, ``HostConfig.VolumesFrom``
(resolved by the engine to the other containers' mount points) and the image's
``Config.Volumes``. Output is a :class:`MountPlan`: the OCI mounts (a list of dicts, in
the order to mount them, parents first) plus what ``docker inspect`` shows as ``Mounts``.

Every bind source (a host path, a volume's ``_data`` or a subpath of it) is opened once
into an ``O_PATH`` fd, and that inode is bind-mounted onto a staging point only the engine
can write to (pins.py); the OCI entry's ``source`` is that staging path, so the mount is
made from the checked inode whatever happens to the user's path afterwards. The caller
keeps the plan open until the runtime has created the container (``runc create``
returned), then closes it (the staging mounts are detached; the container keeps its own).
Pass ``pin=False`` to get plain paths instead (a bundle to run later, by hand).

Volumes are created when missing (as Docker does; ``external`` is checked by the compose
layer before), recorded as used by ``container_id``, and filled by copy-up when new.
"""
from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from pystack.errors import NotFound, UserError
from pystack.volumes import safepath
from pystack.volumes.pins import PinSet, default_pin_root
from pystack.volumes.copyup import ImageRootfs, copy_up
from pystack.volumes.store import VolumeStore, validate_container_id, validate_name

PROPAGATIONS = {"shared", "rshared", "slave", "rslave", "private", "rprivate"}
CONSISTENCY = {"consistent", "cached", "delegated", "default"}  # macOS-only in Docker: no effect
SELINUX = {"z", "Z"}  # relabelling: no SELinux here, accepted with no effect
TMPFS_DEFAULTS = ["noexec", "nosuid", "nodev"]  # moby daemon/oci_linux.go
_NEGATIONS = {"exec": "noexec", "suid": "nosuid", "dev": "nodev", "rw": "ro"}


@dataclass
class _Entry:
    """One mount before it is turned into OCI: the shape of an inspect MountPoint plus extras."""

    type: str  # bind | volume | tmpfs
    destination: str
    source: str = ""  # host path (bind) or volume name (volume)
    rw: bool = True
    propagation: str = ""
    mode: str = ""  # the mode string as given (for inspect)
    create_source: bool = False
    nocopy: bool = False
    subpath: str = ""
    volume_labels: dict[str, str] = field(default_factory=dict)
    driver: str = "local"
    driver_opts: dict[str, str] = field(default_factory=dict)
    tmpfs_options: list[str] = field(default_factory=list)
    non_recursive: bool = False
    origin: str = ""  # for error messages: "Binds[0]", "Mounts[1]", "image VOLUME /data"


class MountPlan(list):
    """The OCI mounts (this list itself) plus inspect records, and the staging mounts that
    pin sources.

    A context manager: leaving it detaches the staging mounts (do that once the runtime
    has created the container).
    """

    def __init__(self, pins: PinSet | None = None) -> None:
        super().__init__()
        self.points: list[dict[str, Any]] = []  # docker inspect .Mounts
        self.volumes: list[str] = []  # volumes recorded as used by this container
        self.created_volumes: list[str] = []  # volumes this plan created (to undo on failure)
        self.new_users: list[str] = []  # volumes this plan added container_id to (undo on failure)
        self.pins = pins

    def pin(self, fd: int) -> str:
        """Pin ``fd``'s inode on a staging mount, close ``fd``, return the staging path."""
        try:
            assert self.pins is not None
            return self.pins.pin(fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        """Detach the staging mounts: the runtime has mounted (or will never mount) them."""
        if self.pins is not None:
            self.pins.close()

    def __enter__(self) -> "MountPlan":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _no_nul(value: str, origin: str) -> str:
    if "\x00" in value:
        raise UserError(f"{origin}: a path cannot contain a NUL byte")
    return value


def _destination(raw: str, origin: str) -> str:
    _no_nul(raw or "", origin)
    if not raw or not raw.startswith("/"):
        raise UserError(f"{origin}: invalid mount target {raw!r}: must be an absolute path")
    dest = posixpath.normpath(raw)
    if dest.startswith("//"):
        dest = "/" + dest.lstrip("/")
    if dest == "/":
        raise UserError(f"{origin}: invalid mount target {raw!r}: destination can't be '/'")
    if dest == "/proc" or dest.startswith("/proc/"):
        raise UserError(f"{origin}: invalid mount target {raw!r}: mounts on /proc are refused")
    return dest


def parse_bind(spec: str, index: int = 0) -> _Entry:
    """One ``HostConfig.Binds`` string: ``SRC:DST[:MODE]`` (SRC a host path or volume name)."""
    origin = f"Binds[{index}] {spec!r}"
    parts = _no_nul(spec, origin).split(":")
    if len(parts) == 1:
        return _Entry("volume", _destination(parts[0], origin), origin=origin)
    if len(parts) > 3 or not parts[0]:
        raise UserError(f"{origin}: invalid volume specification")
    src, dst = parts[0], parts[1]
    mode = parts[2] if len(parts) == 3 else ""
    entry = _Entry("bind" if src.startswith("/") else "volume", _destination(dst, origin), source=src,
                   mode=mode, create_source=True, origin=origin)
    for opt in filter(None, mode.split(",")):
        if opt in ("ro", "rw"):
            entry.rw = opt == "rw"
        elif opt in PROPAGATIONS:
            entry.propagation = opt
        elif opt == "nocopy":
            entry.nocopy = True
        elif opt in SELINUX or opt in CONSISTENCY:
            pass  # accepted with no effect (see README)
        else:
            raise UserError(f"{origin}: invalid mode: {opt}")
    if entry.type == "volume":
        validate_name(src)
        if entry.propagation:
            raise UserError(f"{origin}: propagation modes are not supported for named volumes")
    elif entry.nocopy:
        raise UserError(f"{origin}: nocopy is only valid for volumes")
    return entry


def parse_mount(m: Mapping[str, Any], index: int = 0) -> _Entry:
    """One ``HostConfig.Mounts`` object (Type bind|volume|tmpfs); malformed JSON is a UserError."""
    if not isinstance(m, Mapping):
        raise UserError(f"Mounts[{index}]: expected an object, got {type(m).__name__}")
    try:
        return _parse_mount(m, index)
    except (TypeError, ValueError, AttributeError) as exc:  # wrong JSON types in a field
        raise UserError(f"Mounts[{index}]: malformed mount ({exc})") from None


def _parse_mount(m: Mapping[str, Any], index: int) -> _Entry:
    kind = m.get("Type") or ""
    origin = f"Mounts[{index}] ({kind} {m.get('Target', '')})"
    if kind not in ("bind", "volume", "tmpfs"):
        raise UserError(f"{origin}: mount type {kind!r} is not supported (bind, volume, tmpfs)")
    entry = _Entry(kind, _destination(m.get("Target") or m.get("Destination") or "", origin),
                   source=_no_nul(m.get("Source") or "", origin), rw=not m.get("ReadOnly", False), origin=origin)
    bind_o, vol_o, tmp_o = m.get("BindOptions"), m.get("VolumeOptions"), m.get("TmpfsOptions")
    if bind_o and kind != "bind":
        raise UserError(f"{origin}: BindOptions given for a {kind} mount")
    if vol_o and kind != "volume":
        raise UserError(f"{origin}: VolumeOptions given for a {kind} mount")
    if tmp_o and kind != "tmpfs":
        raise UserError(f"{origin}: TmpfsOptions given for a {kind} mount")
    if kind == "bind":
        if not entry.source.startswith("/"):
            raise UserError(f"{origin}: bind source must be an absolute path, got {entry.source!r}")
        bind_o = bind_o or {}
        prop = bind_o.get("Propagation") or ""
        if prop and prop not in PROPAGATIONS:
            raise UserError(f"{origin}: invalid propagation {prop!r}")
        entry.propagation = prop
        entry.create_source = bool(bind_o.get("CreateMountpoint"))
        entry.non_recursive = bool(bind_o.get("NonRecursive"))
    elif kind == "volume":
        vol_o = vol_o or {}
        if entry.source:
            validate_name(entry.source)
        entry.nocopy = bool(vol_o.get("NoCopy"))
        entry.subpath = vol_o.get("Subpath") or ""
        entry.volume_labels = dict(vol_o.get("Labels") or {})
        driver_cfg = vol_o.get("DriverConfig") or {}
        entry.driver = driver_cfg.get("Name") or "local"
        entry.driver_opts = dict(driver_cfg.get("Options") or {})
        if entry.subpath and (entry.subpath.startswith("/") or ".." in entry.subpath.split("/")):
            raise safepath.UnsafePath(f"{origin}: volume subpath {entry.subpath!r} escapes the volume")
    else:
        if entry.source:
            raise UserError(f"{origin}: a tmpfs mount takes no Source")
        tmp_o = tmp_o or {}
        if tmp_o.get("SizeBytes"):
            size = int(tmp_o["SizeBytes"])
            if size < 0:
                raise UserError(f"{origin}: invalid tmpfs size {size}")
            entry.tmpfs_options.append(f"size={_size(size)}")
        if tmp_o.get("Mode"):
            entry.tmpfs_options.append(f"mode={int(tmp_o['Mode']) & 0o7777:o}")
        for opt in tmp_o.get("Options") or []:
            entry.tmpfs_options.append("=".join(str(x) for x in opt) if isinstance(opt, (list, tuple)) else str(opt))
    if entry.subpath:
        _no_nul(entry.subpath, origin)
    if kind == "tmpfs":
        _checked_tmpfs(entry.tmpfs_options, origin)
    return entry


def _checked_tmpfs(options: list[str], origin: str) -> None:
    try:
        tmpfs_options(options)
    except UserError as exc:
        raise UserError(f"{origin}: {exc}") from None


def _size(n: int) -> str:
    for suffix, unit in (("g", 1 << 30), ("m", 1 << 20), ("k", 1 << 10)):
        if n % unit == 0:
            return f"{n // unit}{suffix}"
    return str(n)


TMPFS_KEYS = {"size", "mode", "uid", "gid", "nr_inodes", "nr_blocks", "huge", "mpol"}
TMPFS_FLAGS = {"exec", "noexec", "suid", "nosuid", "dev", "nodev", "ro", "rw", "atime", "noatime", "relatime",
               "norelatime", "strictatime", "nostrictatime", "diratime", "nodiratime", "sync", "async",
               "dirsync", "mand", "nomand"} | PROPAGATIONS


def tmpfs_options(data: Iterable[str], read_only: bool = False) -> list[str]:
    """Docker's defaults (noexec,nosuid,nodev) merged with the user's, later wins.

    Each option is checked: one known flag or ``key=value`` per item, so an item such as
    ``size=1m,exec`` cannot smuggle a second option into the kernel's comma-separated data.
    """
    merged: dict[str, str] = {}
    for opt in [*TMPFS_DEFAULTS, *data, *(["ro"] if read_only else [])]:
        opt = opt.strip()
        if not opt:
            continue
        key = opt.split("=", 1)[0]
        if "," in opt or "\x00" in opt or ("=" in opt and key not in TMPFS_KEYS) or \
                ("=" not in opt and opt not in TMPFS_FLAGS):
            raise UserError(f"invalid tmpfs option {opt!r}")
        base = next((b for b, neg in _NEGATIONS.items() if key in (b, neg)), key)
        merged.pop(base, None)
        merged[base] = opt
    return list(merged.values())


def parse_volumes_from(spec: str) -> tuple[str, str]:
    """One ``HostConfig.VolumesFrom`` string, ``container[:ro|rw]`` -> (container, mode).

    The engine resolves the container and passes its recorded mount points to
    :func:`plan_mounts` as ``volumes_from=[(points, mode)]``.
    """
    name, _, mode = spec.partition(":")
    if not name:
        raise UserError(f"VolumesFrom {spec!r}: a container name is needed")
    if mode not in ("", "ro", "rw"):
        raise UserError(f"VolumesFrom {spec!r}: invalid mode {mode!r} (ro or rw)")
    return name, mode


def _volumes_from_entries(volumes_from: Sequence[Any]) -> list[_Entry]:
    """Entries copied from other containers' inspect ``Mounts`` (volumes and binds, not tmpfs)."""
    out = []
    for item in volumes_from:
        points, mode = (item.get("Mounts", []), item.get("Mode", "")) if isinstance(item, Mapping) else item
        if mode not in ("", "ro", "rw"):
            raise UserError(f"VolumesFrom: invalid mode {mode!r} (ro or rw)")
        for p in points:
            kind = p.get("Type")
            if kind not in ("volume", "bind"):
                continue
            rw = bool(p.get("RW", True)) if mode == "" else mode == "rw"
            out.append(_Entry(kind, p["Destination"], source=p.get("Name") if kind == "volume" else p["Source"],
                              rw=rw, propagation=p.get("Propagation") or "", mode=p.get("Mode") or "",
                              subpath=p.get("Subpath", ""), nocopy=True, origin=f"VolumesFrom {p['Destination']}"))
    return out


def collect(binds: Sequence[str] | None, mounts: Sequence[Mapping[str, Any]] | None,
            tmpfs: Mapping[str, str] | None, volumes_from: Sequence[Any] | None,
            image_volumes: Iterable[str] | None) -> list[_Entry]:
    """Merge every source of mounts with Docker's precedence; duplicates are an error."""
    explicit: dict[str, _Entry] = {}
    for i, spec in enumerate(binds or []):
        e = parse_bind(spec, i)
        if e.destination in explicit:
            raise UserError(f"{e.origin}: duplicate mount point: {e.destination}")
        explicit[e.destination] = e
    for i, m in enumerate(mounts or []):
        e = parse_mount(m, i)
        if e.destination in explicit:
            raise UserError(f"{e.origin}: duplicate mount point: {e.destination}")
        explicit[e.destination] = e
    for dst, data in (tmpfs or {}).items():
        origin = f"Tmpfs {dst}"
        e = _Entry("tmpfs", _destination(dst, origin), tmpfs_options=[o for o in (data or "").split(",") if o],
                   origin=origin)
        _checked_tmpfs(e.tmpfs_options, origin)
        if e.destination in explicit:
            raise UserError(f"{origin}: duplicate mount point: {e.destination}")
        explicit[e.destination] = e
    result = dict(explicit)
    for e in _volumes_from_entries(volumes_from or []):
        result.setdefault(e.destination, e)  # explicit mounts win over inherited ones
    for raw in image_volumes or []:
        dst = _destination(raw, f"image VOLUME {raw}")
        result.setdefault(dst, _Entry("volume", dst, origin=f"image VOLUME {raw}"))
    # Docker mounts parents before children (sorted by path depth), stable otherwise
    return sorted(result.values(), key=lambda e: e.destination.rstrip("/").count("/"))


def plan_mounts(container_id: str, binds: Sequence[str] | None = None,
                mounts: Sequence[Mapping[str, Any]] | None = None, tmpfs: Mapping[str, str] | None = None,
                volumes_from: Sequence[Any] | None = None, image_volumes: Iterable[str] | None = None,
                store: VolumeStore | None = None, image_rootfs: ImageRootfs = None, *,
                pin: bool = True, pin_root: Path | None = None) -> MountPlan:
    """Turn a container's mount descriptions into OCI mounts; see the module docstring.

    On any error nothing is left behind: volumes this call created are removed, use
    records it added are dropped, fds are closed.
    """
    validate_container_id(container_id)  # it names a staging directory and use records
    entries = collect(binds, mounts, tmpfs, volumes_from, image_volumes)
    if store is None and any(e.type == "volume" for e in entries):
        raise UserError("volume mounts need a volume store")
    plan = MountPlan(PinSet(pin_root or default_pin_root(), container_id) if pin else None)
    try:
        for e in entries:
            if e.type == "tmpfs":
                _plan_tmpfs(plan, e)
            elif e.type == "bind":
                _plan_bind(plan, e, pin)
            else:
                assert store is not None
                _plan_volume(plan, e, container_id, store, image_rootfs, pin)
    except BaseException:
        plan.close()
        if store is not None:
            for name in plan.new_users:
                store.release(name, container_id)
            for name in plan.created_volumes:
                store.remove(name, force=True)
        raise
    return plan


def _propagation(e: _Entry) -> str:
    return e.propagation or "rprivate"


def _plan_tmpfs(plan: MountPlan, e: _Entry) -> None:
    opts = tmpfs_options(e.tmpfs_options, read_only=not e.rw)
    plan.append({"destination": e.destination, "type": "tmpfs", "source": "tmpfs",
                 "options": [*opts, "rprivate"]})
    plan.points.append({"Type": "tmpfs", "Source": "", "Destination": e.destination, "Mode": "",
                        "RW": e.rw, "Propagation": ""})


def _bind_options(e: _Entry) -> list[str]:
    opts = ["bind" if e.non_recursive else "rbind", _propagation(e)]
    if not e.rw:
        opts.append("ro")
    return opts


def _plan_bind(plan: MountPlan, e: _Entry, pin: bool) -> None:
    if not os.path.lexists(e.source):
        if not e.create_source:
            raise NotFound(f"{e.origin}: bind source path does not exist: {e.source}")
        os.makedirs(e.source, mode=0o755, exist_ok=True)  # Docker's short syntax creates it
    source = e.source
    if pin:
        source = plan.pin(safepath.open_host_path(e.source, what=e.origin))
    plan.append({"destination": e.destination, "type": "bind", "source": source, "options": _bind_options(e)})
    plan.points.append({"Type": "bind", "Source": e.source, "Destination": e.destination, "Mode": e.mode,
                        "RW": e.rw, "Propagation": _propagation(e)})


def _plan_volume(plan: MountPlan, e: _Entry, cid: str, store: VolumeStore, image_rootfs: ImageRootfs,
                 pin: bool) -> None:
    # a re-plan for the same container (restart) must not drop its use record on failure
    was_user = bool(e.source) and store.exists(e.source) and cid in store.users(e.source)
    if e.origin.startswith("VolumesFrom"):
        if not store.exists(e.source):
            raise NotFound(f"{e.origin}: no such volume: {e.source}")
        rec = store.acquire(e.source, cid)
    else:
        rec, created = store.acquire_or_create(e.source or None, cid, e.driver, e.driver_opts, e.volume_labels)
        if created:
            plan.created_volumes.append(rec.name)
    plan.volumes.append(rec.name)
    if not was_user:
        plan.new_users.append(rec.name)
    data_fd = (safepath.open_host_path(rec.data_path, what=f"volume {rec.name}") if rec.options.kind == "bind"
               else safepath.open_dir(rec.data_path))
    fd = data_fd
    try:
        if e.subpath:
            fd = safepath.open_beneath(data_fd, e.subpath, what=f"{e.origin}: volume subpath {e.subpath!r}")
            os.close(data_fd)
        real = safepath.fd_real_path(fd)
        if not e.nocopy and image_rootfs is not None:
            copy_up(image_rootfs, e.destination, f"/proc/self/fd/{fd}", store.root / ".scratch")
    except BaseException:
        os.close(fd)  # the subpath's fd, or the volume's when the subpath failed
        raise
    if pin:
        source = plan.pin(fd)
    else:
        os.close(fd)
        source = real
    opts = ["rbind", _propagation(e)] + ([] if e.rw else ["ro"])
    plan.append({"destination": e.destination, "type": "bind", "source": source, "options": opts})
    point = {"Type": "volume", "Name": rec.name, "Source": real, "Destination": e.destination,
             # dockerd reports "z" for a volume given (Binds or Mounts) without a mode (oracle test)
             "Driver": rec.driver,
             "Mode": e.mode or ("z" if e.origin.startswith(("Binds", "Mounts")) else ""),
             "RW": e.rw, "Propagation": ""}
    if e.subpath:
        point["Subpath"] = e.subpath
    plan.points.append(point)
