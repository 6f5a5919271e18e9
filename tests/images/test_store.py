"""The store end to end: the busybox test image via the CLI, tags, rm, prune, prepare
(with a real overlay mount of the prepared layers), and concurrent writers."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pystack.errors import Conflict
from pystack.runtime.images.errors import ImageNotFound
from pystack.runtime.images.store import ImageStore

from .helpers import entry, gz, make_tar, oci_layout, run_cli, store_files


def test_cli_import_busybox_then_ls_inspect(env, busybox_rootfs: Path) -> None:
    r = run_cli(["image", "import", str(busybox_rootfs), "busybox:latest", "--change", 'CMD ["sh"]',
                 "-c", "ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin", "-c", "EXPOSE 80", "-c", "WORKDIR /root"], env)
    assert r.returncode == 0, r.stderr
    image_id = r.stdout.decode().strip()
    assert image_id.startswith("sha256:") and len(image_id) == 71
    ls = run_cli(["image", "ls"], env).stdout.decode().splitlines()
    assert ls[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert ls[1].split()[:3] == ["busybox", "latest", image_id[7:19]]
    doc = json.loads(run_cli(["image", "inspect", "busybox"], env).stdout)[0]
    assert doc["Id"] == image_id and doc["RepoTags"] == ["busybox:latest"]
    assert doc["Config"] == {"Cmd": ["sh"], "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
                             "ExposedPorts": {"80/tcp": {}}, "WorkingDir": "/root"}
    assert run_cli(["image", "inspect", "-f", "{{.Config.Cmd}}", image_id[7:19]], env).stdout == b"[sh]\n"
    # the unpacked layer is the rootfs, file for file
    lower = doc["GraphDriver"]["Data"]["LowerDir"]
    diff = subprocess.run(["diff", "-r", "--no-dereference", str(busybox_rootfs), lower], capture_output=True,
                          text=True)
    assert diff.returncode == 0, diff.stdout[:2000]
    # the same rootfs imported as a tarball gives the same layer content (same diff_id)
    tarball = Path(env["PYSTACK_ROOT"]).parent / "rootfs.tar"
    subprocess.run(["tar", "-C", str(busybox_rootfs), "-cf", str(tarball), "."], check=True)
    r2 = run_cli(["image", "import", str(tarball), "bb2"], env)
    assert r2.returncode == 0, r2.stderr
    assert json.loads(run_cli(["image", "inspect", "bb2"], env).stdout)[0]["RootFS"]["Layers"]


def test_user_mistakes_are_one_line(env) -> None:
    for args, text in ([["image", "inspect", "nope"], "No such image: nope"],
                       [["image", "rm", "nope:1"], "No such image: nope:1"],
                       [["image", "tag", "nope", "x"], "No such image: nope"],
                       [["image", "import", "/does/not/exist", "x"], "no such file or directory"],
                       [["image", "import", "/", "UPPER:1"], "invalid reference format"],
                       [["image", "import", "/dev/null", "x", "-c", "FROM x"], "unsupported instruction"],
                       [["image", "load", "-i", "/dev/null"], "not an image archive"],
                       [["image", "load", "-i", "/nonexistent.tar"], "no such file"],
                       [["image", "save", "-o", "/nonexistent/dir/x.tar", "nope"], "No such image: nope"],
                       [["image", "push", "nope:1"], "No such image: nope:1"],
                       [["image", "pull", "--platform", "linux", "x"], "invalid platform"]):
        r = run_cli(args, env)
        err = r.stderr.decode()
        assert r.returncode != 0 and text in err and "Traceback" not in err, (args, err)
        assert len(err.strip().splitlines()) == 1, err


def test_tag_rm_prune(store: ImageStore, busybox) -> None:
    store.tag("busybox", "localhost:5000/team/bb:v1")
    assert store.resolve("localhost:5000/team/bb:v1").id == busybox.id
    assert sorted(store.resolve(busybox.id).repo_tags) == ["busybox:latest", "localhost:5000/team/bb:v1"]
    with pytest.raises(Conflict):  # by id while two tags name it
        store.remove(busybox.short_id)
    assert store.remove("localhost:5000/team/bb:v1") == [{"Untagged": "localhost:5000/team/bb:v1"}]
    layer_dirs = store.prepare(busybox)
    assert all(d.is_dir() for d in layer_dirs)
    out = store.remove("busybox:latest")
    assert {"Deleted": busybox.id} in out
    with pytest.raises(ImageNotFound):
        store.resolve(busybox.id)
    assert not any(d.exists() for d in layer_dirs)  # layers nobody uses go with it
    assert store_files(store.root) == {"blobs": [], "layers": [], "images": [], "tmp": [], "refs": []}


def test_prune_removes_dangling_and_shared_layers_stay(store: ImageStore, tmp_path: Path) -> None:
    base = make_tar([entry("base", data=b"b")])
    top1 = make_tar([entry("one", data=b"1")])
    top2 = make_tar([entry("two", data=b"2")])
    img1 = store.load(oci_layout(tmp_path / "l1", "one:1", [(gz(base), base), (gz(top1), top1)]))[0]
    img2 = store.load(oci_layout(tmp_path / "l2", "two:1", [(gz(base), base), (gz(top2), top2)]))[0]
    assert img1.layers[0]["chain_id"] == img2.layers[0]["chain_id"]  # unpacked once, shared
    assert len(list((store.root / "layers").iterdir())) == 3
    store.remove("two:1")
    assert store.prepare(img1)[-1].joinpath("base").read_text() == "b"
    store.tag("one:1", "keep:me")
    store.remove("one:1")
    assert store.prune()["ImagesDeleted"] is None  # still tagged keep:me: not dangling
    result = store.prune(all=True)
    assert {"Deleted": img1.id} in result["ImagesDeleted"] and result["SpaceReclaimed"] > 0
    assert store_files(store.root)["layers"] == []


def test_prepared_layers_mount_as_overlay(store: ImageStore, tmp_path: Path) -> None:
    """The runtime's use: overlay of prepare()'s dirs; whiteouts and opaque dirs act."""
    low = make_tar([entry("etc", "dir"), entry("etc/hostname", data=b"old"), entry("etc/keep", data=b"k"),
                    entry("data", "dir"), entry("data/gone", data=b"g")])
    up = make_tar([entry("etc", "dir"), entry("etc/.wh.hostname", data=b""), entry("data", "dir"),
                   entry("data/.wh..wh..opq", data=b""), entry("data/new", data=b"n")])
    img = store.load(oci_layout(tmp_path / "layout", "ovl:1", [(gz(low), low), (gz(up), up)]))[0]
    lowers = store.prepare(img)
    assert lowers[0].joinpath("data/new").exists()  # topmost first
    mnt, upper, work = tmp_path / "mnt", tmp_path / "upper", tmp_path / "work"
    for d in (mnt, upper, work):
        d.mkdir()
    opts = f"lowerdir={':'.join(map(str, lowers))},upperdir={upper},workdir={work}"
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(mnt)], check=True)
    try:
        assert sorted(os.listdir(mnt / "etc")) == ["keep"]
        assert sorted(os.listdir(mnt / "data")) == ["new"]
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    # only our own mounts: the host-wide snapshot sees other suites' mounts come and go
    assert not [line for line in Path("/proc/self/mounts").read_text().splitlines()
                if str(tmp_path) in line]


CONCURRENT = r"""
import sys
from pathlib import Path
from pystack.runtime.images.store import ImageStore
s = ImageStore(Path(sys.argv[1]))
for i in range(3):
    s.load(Path(sys.argv[2]))
    s.tag("shared:1", f"p{sys.argv[3]}-{i}:1")
