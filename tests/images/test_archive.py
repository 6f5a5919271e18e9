"""Archives against real tools: what pystack saves, skopeo and umoci read (files match);
what skopeo writes (docker-archive, OCI layout), pystack loads (files match)."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from pystack.runtime.images.store import ImageStore

from .helpers import run_cli


def _diff(a: Path, b: Path) -> None:
    r = subprocess.run(["diff", "-r", "--no-dereference", str(a), str(b)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[:3000] + r.stderr[:1000]


def _umoci_unpack(oci_dir: Path, tag: str, dest: Path) -> Path:
    subprocess.run(["umoci", "unpack", "--image", f"{oci_dir}:{tag}", str(dest)], check=True, capture_output=True)
    return dest / "rootfs"


def test_save_is_read_by_skopeo_and_umoci(env, store: ImageStore, busybox, busybox_rootfs: Path,
                                          tmp_path: Path) -> None:
    out = tmp_path / "bb.tar"
    r = run_cli(["image", "save", "-o", str(out), "busybox:latest"], env)
    assert r.returncode == 0, r.stderr
    info = json.loads(subprocess.run(["skopeo", "inspect", f"docker-archive:{out}"], check=True,
                                     capture_output=True).stdout)
    assert info["Layers"] == [l["digest"] for l in busybox.layers] or info["Layers"] == \
        busybox.config["rootfs"]["diff_ids"]
    oinfo = json.loads(subprocess.run(["skopeo", "inspect", f"oci-archive:{out}:latest"], check=True,
                                      capture_output=True).stdout)
    assert oinfo["Digest"] == busybox.manifest_digest
    for transport in (f"docker-archive:{out}", f"oci-archive:{out}:latest"):
        oci = tmp_path / f"oci-{transport.split(':')[0]}"
        subprocess.run(["skopeo", "copy", transport, f"oci:{oci}:bb"], check=True, capture_output=True)
        _diff(busybox_rootfs, _umoci_unpack(oci, "bb", tmp_path / f"unpacked-{transport.split(':')[0]}"))


def test_load_what_skopeo_writes(env, store: ImageStore, busybox, busybox_rootfs: Path, tmp_path: Path) -> None:
    saved = tmp_path / "bb.tar"
    store.save(["busybox:latest"], saved)
    dockerarch, ocidir = tmp_path / "skopeo-docker.tar", tmp_path / "skopeo-oci"
    subprocess.run(["skopeo", "copy", f"docker-archive:{saved}", f"docker-archive:{dockerarch}:other/bb:2"],
                   check=True, capture_output=True)
    subprocess.run(["skopeo", "copy", f"docker-archive:{saved}", f"oci:{ocidir}:docker.io/other/oci:3"],
                   check=True, capture_output=True)
    fresh = ImageStore(tmp_path / "fresh")
    [a] = fresh.load(dockerarch)
    assert a.repo_tags == ["other/bb:2"] and a.config["rootfs"] == busybox.config["rootfs"]
    _diff(busybox_rootfs, fresh.prepare(a)[0])
    [b] = fresh.load(ocidir)  # an OCI layout directory
    assert b.id == a.id and b.repo_tags == ["other/bb:2", "other/oci:3"]  # same image, two names
    _diff(busybox_rootfs, fresh.prepare(b)[0])
    # and the CLI prints docker's lines
    r = run_cli(["image", "load", "-i", str(saved)], env)
    assert r.returncode == 0 and r.stdout.decode() == "Loaded image: busybox:latest\n", r.stderr


def test_save_to_stdout_and_load_from_stdin(env, busybox, tmp_path: Path) -> None:
    r = run_cli(["image", "save", "busybox"], env)
    assert r.returncode == 0 and r.stdout[:512].count(b"oci-layout") == 1
    env2 = {**env, "PYSTACK_ROOT": str(tmp_path / "other")}
    r2 = run_cli(["image", "load"], env2, input=r.stdout)
    assert r2.returncode == 0, r2.stderr
    assert r2.stdout == b"Loaded image: busybox:latest\n"
    assert json.loads(run_cli(["image", "inspect", "busybox"], env2).stdout)[0]["Id"] == busybox.id


@pytest.mark.skipif(subprocess.run(["which", "docker"], capture_output=True).returncode != 0, reason="no docker CLI")
def test_saved_archive_layout_matches_docker_save_shape(busybox, store: ImageStore, tmp_path: Path) -> None:
    """docker load reads manifest.json (Config, RepoTags, Layers); check the shape it needs."""
    import tarfile
    out = tmp_path / "x.tar"
    store.save(["busybox"], out)
    with tarfile.open(out) as tf:
        names = set(tf.getnames())
        manifest = json.load(tf.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert manifest[0]["RepoTags"] == ["busybox:latest"]
    assert {manifest[0]["Config"], *manifest[0]["Layers"], "index.json", "oci-layout"} <= names


def test_compressed_archive_and_truncated_one(env, store: ImageStore, busybox, tmp_path: Path) -> None:
    import gzip

    from .helpers import store_files
    saved = tmp_path / "bb.tar"
    store.save(["busybox"], saved)
    packed = tmp_path / "bb.tar.gz"
    packed.write_bytes(gzip.compress(saved.read_bytes(), 1))
    fresh = ImageStore(tmp_path / "fresh")
    assert fresh.load(packed)[0].id == busybox.id
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(packed.read_bytes()[: packed.stat().st_size // 2])
    r = run_cli(["image", "load", "-i", str(cut)], {**env, "PYSTACK_ROOT": str(tmp_path / "other")})
    err = r.stderr.decode()
    assert r.returncode != 0 and "corrupt compressed archive" in err and len(err.strip().splitlines()) == 1, err
    assert store_files(tmp_path / "other" / "images") == {"blobs": [], "layers": [], "images": [], "tmp": [],
                                                          "refs": []}


def test_malformed_archives_are_one_line(env, tmp_path: Path) -> None:
    from .helpers import store_files
    cases = {"manifest.json": b'[{"Layers": []}]', "index.json": b'{"manifests": [{"digest": 5}]}'}
    for name, content in cases.items():
        layout = tmp_path / name.replace(".", "-")
        layout.mkdir()
        (layout / name).write_bytes(content)
        r = run_cli(["image", "load", "-i", str(layout)], env)
        err = r.stderr.decode()
        assert r.returncode != 0 and "malformed" in err and "Traceback" not in err, err
    assert store_files(Path(env["PYSTACK_ROOT"]) / "images")["images"] == []
