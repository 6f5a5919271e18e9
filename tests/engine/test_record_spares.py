"""A removed container's folder is kept as a spare and reused by the next create (no new
inodes): emptied first, never mistaken for a record, deleted when it cannot be reused."""
from __future__ import annotations

import os

from pystack.engine.records import ContainerRecord, RecordStore, new_id, now_rfc3339


def make(name: str) -> ContainerRecord:
    return ContainerRecord(id=new_id(), name=name, created=now_rfc3339(), image="busybox",
                           image_id="sha256:" + "0" * 64, config={}, host_config={})


def populate(store: RecordStore, rec: ContainerRecord) -> None:
    store.add(rec)
    d = store.dir(rec.id)
    for sub in ("upper", "work", "rootfs"):
        (d / sub).mkdir()
    (d / "upper" / "etc").mkdir()
    (d / "upper" / "etc" / "written").write_text("by the container")
    for name in ("hostname", "hosts", "resolv.conf", "config.json", f"{rec.id}-json.log"):
        (d / name).write_text("x")


def test_removed_folder_is_reused_empty(tmp_path) -> None:
    root = tmp_path / "containers"
    store = RecordStore(root)
    old = make("old")
    populate(store, old)
    keep = (root / old.id / "hosts").stat().st_ino
    store.remove(old.id)
    assert not (root / old.id).exists()
    assert [r.id for r in RecordStore(root)] == []          # a spare is no record
    new = make("new")
    assert RecordStore(root).make_dir(new.id) is True       # found by a new store too
    d = root / new.id
    assert sorted(os.listdir(d)) == ["config.json", "hostname", "hosts", "record.json", "resolv.conf",
                                     "rootfs", "upper", "work"]
    assert os.listdir(d / "upper") == []
    assert (d / "hosts").stat().st_ino == keep and (d / "hosts").read_text() == ""
    assert (d / "record.json").read_text() == ""
    assert [r.id for r in RecordStore(root)] == []          # still no record until one is saved
    store2 = RecordStore(root)
    assert store2.make_dir(make("other").id) is False       # no spare left: a new folder


def test_files_a_container_may_share_are_not_reused(tmp_path) -> None:
    root = tmp_path / "containers"
    store = RecordStore(root)
    store.keep_files = lambda: False
    rec = make("shared")
    populate(store, rec)
    ino = (root / rec.id / "hosts").stat().st_ino
    store.remove(rec.id)
    spare = store.spare_root / rec.id
    assert not (spare / "hosts").exists() and (spare / "config.json").exists()
    assert ino  # (the old hosts file is gone with its inode: mounts keep their content)


def test_incomplete_folder_is_deleted(tmp_path) -> None:
    root = tmp_path / "containers"
    store = RecordStore(root)
    rec = make("half")
    store.add(rec)                                          # no upper/work/rootfs
    store.remove(rec.id)
    assert not (root / rec.id).exists()
    assert not store.spare_root.exists() or not any(store.spare_root.iterdir())


def test_saves_reuse_the_replaced_records_inode(tmp_path) -> None:
    root = tmp_path / "containers"
    store = RecordStore(root)
    rec = make("saver")
    store.add(rec)
    d = root / rec.id
    first = (d / "record.json").stat().st_ino
    rec.state = {"Status": "running"}
    store.save(rec)
    assert (d / "record.json.tmp").stat().st_ino == first   # kept for the next save
    second = (d / "record.json").stat().st_ino
    rec.state = {"Status": "exited"}
    store.save(rec)
    assert {(d / "record.json").stat().st_ino, (d / "record.json.tmp").stat().st_ino} == {first, second}
    assert not (d / "record.json.prev").exists()
    assert RecordStore(root).get(rec.id).state == {"Status": "exited"}


def test_reused_upper_is_a_new_root(tmp_path) -> None:
    """The upper dir is the container's ``/``: what the last container did to ``/`` itself
    (chmod, chown, xattrs, overlay marks) does not reach the next one."""
    root = tmp_path / "containers"
    store = RecordStore(root)
    old = make("old")
    populate(store, old)
    upper = root / old.id / "upper"
    os.chmod(upper, 0o700)
    os.chown(upper, 1234, 5678)
    os.utime(upper, (1, 1))
    os.setxattr(upper, "user.mark", b"1")
    os.setxattr(upper, "trusted.overlay.opaque", b"y")
    store.remove(old.id)
    new = make("new")
    assert store.make_dir(new.id) is True
    st = (root / new.id / "upper").stat()
    assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o755, 0, 0)
    assert st.st_mtime > 1
    assert os.listxattr(root / new.id / "upper") == []
