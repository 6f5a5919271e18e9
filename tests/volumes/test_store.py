"""VolumeStore: names, drivers, users, prune, and the local driver's tmpfs/bind options."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from pystack.errors import Conflict, NotFound, UserError
from pystack.volumes.local_driver import is_mounted
from pystack.volumes.store import ANON_LABEL, VolumeStore


def test_create_layout_and_inspect(store: VolumeStore) -> None:
    rec = store.create("proj_data", labels={"com.docker.compose.project": "proj"})
    assert rec.mountpoint == str(store.root / "proj_data" / "_data")
    assert os.path.isdir(rec.mountpoint)
    api = store.get("proj_data").to_api()
    assert api["Name"] == "proj_data" and api["Driver"] == "local" and api["Scope"] == "local"
    assert api["Labels"] == {"com.docker.compose.project": "proj"}
    assert api["Mountpoint"] == rec.mountpoint
    assert oct(os.stat(store.root).st_mode & 0o777) == "0o700"


def test_create_is_idempotent_and_keeps_data(store: VolumeStore) -> None:
    rec = store.create("keep")
    Path(rec.mountpoint, "f").write_bytes(b"payload")
    again = store.create("keep", labels={"other": "x"})
    assert again.labels == {} and Path(again.mountpoint, "f").read_bytes() == b"payload"


@pytest.mark.parametrize("bad", ["../etc", "a/b", "a", "..", "/abs", "-x", ".hidden", "x y", ""])
def test_bad_names_refused_without_touching_disk(store: VolumeStore, bad: str) -> None:
    if bad == "":  # empty means anonymous, not an error
        assert store.create(bad).anonymous
        return
    with pytest.raises(UserError, match="too short" if bad == "a" else "invalid characters"):
        store.create(bad)
    assert not (store.root.parent / "etc").exists()
    assert [r.name for r in store.list()] == []


def test_anonymous_volume_name_and_label(store: VolumeStore) -> None:
    rec = store.create()
    assert len(rec.name) == 64 and int(rec.name, 16) >= 0
    assert rec.labels == {ANON_LABEL: ""} and rec.anonymous


def test_unsupported_driver_and_opts_are_clear(store: VolumeStore) -> None:
    with pytest.raises(UserError, match="driver 'nfsplugin' is not supported"):
        store.create("v1", driver="nfsplugin")
    with pytest.raises(UserError, match="type 'nfs' is not supported"):
        store.create("v2", driver_opts={"type": "nfs", "o": "addr=1.2.3.4", "device": ":/x"})
    with pytest.raises(UserError, match="needs o: bind"):
        store.create("v3", driver_opts={"type": "none", "device": "/tmp"})
    with pytest.raises(UserError, match="not supported by the local driver"):
        store.create("v4", driver_opts={"colour": "blue"})
    with pytest.raises(UserError, match="needs device"):  # dockerd: missing required option "device"
        store.create("v5", driver_opts={"type": "tmpfs"})
    assert store.list() == []


def test_missing_volume_is_not_found(store: VolumeStore) -> None:
    with pytest.raises(NotFound, match="no such volume: ghost"):
        store.get("ghost")
    with pytest.raises(NotFound):
        store.remove("ghost")
    store.remove("ghost", force=True)


def test_remove_refused_while_in_use_even_forced(store: VolumeStore) -> None:
    store.create("busy")
    store.acquire("busy", "c1")
    store.acquire("busy", "c2")
    with pytest.raises(Conflict, match=r"volume is in use - \[c1, c2\]"):
        store.remove("busy", force=True)
    store.release("busy", "c1")
    with pytest.raises(Conflict, match=r"\[c2\]"):
        store.remove("busy")
    assert store.release_container("c2") == ["busy"]
    store.remove("busy")
    assert not (store.root / "busy").exists()


def test_users_survive_a_new_store_object_and_sync_drops_dead_ones(store: VolumeStore) -> None:
    store.create("shared")
    store.acquire("shared", "alive")
    store.acquire("shared", "dead")
    fresh = VolumeStore(store.root)  # an engine restart: state is on disk
    assert fresh.users("shared") == ["alive", "dead"]
    fresh.sync_users({"alive"})
    assert fresh.users("shared") == ["alive"]


def test_prune_anonymous_only_unless_all(store: VolumeStore) -> None:
    anon_unused = store.create().name
    anon_used = store.create().name
    store.acquire(anon_used, "c1")
    store.create("named")
    removed, _ = store.prune()
    assert removed == [anon_unused]
    removed, _ = store.prune(all=True)
    assert removed == ["named"]
    assert [r.name for r in store.list()] == [anon_used]


def test_list_filters(store: VolumeStore) -> None:
    store.create("web_data", labels={"com.docker.compose.project": "web"})
    store.create("db_data", labels={"com.docker.compose.project": "db", "tier": "x"})
    store.acquire("db_data", "c1")
    names = lambda f: [r.name for r in store.list(f)]  # noqa: E731
    assert names({"label": ["com.docker.compose.project=web"]}) == ["web_data"]
    assert names({"label": ["tier"]}) == ["db_data"]
    assert names({"name": ["web"]}) == ["web_data"]
    assert names({"dangling": ["true"]}) == ["web_data"]
    assert names({"dangling": ["false"]}) == ["db_data"]
    with pytest.raises(UserError, match="invalid filter"):
        store.list({"colour": ["red"]})


def test_tmpfs_volume_mounted_by_first_user_unmounted_after_last(store: VolumeStore, no_leaks) -> None:
    rec = store.create("fast", driver_opts={"type": "tmpfs", "device": "tmpfs", "o": "size=4m,mode=0770"})
    assert not is_mounted(rec.mountpoint)
    store.acquire("fast", "c1")
    store.acquire("fast", "c2")
    assert is_mounted(rec.mountpoint)
    st = os.statvfs(rec.mountpoint)
    assert st.f_blocks * st.f_frsize == 4 << 20
    assert oct(os.stat(rec.mountpoint).st_mode & 0o7777) == "0o770"
    Path(rec.mountpoint, "x").write_text("temp")
    store.release("fast", "c1")
    assert Path(rec.mountpoint, "x").read_text() == "temp"
    store.release("fast", "c2")
    assert not is_mounted(rec.mountpoint)
    assert not Path(rec.mountpoint, "x").exists()
    store.remove("fast")
    no_leaks()


def test_bind_device_volume_uses_the_host_directory(store: VolumeStore, tmp_path: Path) -> None:
    device = tmp_path / "hostdir"
    with pytest.raises(UserError, match="no such directory"):
        store.create("bound", driver_opts={"type": "none", "o": "bind", "device": str(device)})
    device.mkdir()
    (device / "f").write_text("host data")
    rec = store.create("bound", driver_opts={"type": "none", "o": "bind", "device": str(device)})
    assert rec.data_path == str(device)
    store.remove("bound")
    assert (device / "f").read_text() == "host data"  # removing the volume never deletes the device


def test_rm_v_removes_only_unshared_anonymous_volumes(store: VolumeStore) -> None:
    anon = store.create().name
    shared_anon = store.create().name
    store.create("named")
    for name in (anon, shared_anon, "named"):
        store.acquire(name, "c1")
    store.acquire(shared_anon, "c2")  # e.g. volumes_from
    assert sorted(store.release_container("c1", remove_anonymous=True)) == sorted([anon, shared_anon, "named"])
    assert not store.exists(anon)
    assert store.exists(shared_anon) and store.users(shared_anon) == ["c2"]
    assert store.exists("named")


def _worker(root: str, n: int, seed: int) -> list[str]:
    """Creates anonymous volumes and holds them, while others prune: none may vanish."""
    from pystack.volumes.store import VolumeStore as VS

    store, held = VS(root), []
    for i in range(n):
        rec, _ = store.acquire_or_create(None, f"w{seed}-{i}")
        held.append(rec.name)
        store.prune()
    return [name for name in held if not store.exists(name)]


def test_concurrent_processes_never_lose_a_used_volume(store: VolumeStore) -> None:
    """create+acquire is one locked step: a prune in another process can never remove a fresh
    volume in between (the race an unlocked create-then-acquire would have)."""
    import multiprocessing

    store.create("warmup")
    ctx = multiprocessing.get_context("spawn")  # no fork of a threaded pytest
    with ctx.Pool(4) as pool:
        lost = pool.starmap(_worker, [(str(store.root), 20, s) for s in range(4)])
    assert lost == [[], [], [], []]
    assert len([r for r in store.list() if r.anonymous]) == 80


def test_new_volume_is_visible_only_with_its_user_recorded(store: VolumeStore, monkeypatch) -> None:
    """A kill right after the rename that publishes a new volume must not leave an anonymous
    volume without a user: the user file is in place before the volume becomes visible."""
    import pystack.volumes.store as store_mod

    seen: list[list[str]] = []
    real_rename = os.rename

    def rename(src, dst):
        if Path(src).name.startswith(".new-"):
            seen.append(sorted(p.name for p in (Path(src) / "users").iterdir()))
        return real_rename(src, dst)

    monkeypatch.setattr(store_mod.os, "rename", rename)
    cid = "c" * 64
    rec, created = store.acquire_or_create(None, cid)
    assert created and rec.users == [cid]
    assert seen == [[cid]]
    store.create("plain")  # no user: nothing recorded
    assert seen[-1] == [] and store.get("plain").users == []


def test_rm_v_forgets_and_removes_in_one_step(store: VolumeStore, monkeypatch) -> None:
    """``rm -v``: the anonymous volume goes with its last user's record, with no window in
    which it exists unused (a kill there used to leak it); a shared one only loses the user."""
    a, b = "a" * 64, "b" * 64
    only, _ = store.acquire_or_create(None, a)
    shared, _ = store.acquire_or_create(None, a)
    store.acquire(shared.name, b)
    monkeypatch.setattr(VolumeStore, "release", lambda *args: pytest.fail("two-step release"))
    assert sorted(store.release_container(a, remove_anonymous=True)) == sorted([only.name, shared.name])
    assert not store.exists(only.name)
    assert store.get(shared.name).users == [b]
