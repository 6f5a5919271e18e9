"""Volume snapshots: ``pystack volume snapshot NAME TAG`` / ``restore NAME TAG``.

For test fixtures and risky migrations, so they must be cheap: each file is cloned with
the ``FICLONE`` ioctl (btrfs, XFS with reflink, bcachefs share the blocks until either side
writes), and only where the filesystem cannot share blocks (ext4, tmpfs) is it a full
in-kernel copy, reported with a note. An overlay-based snapshot was considered and not
used: it would tie the live volume to a mount that must exist before every container
start and survive engine crashes, for no gain on the filesystems that have reflink.

Stored under ``<volumes root>/_snapshots/<volume>/<tag>/`` (``data/`` and ``snapshot.json``);
``_`` cannot start a volume name, so this never clashes with a volume.
"""
from __future__ import annotations

import errno
import json
import os
import re
import secrets
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from pystack.errors import Conflict, NotFound, UserError
from pystack.volumes import _sys
from pystack.volumes.copytree import clear_dir, copy_tree
from pystack.volumes.store import NAME_RE, validate_name

if TYPE_CHECKING:
    from pystack.volumes.store import VolumeRecord, VolumeStore

TAG_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")


@dataclass
class SnapshotInfo:
    """What a snapshot or restore did; ``note`` explains a full copy."""

    volume: str
    tag: str
    method: str  # "reflink" or "copy"
    files: int
    bytes: int
    created_at: str
    note: str = ""

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _validate_tag(tag: str) -> str:
    if not isinstance(tag, str) or not TAG_RE.match(tag):
        raise UserError(f"invalid snapshot tag {tag!r}: use [a-zA-Z0-9][a-zA-Z0-9_.-]*")
    return tag


def snapshots_root(store: "VolumeStore") -> Path:
    return store.root / "_snapshots"


def snapshot_dir(store: "VolumeStore", name: str, tag: str) -> Path:
    return snapshots_root(store) / validate_name(name) / _validate_tag(tag)


