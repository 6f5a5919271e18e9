"""The planner's parsing and Docker's rules, and that a failed plan leaves nothing behind."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from pystack.errors import NotFound, UserError
from pystack.volumes.planner import collect, parse_bind, plan_mounts, tmpfs_options
from pystack.volumes.safepath import UnsafePath
from pystack.volumes.store import VolumeStore


@pytest.mark.parametrize("spec,kind,rw,prop", [
    ("/src:/dst", "bind", True, ""),
    ("/src:/dst:ro", "bind", False, ""),
    ("/src:/dst:ro,rshared", "bind", False, "rshared"),
    ("/src:/dst:z", "bind", True, ""),          # SELinux relabel: accepted, no effect
    ("/src:/dst:Z,ro", "bind", False, ""),
    ("/src:/dst:cached", "bind", True, ""),     # consistency: accepted, no effect
    ("vol:/dst:nocopy", "volume", True, ""),
    ("/anon", "volume", True, ""),
])
def test_parse_bind(spec: str, kind: str, rw: bool, prop: str) -> None:
    e = parse_bind(spec)
    assert (e.type, e.rw, e.propagation) == (kind, rw, prop)


@pytest.mark.parametrize("spec,msg", [
    ("/src:/dst:bogus", "invalid mode: bogus"),
    ("/src:relative", "must be an absolute path"),
    ("/src:/", "can't be '/'"),
    ("/src:/proc/sys", "mounts on /proc are refused"),
    ("../x:/dst", "invalid characters"),
    ("/src:/dst:nocopy", "nocopy is only valid for volumes"),
    ("a:b:c:d", "invalid volume specification"),
])
def test_parse_bind_errors(spec: str, msg: str) -> None:
    with pytest.raises(UserError, match=msg):
        parse_bind(spec)


def test_duplicates_and_precedence() -> None:
    with pytest.raises(UserError, match="duplicate mount point: /data"):
        collect(["/a:/data"], [{"Type": "volume", "Source": "v1", "Target": "/data"}], None, None, None)
    with pytest.raises(UserError, match="duplicate mount point: /t"):
        collect(None, [{"Type": "tmpfs", "Target": "/t"}], {"/t": ""}, None, None)
    entries = collect(["/host:/data"], None, None,
                      [([{"Type": "volume", "Name": "other", "Destination": "/data", "RW": True},
                         {"Type": "volume", "Name": "other2", "Destination": "/logs", "RW": True}], "ro")],
                      ["/data", "/cache"])
    by_dest = {e.destination: e for e in entries}
    assert by_dest["/data"].type == "bind"             # explicit wins over volumes_from and image VOLUME
    assert by_dest["/logs"].source == "other2" and not by_dest["/logs"].rw
    assert by_dest["/cache"].type == "volume" and by_dest["/cache"].source == ""


def test_parents_are_mounted_before_children() -> None:
    entries = collect(["/a:/x/y/z", "/b:/x"], None, {"/x/y": ""}, None, None)
    assert [e.destination for e in entries] == ["/x", "/x/y", "/x/y/z"]


def test_unsupported_mount_types() -> None:
    for kind in ("image", "npipe", "cluster", ""):
        with pytest.raises(UserError, match="not supported"):
            collect(None, [{"Type": kind, "Source": "x", "Target": "/x"}], None, None, None)
    with pytest.raises(UserError, match="BindOptions given for a volume mount"):
        collect(None, [{"Type": "volume", "Target": "/x", "BindOptions": {"Propagation": "shared"}}], None, None, None)


def test_tmpfs_options_merge_docker_defaults() -> None:
    assert tmpfs_options([]) == ["noexec", "nosuid", "nodev"]
    assert tmpfs_options(["exec", "size=1m"]) == ["nosuid", "nodev", "exec", "size=1m"]
    assert tmpfs_options(["mode=1777"], read_only=True)[-1] == "ro"


def test_long_tmpfs_size_and_mode() -> None:
    plan = plan_mounts("c1", mounts=[{"Type": "tmpfs", "Target": "/t",
                                      "TmpfsOptions": {"SizeBytes": 3 << 20, "Mode": 0o1770}}])
    assert plan[0] == {"destination": "/t", "type": "tmpfs", "source": "tmpfs",
                       "options": ["noexec", "nosuid", "nodev", "size=3m", "mode=1770", "rprivate"]}


def test_short_bind_creates_missing_source_long_form_refuses(tmp_path: Path) -> None:
    src = tmp_path / "made" / "by" / "docker"
    with plan_mounts("c1", binds=[f"{src}:/d"], pin=False) as plan:
        assert src.is_dir() and plan[0]["source"] == str(src)
    missing = tmp_path / "missing"
    with pytest.raises(NotFound, match="bind source path does not exist"):
        plan_mounts("c1", mounts=[{"Type": "bind", "Source": str(missing), "Target": "/d",
                                   "BindOptions": {"CreateMountpoint": False}}])
    assert not missing.exists()
    with plan_mounts("c1", mounts=[{"Type": "bind", "Source": str(missing), "Target": "/d",
                                    "BindOptions": {"CreateMountpoint": True}}], pin=False):
        assert missing.is_dir()


def test_failed_plan_leaves_nothing(tmp_path: Path, store: VolumeStore, no_leaks) -> None:
    """A subpath that escapes fails the whole plan: nothing mounted, created, recorded or open."""
    fds_before = len(os.listdir("/proc/self/fd"))
    store.create("existing")
    host = tmp_path / "host"
    host.mkdir()
    os.symlink("/etc", Path(store.get("existing").mountpoint) / "link")
    with pytest.raises(UnsafePath, match="escapes"):
        plan_mounts("c1", binds=[f"{host}:/h", "newvol:/n"], store=store, pin_root=tmp_path / "pins",
                    mounts=[{"Type": "volume", "Source": "existing", "Target": "/e",
                             "VolumeOptions": {"Subpath": "link"}}])
    no_leaks()  # nothing mounted under this test's tmp dir (pins, volumes)
    assert not store.exists("newvol")
    assert store.users("existing") == []
    assert list((tmp_path / "pins").iterdir()) == []
    assert len(os.listdir("/proc/self/fd")) == fds_before


@pytest.mark.parametrize("subpath", ["../..", "a/../../x", "/etc"])
def test_subpath_with_dotdot_refused_before_anything(store: VolumeStore, subpath: str) -> None:
    with pytest.raises(UnsafePath, match="escapes"):
        plan_mounts("c1", mounts=[{"Type": "volume", "Source": "v1", "Target": "/e",
                                   "VolumeOptions": {"Subpath": subpath}}], store=store)
    assert not store.exists("v1")


def test_missing_subpath_is_clear(store: VolumeStore) -> None:
    store.create("v1")
    with pytest.raises(UserError, match="volume subpath 'nope': no such file"):
        plan_mounts("c1", mounts=[{"Type": "volume", "Source": "v1", "Target": "/e",
                                   "VolumeOptions": {"Subpath": "nope"}}], store=store)
    assert store.users("v1") == []


def test_volumes_from_unknown_volume(store: VolumeStore) -> None:
    with pytest.raises(NotFound, match="no such volume: gone"):
        plan_mounts("c2", volumes_from=[([{"Type": "volume", "Name": "gone", "Destination": "/d"}], "")],
                    store=store)


def test_failed_replan_keeps_the_existing_use_record(tmp_path: Path, store: VolumeStore) -> None:
    """A restart re-plans the same container: failing then must not make its volume look unused."""
    with plan_mounts("c1", binds=["data:/d"], store=store, pin_root=tmp_path / "pins"):
        pass
    assert store.users("data") == ["c1"]
    with pytest.raises(NotFound):
        plan_mounts("c1", binds=["data:/d"], store=store, pin_root=tmp_path / "pins",
                    mounts=[{"Type": "bind", "Source": str(tmp_path / "gone"), "Target": "/g"}])
    assert store.users("data") == ["c1"]


def test_fallback_walk_without_openat2(tmp_path: Path, monkeypatch) -> None:
    """Kernels before 5.6 have no openat2: the component-wise O_NOFOLLOW walk refuses links and '..'."""
    import errno

    from pystack.volumes import _sys, safepath

    def no_openat2(*args, **kwargs):
        raise OSError(errno.ENOSYS, "openat2 not available")

    monkeypatch.setattr(_sys, "openat2", no_openat2)
    root = tmp_path / "vol"
    (root / "a/b").mkdir(parents=True)
    os.symlink("/etc", root / "a/link")
    rfd = os.open(root, os.O_PATH | os.O_DIRECTORY)
    try:
        fd = safepath.open_beneath(rfd, "a/b", what="subpath")
        assert safepath.fd_real_path(fd) == str(root / "a/b")
        os.close(fd)
        with pytest.raises(UnsafePath, match="symbolic link"):
            safepath.open_beneath(rfd, "a/link/passwd", what="subpath")
        with pytest.raises(UnsafePath, match="'..'"):
            safepath.open_beneath(rfd, "a/../..", what="subpath")
    finally:
        os.close(rfd)
    fd = safepath.open_host_path(str(root / "a/b"), what="bind")
    assert safepath.fd_real_path(fd) == str(root / "a/b")
    os.close(fd)


@pytest.mark.parametrize("cid", ["../x", "a/b", "..", ""])
def test_container_id_cannot_name_a_path(cid: str, store: VolumeStore, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="invalid container id"):
        plan_mounts(cid, binds=[f"{tmp_path}:/h"], store=store, pin_root=tmp_path / "pins")
    assert not (tmp_path / "pins").exists() and not (tmp_path / "x").exists()


def test_fuzz_binds_and_names_never_crash() -> None:
    """Any Binds string or volume name gives an entry or one UserError, never another exception,
    and an accepted destination is absolute and normalized."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from pystack.volumes.store import validate_name

    alphabet = st.sampled_from(list("ab/.:,-_ ~zZroswh\x00") + ["..", "rw", "ro", "nocopy", "rshared"])

    @settings(max_examples=400, deadline=None)
    @given(st.lists(alphabet, max_size=12).map("".join))
    def check(spec: str) -> None:
        try:
            e = parse_bind(spec)
        except UserError:
            return
        assert e.destination.startswith("/") and os.path.normpath(e.destination) == e.destination
        assert "\x00" not in e.source
        if e.type == "volume" and e.source:
            validate_name(e.source)
            assert "/" not in e.source and ".." != e.source

    check()