"""


def test_concurrent_processes_share_the_store(store: ImageStore, tmp_path: Path) -> None:
    tars = [make_tar([entry(f"f{n}-{i}", data=os.urandom(20000)) for i in range(50)]) for n in range(3)]
    layout = oci_layout(tmp_path / "layout", "shared:1", [(gz(t), t) for t in tars])
    procs = [subprocess.Popen([sys.executable, "-c", CONCURRENT, str(store.root), str(layout), str(n)])
             for n in range(4)]
    assert [p.wait(120) for p in procs] == [0] * 4
    images = store.list()
    assert len(images) == 1
    assert len(images[0].repo_tags) == 1 + 4 * 3
    assert len(list((store.root / "layers").iterdir())) == 3
    assert store_files(store.root)["tmp"] == []
    for d, t in zip(reversed(store.prepare(images[0])), tars):
        assert len(os.listdir(d)) == 50


def test_import_of_hostile_tarball_leaves_nothing(env, store: ImageStore, tmp_path: Path) -> None:
    tarball = tmp_path / "evil.tar"
    tarball.write_bytes(make_tar([entry("l", "symlink", link=str(tmp_path)), entry("l/pwned", data=b"x")]))
    r = run_cli(["image", "import", str(tarball), "evil:1"], env)
    err = r.stderr.decode()
    assert r.returncode != 0 and "import evil:1 layer 1/1" in err and "symlink" in err, err
    assert not (tmp_path / "pwned").exists()
    assert store_files(store.root) == {"blobs": [], "layers": [], "images": [], "tmp": [], "refs": []}


def test_leftovers_of_a_killed_process_are_collected(store: ImageStore, busybox, tmp_path: Path) -> None:
    """SIGKILL mid-unpack leaves layers/.tmp-*, mid-write tmp/w-*: prune removes them."""
    stale_layer = store.root / "layers" / ".tmp-deadbeef" / "diff"
    stale_layer.mkdir(parents=True)
    (stale_layer / "half").write_text("x")
    (store.blobs.tmp / "w-deadbeef").write_bytes(b"half a blob")
    partial = store.blobs.partial_path("sha256:" + "a" * 64)
    partial.write_bytes(b"resumable")
    old = store.blobs.partial_path("sha256:" + "b" * 64)
    old.write_bytes(b"stale")
    os.utime(old, (0, 0))
    store.prune()
    assert not stale_layer.parent.exists() and not (store.blobs.tmp / "w-deadbeef").exists()
    assert partial.exists() and not old.exists()
    assert store.prepare(busybox)[0].joinpath("bin/busybox").exists()


def test_ls_filters(env, store: ImageStore, busybox, busybox_rootfs: Path) -> None:
    store.import_rootfs(busybox_rootfs, "labelled:1", ["LABEL team=core tier=db"])
    untagged = store.import_rootfs(busybox_rootfs, None, ["LABEL x=y"])

    def ids(*filters: str) -> set[str]:
        args = ["image", "ls", "-q", "--no-trunc"] + [a for f in filters for a in ("--filter", f)]
        r = run_cli(args, env)
        assert r.returncode == 0, r.stderr
        return set(r.stdout.decode().split())
    labelled = store.resolve("labelled:1").id
    assert ids("dangling=true") == {untagged.id}
    assert ids("label=team=core") == {labelled}
    assert ids("label=team", "label=tier=db") == {labelled}
    assert ids("reference=busy*") == {busybox.id}
    assert ids("dangling=false") == {busybox.id, labelled}
    r = run_cli(["image", "ls", "--filter", "colour=red"], env)
    assert r.returncode != 0 and b"invalid filter" in r.stderr


def test_history(env, store: ImageStore, busybox) -> None:
    r = run_cli(["image", "history", "busybox"], env)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.decode().splitlines()
    assert lines[0].split()[:2] == ["IMAGE", "CREATED"]
    assert lines[1].startswith(busybox.short_id) and "pystack image import" in lines[1] and "2.4" in lines[1]
    rows = [json.loads(x) for x in run_cli(["image", "history", "--format", "json", "busybox"], env).stdout.splitlines()]
    assert [r["Id"] for r in rows] == [busybox.short_id] and rows[0]["Size"] == busybox.size


def test_layers_dir_spreads_layer_dirs_on_ext4(tmp_path: Path) -> None:
    """layers/ carries ext4's top-of-hierarchy flag (chattr +T), as lsattr shows it, so
    that layer dirs are not allocated among a busy group's recently freed inodes."""
    import shutil as sh
    if sh.which("lsattr") is None:
        pytest.skip("no lsattr")
    store = ImageStore(tmp_path / "s")
    r = subprocess.run(["lsattr", "-d", str(store.layers_dir)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"file system without attribute flags: {r.stderr.strip()}")
    assert "T" in r.stdout.split()[0], r.stdout
    ImageStore(tmp_path / "s")  # opening it again keeps it (and does not fail)
    r2 = subprocess.run(["lsattr", "-d", str(store.layers_dir)], capture_output=True, text=True)
    assert r2.stdout == r.stdout