def reflink_supported(directory: str) -> bool:
    """Probe: can two files in ``directory`` share blocks?"""
    a = os.path.join(directory, f".reflink-probe-{secrets.token_hex(4)}")
    b = a + ".clone"
    try:
        with open(a, "wb") as fa:
            fa.write(b"x" * 4096)
        fsrc = os.open(a, os.O_RDONLY | os.O_CLOEXEC)
        fdst = os.open(b, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            _sys.ficlone(fsrc, fdst)
            return True
        except OSError:
            return False
        finally:
            os.close(fsrc)
            os.close(fdst)
    finally:
        for p in (a, b):
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass


def _note(method: str, directory: str, nbytes: int) -> str:
    if method == "reflink":
        return ""
    return (f"note: {_sys.fs_name(directory)} cannot share blocks (no reflink), so this was a full copy "
            f"of {nbytes} bytes; on btrfs or XFS it would be nearly free")


def _refuse_tmpfs(rec: "VolumeRecord") -> None:
    if rec.options.kind == "tmpfs":
        raise UserError(f"volume {rec.name} is a tmpfs volume: its content lives only while mounted, "
                        f"there is nothing to snapshot or restore")


def take(store: "VolumeStore", rec: "VolumeRecord", tag: str) -> SnapshotInfo:
    """Copy ``rec``'s data to a new snapshot ``tag`` (Conflict if the tag exists)."""
    _refuse_tmpfs(rec)
    dest = snapshot_dir(store, rec.name, tag)
    if dest.exists():
        raise Conflict(f"snapshot {tag} of volume {rec.name} already exists")
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(snapshots_root(store), 0o700)
    tmp = dest.parent / f".new-{tag}-{secrets.token_hex(4)}"
    tmp.mkdir(mode=0o700)
    try:
        (tmp / "data").mkdir()
        method = "reflink" if reflink_supported(str(tmp)) else "copy"
        stats = copy_tree(rec.data_path, str(tmp / "data"), reflink=method == "reflink")
        info = SnapshotInfo(rec.name, tag, method, stats.files, stats.bytes,
                            datetime.now(timezone.utc).isoformat(timespec="seconds"),
                            _note(method, str(tmp), stats.bytes))
        meta = info.to_dict() | {"driver": rec.driver, "driver_opts": rec.driver_opts, "labels": rec.labels}
        (tmp / "snapshot.json").write_text(json.dumps(meta, indent=1))
        try:
            os.rename(tmp, dest)
        except OSError as exc:  # another snapshot of the same tag finished first
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                raise Conflict(f"snapshot {tag} of volume {rec.name} already exists") from None
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return info


def read_meta(store: "VolumeStore", name: str, tag: str) -> dict:
    path = snapshot_dir(store, name, tag) / "snapshot.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise NotFound(f"no snapshot {tag} of volume {name}") from None


def _in_use(rec: "VolumeRecord") -> Conflict:
    return Conflict(f"restore {rec.name}: volume is in use - [{', '.join(rec.users)}] (stop and remove "
                    f"its containers first)")


def restore(store: "VolumeStore", name: str, tag: str) -> SnapshotInfo:
    """Replace the volume's data with the snapshot's (the caller made sure the volume exists).

    A plain volume's new data is copied beside the old without the store lock, then, under
    the lock and only if no container uses the volume by then, swapped in by two renames
    (``recover()`` rolls back a crash between them)."""
    meta = read_meta(store, name, tag)
    rec = store._read(name)
    _refuse_tmpfs(rec)
    if rec.users:
        raise _in_use(rec)
    src = str(snapshot_dir(store, name, tag) / "data")
    if rec.options.kind == "bind":
        # the data is a user's host directory: it cannot be swapped, only emptied and refilled
        with store._lock():
            rec = store._read(name)
            if rec.users:
                raise _in_use(rec)
            method = "reflink" if reflink_supported(rec.data_path) else "copy"
            clear_dir(rec.data_path)
            stats = copy_tree(src, rec.data_path, reflink=method == "reflink")
    else:
        vdir = Path(rec.mountpoint).parent
        staging = vdir / f"_data.restore-{secrets.token_hex(4)}"
        staging.mkdir(mode=0o755)
        old = vdir / f"_data.old-{secrets.token_hex(4)}"
        try:
            method = "reflink" if reflink_supported(str(staging)) else "copy"
            stats = copy_tree(src, str(staging), reflink=method == "reflink")
            with store._lock():
                rec = store._read(name)
                if rec.users:  # a container started meanwhile: its data stays as it is
                    raise _in_use(rec)
                os.rename(rec.mountpoint, old)
                os.rename(staging, rec.mountpoint)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        shutil.rmtree(old, ignore_errors=True)
    return SnapshotInfo(name, tag, method, stats.files, stats.bytes, meta.get("created_at", ""),
                        _note(method, rec.data_path, stats.bytes))


def list_snapshots(store: "VolumeStore", name: str | None = None) -> list[dict]:
    """Snapshot metadata, for one volume or all."""
    root = snapshots_root(store)
    if not root.is_dir():
        return []
    vols = [validate_name(name)] if name else sorted(p.name for p in root.iterdir() if NAME_RE.match(p.name))
    out = []
    for vol in vols:
        vdir = root / vol
        if not vdir.is_dir():
            continue
        for tdir in sorted(vdir.iterdir()):
            if TAG_RE.match(tdir.name) and (tdir / "snapshot.json").exists():
                out.append(json.loads((tdir / "snapshot.json").read_text()))
    return out


def remove(store: "VolumeStore", name: str, tag: str) -> None:
    path = snapshot_dir(store, name, tag)
    if not path.is_dir():
        raise NotFound(f"no snapshot {tag} of volume {name}")
    graveyard = path.parent / f".rm-{tag}-{secrets.token_hex(4)}"
    os.rename(path, graveyard)
    shutil.rmtree(graveyard)
