"""Snapshots and restores are exact (byte for byte, owners, modes, times, links, xattrs) and
cheap where the filesystem allows (reflink on a loop-mounted XFS), a copy with a note elsewhere."""
from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from pystack.errors import Conflict, NotFound, UserError
from pystack.volumes.snapshot import reflink_supported
from pystack.volumes.store import VolumeStore


def manifest(root: Path) -> dict:
    """Everything a restore must give back, per relative path."""
    out = {}
    groups: dict[int, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            st = p.lstat()
            rel = str(p.relative_to(root))
            entry = {"mode": st.st_mode, "uid": st.st_uid, "gid": st.st_gid}
            if stat.S_ISREG(st.st_mode):
                entry["sha"] = hashlib.sha256(p.read_bytes()).hexdigest()
                entry["mtime"] = st.st_mtime_ns
                entry["link"] = groups.setdefault(st.st_ino, rel)  # hard links point at the first name
                entry["xattr"] = {a: os.getxattr(p, a) for a in os.listxattr(p)}
            elif stat.S_ISLNK(st.st_mode):
                entry["target"] = os.readlink(p)
            elif stat.S_ISDIR(st.st_mode):
                entry["mtime"] = st.st_mtime_ns
            out[rel] = entry
    root_st = root.stat()
    out["."] = {"mode": root_st.st_mode, "uid": root_st.st_uid, "gid": root_st.st_gid}
    return out


def fill(data: Path) -> None:
    (data / "dir/sub").mkdir(parents=True)
    (data / "dir/sub/blob.bin").write_bytes(os.urandom(300_000))
    (data / "empty").write_bytes(b"")
    (data / "tool").write_bytes(b"#!/bin/sh\n")
    os.chmod(data / "tool", 0o4755)
    os.link(data / "dir/sub/blob.bin", data / "hardlink.bin")
    os.symlink("/etc/passwd", data / "abs-link")
    os.symlink("dir/missing", data / "dangling")
    os.mkfifo(data / "fifo")
    os.chown(data / "dir", 1000, 33)
    os.chmod(data / "dir", 0o710)
    os.setxattr(data / "tool", "user.origin", b"test")
    os.utime(data / "empty", ns=(1_000_000_000, 1_500_000_000))
    os.chmod(data, 0o750)
    os.utime(data / "dir/sub", ns=(2_000_000_000, 2_000_000_000))


def mutate(data: Path) -> None:
    (data / "dir/sub/blob.bin").write_bytes(b"overwritten")
    (data / "empty").unlink()
    (data / "new").write_text("added after the snapshot")
    shutil.rmtree(data / "dir/sub")
    os.chmod(data, 0o700)


def roundtrip(store: VolumeStore) -> tuple:
    rec = store.create("db")
    data = Path(rec.mountpoint)
    fill(data)
    before = manifest(data)
    info = store.snapshot("db", "before-migration")
    mutate(data)
    assert manifest(data) != before
    restored = store.restore("db", "before-migration")
    assert manifest(Path(store.get("db").mountpoint)) == before
    return info, restored


def test_snapshot_restore_exact_with_copy_note(store: VolumeStore) -> None:
    info, restored = roundtrip(store)
    if not reflink_supported(str(store.root)):  # ext4 or tmpfs, as on this project's CI
        assert info.method == "copy" and "full copy" in info.note and "no reflink" in info.note
    assert info.files == 3 and info.bytes == 300_000 + 10  # the hard link is one file


@pytest.fixture
def xfs_store(tmp_path: Path):
    """A volume store on a loop-mounted XFS with reflink (what btrfs/XFS hosts have)."""
    if shutil.which("mkfs.xfs") is None:
        pytest.skip("xfsprogs not installed (scripts/install.sh installs it)")
    img, mnt = tmp_path / "xfs.img", tmp_path / "xfs"
    mnt.mkdir()
    with open(img, "wb") as f:
        f.truncate(320 << 20)
    subprocess.run(["mkfs.xfs", "-q", "-m", "reflink=1", str(img)], check=True)
    p = subprocess.run(["mount", "-o", "loop", str(img), str(mnt)], capture_output=True, text=True)
    if p.returncode != 0:  # e.g. a container without loop devices
        pytest.skip(f"cannot loop-mount an XFS image here: {p.stderr.strip()}")
    try:
        yield VolumeStore(mnt / "volumes")
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_snapshot_on_xfs_uses_reflink(xfs_store: VolumeStore) -> None:
    info, restored = roundtrip(xfs_store)
    assert info.method == "reflink" and info.note == ""
    assert restored.method == "reflink"
    # the blocks are shared: a snapshot of 64 MiB costs (almost) no space
    rec = xfs_store.get("db")
    with open(Path(rec.mountpoint) / "big", "wb") as f:
        f.write(os.urandom(1 << 20) * 64)
    os.sync()
    free_before = os.statvfs(rec.mountpoint).f_bfree
    xfs_store.snapshot("db", "big")
    os.sync()
    used = (free_before - os.statvfs(rec.mountpoint).f_bfree) * os.statvfs(rec.mountpoint).f_frsize
    assert used < 8 << 20, f"reflink snapshot used {used} bytes"


def test_snapshot_errors(store: VolumeStore) -> None:
    with pytest.raises(NotFound):
        store.snapshot("nope", "t1")
    store.create("v1")
    store.snapshot("v1", "t1")
    with pytest.raises(Conflict, match="already exists"):
        store.snapshot("v1", "t1")
    with pytest.raises(UserError, match="invalid snapshot tag"):
        store.snapshot("v1", "../../etc")
    with pytest.raises(NotFound, match="no snapshot t2 of volume v1"):
        store.restore("v1", "t2")
    store.acquire("v1", "c1")
    with pytest.raises(Conflict, match="in use"):
        store.restore("v1", "t1")
    store.release("v1", "c1")
    store.create("ram", driver_opts={"type": "tmpfs", "device": "tmpfs"})
    with pytest.raises(UserError, match="tmpfs volume"):
        store.snapshot("ram", "t1")


def test_restore_brings_back_a_removed_volume_and_snapshots_are_listed(store: VolumeStore) -> None:
    rec = store.create("gone", labels={"k": "v"})
    Path(rec.mountpoint, "f").write_text("keep me")
    store.snapshot("gone", "t1")
    store.remove("gone")
    store.restore("gone", "t1")
    rec = store.get("gone")
    assert rec.labels == {"k": "v"} and Path(rec.mountpoint, "f").read_text() == "keep me"
    assert [(s["volume"], s["tag"]) for s in store.snapshots()] == [("gone", "t1")]
    store.remove_snapshot("gone", "t1")
    assert store.snapshots("gone") == []


def test_restore_into_bind_device_volume(store: VolumeStore, tmp_path: Path) -> None:
    dev = tmp_path / "dev"
    dev.mkdir()
    (dev / "a").write_text("original")
    store.create("bound", driver_opts={"type": "none", "o": "bind", "device": str(dev)})
    store.snapshot("bound", "t")
    (dev / "a").write_text("changed")
    (dev / "b").write_text("extra")
    store.restore("bound", "t")
    assert sorted(os.listdir(dev)) == ["a"] and (dev / "a").read_text() == "original"