@pytest.mark.parametrize("mount,msg", [
    ({"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"Options": [["size", "1m,exec"]]}}, "invalid tmpfs option"),
    ({"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"Options": [["bogus", "1"]]}}, "invalid tmpfs option"),
    ({"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": "lots"}}, "malformed mount"),
    ({"Type": "bind", "Source": 42, "Target": "/t"}, "malformed mount"),
    ({"Type": "volume", "Target": ["/t"]}, "malformed mount"),
    ({"Type": "volume", "Source": "v1", "Target": "/t", "VolumeOptions": "nocopy"}, "malformed mount"),
])
def test_malformed_mounts_are_one_line(mount, msg) -> None:
    with pytest.raises(UserError, match=msg):
        collect(None, [mount], None, None, None)
    with pytest.raises(UserError, match="Tmpfs /t: invalid tmpfs option 'bogus=2'"):
        collect(None, None, {"/t": "size=1m,bogus=2"}, None, None)
    with pytest.raises(UserError, match="Mounts\\[0\\]: expected an object"):
        collect(None, ["type=bind"], None, None, None)


def test_parse_volumes_from() -> None:
    from pystack.volumes.planner import parse_volumes_from

    assert parse_volumes_from("db") == ("db", "")
    assert parse_volumes_from("proj-db-1:ro") == ("proj-db-1", "ro")
    with pytest.raises(UserError, match="invalid mode 'rx'"):
        parse_volumes_from("db:rx")
    with pytest.raises(UserError, match="container name is needed"):
        parse_volumes_from(":ro")
