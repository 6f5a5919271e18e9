"""Pull, push and login against Debian's reference registry (docker-registry) on 127.0.0.1.

Docker Hub cannot be reached from this machine, so Hub-only behaviour (its token server,
its CDN redirects) is reproduced by a token issuer and a proxy written in these tests.
"""
from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path

import pytest

from pystack.runtime.images.errors import DigestMismatch, ImageNotFound, Unauthorized
from pystack.runtime.images.store import ImageStore

from .helpers import OCI_INDEX, OCI_MANIFEST, entry, gz, image_manifest, make_tar, run_cli, sha, store_files
from .registryfix import Proxy, free_port


def _diff(a: Path, b: Path) -> None:
    r = subprocess.run(["diff", "-r", "--no-dereference", str(a), str(b)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[:3000]


def _multilayer(store: ImageStore, tmp_path: Path, name: str = "multi:1"):
    """A 3-layer image (random content, ~1.5 MB) built by the test and loaded into ``store``."""
    from .helpers import oci_layout
    tars = [make_tar([entry(f"l{n}", "dir"), *(entry(f"l{n}/f{i}", data=os.urandom(100_000)) for i in range(5))])
            for n in range(3)]
    return store.load(oci_layout(tmp_path / f"layout-{name.replace(':', '-')}", name,
                                 [(gz(t), t) for t in tars]))[0]


@pytest.mark.slow
def test_push_pull_busybox_and_multilayer_via_cli(env, registry, busybox, busybox_rootfs, store, tmp_path) -> None:
    # chunked uploads (chunk smaller than each layer): the engine pushes, so it is started with the setting
    env = {**env, "PYSTACK_PUSH_CHUNK": "200000"}
    ref = f"{registry.host}/test/busybox:1"
    assert run_cli(["image", "tag", "busybox", ref], env).returncode == 0
    push = run_cli(["image", "push", ref], env)
    assert push.returncode == 0, push.stderr
    out = push.stdout.decode()
    assert "Pushed" in out and f"1: digest: {busybox.manifest_digest}" in out
    assert json.loads(subprocess.run(["skopeo", "inspect", "--tls-verify=false", f"docker://{ref}"],
                                     capture_output=True, check=True).stdout)["Digest"] == busybox.manifest_digest
    # the multi-layer image, with chunked uploads (chunk smaller than each layer)
    multi = _multilayer(store, tmp_path)
    mref = f"{registry.host}/test/multi:2"
    store.tag("multi:1", mref)
    r = run_cli(["image", "push", mref], env)
    assert r.returncode == 0, r.stderr
    again = run_cli(["image", "push", mref], env).stdout.decode()
    assert again.count("Layer already exists") == 4  # 3 layers + config: HEAD says present
    # pull both into a fresh root
    env2 = {**env, "PYSTACK_ROOT": str(tmp_path / "fresh")}
    for name, want in ((ref, busybox), (mref, multi)):
        p = run_cli(["image", "pull", name], env2)
        assert p.returncode == 0, p.stderr
        assert f"Digest: {want.manifest_digest}" in p.stdout.decode()
    fresh = ImageStore(tmp_path / "fresh" / "images")
    got = fresh.resolve(ref)
    assert got.id == busybox.id and got.repo_digests == [f"{registry.host}/test/busybox@{busybox.manifest_digest}"]
    _diff(busybox_rootfs, fresh.prepare(got)[0])
    gm = fresh.resolve(mref)
    assert gm.id == multi.id
    for a, b in zip(fresh.prepare(gm), store.prepare(multi)):
        _diff(a, b)
    # pulling again skips what is there; pulling by digest works
    again = run_cli(["image", "pull", f"{registry.host}/test/multi@{multi.manifest_digest}"], env2)
    assert again.returncode == 0 and again.stdout.decode().count("Already exists") == 3, again.stdout
    same = run_cli(["image", "pull", mref], env2).stdout.decode()
    assert f"Status: Image is up to date for {mref}" in same, same


def test_cross_repository_mount(registry, busybox, store) -> None:
    from pystack.runtime.images.progress import Progress

    class Record(Progress):
        def __init__(self):
            self.lines = []

        def layer(self, key, status, current=None, total=None):
            self.lines.append(status)

    store.tag("busybox", f"{registry.host}/a/bb:1")
    store.push(f"{registry.host}/a/bb:1")
    store.tag("busybox", f"{registry.host}/b/bb:1")
    rec = Record()
    store.push(f"{registry.host}/b/bb:1", progress=rec)
    assert "Mounted from a/bb" in rec.lines


def test_basic_auth_login_logout(env, basic_registry, busybox, store, tmp_path) -> None:
    ref = f"{basic_registry.host}/secret/bb:1"
    store.tag("busybox", ref)
    r = run_cli(["image", "push", ref], env)
    assert r.returncode != 0 and b"authentication required" in r.stderr and b"Traceback" not in r.stderr
    bad = run_cli(["login", basic_registry.host, "-u", "alice", "--password-stdin"], env, input=b"wrong\n")
    assert bad.returncode != 0 and b"unauthorized" in bad.stderr.lower()
    assert not Path(env["DOCKER_CONFIG"], "config.json").exists()
    ok = run_cli(["login", basic_registry.host, "-u", "alice", "--password-stdin"], env, input=b"s3cret\n")
    assert ok.returncode == 0, ok.stderr
    conf = json.loads(Path(env["DOCKER_CONFIG"], "config.json").read_text())
    assert base64.b64decode(conf["auths"][basic_registry.host]["auth"]) == b"alice:s3cret"
    assert run_cli(["image", "push", ref], env).returncode == 0
    env2 = {**env, "PYSTACK_ROOT": str(tmp_path / "fresh")}
    assert run_cli(["image", "pull", ref], env2).returncode == 0
    assert run_cli(["logout", basic_registry.host], env).returncode == 0
    env3 = {**env, "PYSTACK_ROOT": str(tmp_path / "fresh3")}
    r = run_cli(["image", "pull", ref], env3)
    assert r.returncode != 0 and b"authentication required" in r.stderr
    assert store_files(tmp_path / "fresh3" / "images")["images"] == []


def test_bearer_token_flow(env, token_registry, busybox, store, tmp_path) -> None:
    reg, issuer = token_registry
    ref = f"{reg.host}/tok/bb:1"
    store.tag("busybox", ref)
    with pytest.raises(Unauthorized):  # anonymous: the issuer refuses
        store.push(ref)
    assert run_cli(["login", reg.host, "-u", "bob", "-p", "hunter2"], env).returncode == 0
    assert run_cli(["image", "push", ref], env).returncode == 0
    env2 = {**env, "PYSTACK_ROOT": str(tmp_path / "fresh")}
    p = run_cli(["image", "pull", ref], env2)
    assert p.returncode == 0, p.stderr
    # an expired token is fetched again (not reused): expire the cached ones by hand
    from pystack.runtime.images.registry import RegistryClient
    client = RegistryClient(reg.host)
    client.get_manifest("tok/bb", "1")
    seen = len(issuer.requests)
    client.get_manifest("tok/bb", "1")
    assert len(issuer.requests) == seen  # cached while valid
    client._tokens = {k: (v[0], 0.0) for k, v in client._tokens.items()}
    client.get_manifest("tok/bb", "1")
    assert len(issuer.requests) == seen + 1
    # a cross-repository mount asks one token for both repositories
    from pystack.runtime.images.progress import PlainProgress
    import io
    store.tag("busybox", f"{reg.host}/tok/other:1")
    out = io.StringIO()
    store.push(f"{reg.host}/tok/other:1", progress=PlainProgress(out))
    assert "Mounted from tok/bb" in out.getvalue(), out.getvalue()
    assert any(set(r["query"].get("scope", [])) == {"repository:tok/other:pull,push", "repository:tok/bb:pull"}
               for r in issuer.requests)
    scopes = {s for r in issuer.requests for s in r["query"].get("scope", [])}
    assert "repository:tok/bb:pull,push" in scopes and "repository:tok/bb:pull" in scopes
    assert all(r["query"]["service"] == ["pystack-test"] for r in issuer.requests)


@pytest.mark.parametrize("fmt", ["oci", "v2s2"])
def test_multi_platform_index(env, registry, tmp_path, fmt) -> None:
    """An index built by the test (amd64, arm64/v8, arm/v7), pushed with skopeo --all, as an OCI
    index or converted by skopeo to a Docker manifest list (v2s2)."""
    layout = tmp_path / "multi-layout"
    layout.mkdir()
    descs = []
    for arch, variant in (("amd64", None), ("arm64", "v8"), ("arm", "v7")):
        tar = make_tar([entry("arch", data=f"{arch}{variant or ''}".encode())])
        manifest, _ = image_manifest(layout, [(gz(tar), tar)], arch=arch, variant=variant)
        plat = {"os": "linux", "architecture": arch, **({"variant": variant} if variant else {})}
        descs.append({"mediaType": OCI_MANIFEST, "digest": sha(manifest), "size": len(manifest), "platform": plat})
    # an attestation-like entry of an unknown media type must be skipped, not an error
    descs.append({"mediaType": "application/vnd.example.unknown+json", "digest": sha(b"x"), "size": 1,
                  "platform": {"os": "unknown", "architecture": "unknown"}})
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descs[:3]}).encode()
    (layout / "blobs/sha256" / sha(index).split(":")[1]).write_bytes(index)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": OCI_INDEX, "digest": sha(index), "size": len(index),
         "annotations": {"org.opencontainers.image.ref.name": "1"}}]}))
    ref = f"{registry.host}/multi/arch:1"
    subprocess.run(["skopeo", "copy", "--all", "--dest-tls-verify=false", "--format", fmt, f"oci:{layout}:1",
                    f"docker://{ref}"], check=True, capture_output=True)
    status, headers, body = registry.get("/v2/multi/arch/manifests/1", {"Accept": ", ".join(
        [OCI_INDEX, "application/vnd.docker.distribution.manifest.list.v2+json"])})
    assert status == 200 and json.loads(body)["mediaType"] == (
        OCI_INDEX if fmt == "oci" else "application/vnd.docker.distribution.manifest.list.v2+json")
    top = sha(body)
    store = ImageStore(tmp_path / "s1")
    img = store.pull(ref)
    assert (store.prepare(img)[0] / "arch").read_text() == "amd64"
    assert img.repo_digests == [f"{registry.host}/multi/arch@{top}"]
    arm = store.pull(ref, platform="linux/arm64")
    assert (store.prepare(arm)[0] / "arch").read_text() == "arm64v8"
    armv6 = store.pull(ref, platform="linux/arm/v8")  # a v8 arm machine runs the v7 image
    assert (store.prepare(armv6)[0] / "arch").read_text() == "armv7"
    fresh = tmp_path / "s2"
    r = run_cli(["image", "pull", "--platform", "linux/s390x", ref], {**env, "PYSTACK_ROOT": str(fresh)})
    err = r.stderr.decode()
    assert r.returncode != 0 and "no matching manifest for linux/s390x" in err and "linux/amd64" in err, err
    assert store_files(fresh / "images") == {"blobs": [], "layers": [], "images": [], "tmp": [], "refs": []}


def test_interrupted_download_is_resumed(registry, busybox, store, tmp_path) -> None:
    ref = f"{registry.host}/resume/bb:1"
    store.tag("busybox", ref)
    store.push(ref)
    proxy = Proxy(registry.host, cut_first_blob=True)
    try:
        fresh = ImageStore(tmp_path / "fresh")
        img = fresh.pull(f"{proxy.host}/resume/bb:1")
        assert img.id == busybox.id
        assert proxy.cut_done
        ranges = [h.get("Range") for m, p, h in proxy.requests if "/blobs/" in p and h.get("Range")]
        assert ranges and ranges[0].startswith("bytes=") and ranges[0] != "bytes=0-"
        assert store_files(fresh.root)["tmp"] == []
    finally:
        proxy.stop()


def test_redirect_to_another_host_drops_authorization(basic_registry, busybox, store, tmp_path, env) -> None:
    creds = "Basic " + base64.b64encode(b"alice:s3cret").decode()
    assert run_cli(["login", basic_registry.host, "-u", "alice", "-p", "s3cret"], env).returncode == 0
    ref = f"{basic_registry.host}/redir/bb:1"
    store.tag("busybox", ref)
    store.push(ref)
    proxy = Proxy(basic_registry.host, redirect_blobs=True, upstream_auth=creds)
    try:
        from pystack.runtime.images.auth import store_credentials
        store_credentials(proxy.host, "alice", "s3cret")
        fresh = ImageStore(tmp_path / "fresh")
        img = fresh.pull(f"{proxy.host}/redir/bb:1")
        assert img.id == busybox.id
        cdn = [h for m, p, h in proxy.requests if p.startswith("/cdn/")]
        direct = [h for m, p, h in proxy.requests if "/manifests/" in p]
        assert cdn and all("Authorization" not in h for h in cdn)
        assert any("Authorization" in h for h in direct)  # the registry itself did get credentials
    finally:
        proxy.stop()


def test_errors_are_clear_and_leave_nothing(env, registry, busybox, store, tmp_path) -> None:
    ref = f"{registry.host}/err/bb:1"
    store.tag("busybox", ref)
    store.push(ref)
    fresh = tmp_path / "fresh"
    fenv = {**env, "PYSTACK_ROOT": str(fresh)}
    cases = [([f"{registry.host}/err/bb:nope"], "not found"),
             ([f"{registry.host}/err/missing:1"], "not found"),
             ([f"127.0.0.1:{free_port()}/x/y:1"], "cannot reach registry"),
             (["Bad_Name"], "invalid reference format"),
             (["--platform", "linux/arm64", ref], "does not match the specified platform: wanted linux/arm64")]
    for args, text in cases:
        r = run_cli(["image", "pull", *args], fenv)
        err = r.stderr.decode()
        assert r.returncode != 0 and text in err and "Traceback" not in err, (args, err)
        assert len(err.strip().splitlines()) == 1, err
    import pystack.runtime.images.pull as pull_mod
    # config blob corrupt; or only the layer: streamed into a helper, streamed in-thread, downloaded first
    for corrupt_min, stream, helper_min in ((0, "1", 0), (2000, "1", 0), (2000, "1", 1 << 40), (2000, "0", 0)):
        proxy = Proxy(registry.host, corrupt_blobs=True, corrupt_min=corrupt_min)
        try:
            pull_mod.STREAM = stream == "1"
            pull_mod.HELPER_MIN = helper_min
            s = ImageStore(fresh / "images")
            with pytest.raises(DigestMismatch, match="digest mismatch"):
                s.pull(f"{proxy.host}/err/bb:1")
            with pytest.raises(ImageNotFound):
                s.resolve(f"{proxy.host}/err/bb:1")
        finally:
            pull_mod.STREAM, pull_mod.HELPER_MIN = True, 4 << 20
            proxy.stop()
    assert store_files(fresh / "images") == {"blobs": [], "layers": [], "images": [], "tmp": [], "refs": []}


def test_skopeo_interop(registry, busybox, busybox_rootfs, store, tmp_path) -> None:
    # skopeo pushes, pystack pulls
    saved = tmp_path / "bb.tar"
    store.save(["busybox"], saved)
    ref = f"{registry.host}/skopeo/bb:1"
    subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", f"docker-archive:{saved}", f"docker://{ref}"],
                   check=True, capture_output=True)
    status, _, body = registry.get("/v2/skopeo/bb/manifests/1", {
        "Accept": "application/vnd.docker.distribution.manifest.v2+json"})
    assert json.loads(body)["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"  # schema 2
    fresh = ImageStore(tmp_path / "fresh")
    img = fresh.pull(ref)
    assert img.repo_digests == [f"{registry.host}/skopeo/bb@{sha(body)}"]
    _diff(busybox_rootfs, fresh.prepare(img)[0])
    # pystack pushes, skopeo + umoci read
    mine = f"{registry.host}/pystack/bb:2"
    store.tag("busybox", mine)
    digest = store.push(mine)
    info = json.loads(subprocess.run(["skopeo", "inspect", "--tls-verify=false", f"docker://{mine}"],
                                     capture_output=True, check=True).stdout)
    assert info["Digest"] == digest and info["Architecture"] == "amd64"
    oci = tmp_path / "oci"
    subprocess.run(["skopeo", "copy", "--src-tls-verify=false", f"docker://{mine}", f"oci:{oci}:bb"],
                   check=True, capture_output=True)
    subprocess.run(["umoci", "unpack", "--image", f"{oci}:bb", str(tmp_path / "bundle")], check=True,
                   capture_output=True)
    _diff(busybox_rootfs, tmp_path / "bundle" / "rootfs")


def test_hub_mirror(env, registry, busybox, store, tmp_path) -> None:
    """`busybox` means docker.io/library/busybox; with a mirror configured it comes from there."""
    store.tag("busybox", f"{registry.host}/library/busybox:latest")
    store.push(f"{registry.host}/library/busybox:latest")
    Path(env["PYSTACK_REGISTRIES"]).write_text(json.dumps({"registry-mirrors": [f"http://{registry.host}"]}))
    fresh = ImageStore(tmp_path / "fresh")
    img = fresh.pull("busybox")
    assert img.id == busybox.id and img.repo_tags == ["busybox:latest"]
    assert img.repo_digests == [f"busybox@{busybox.manifest_digest}"]


@pytest.mark.parametrize("helper", [True, False], ids=["helper-process", "in-process"])
@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "download-first"])
def test_hostile_layer_from_a_registry(registry, tmp_path, stream, helper, monkeypatch) -> None:
    """A registry serving a layer that writes through a symlink (pushed with skopeo, which
    does not unpack): the pull fails naming image and layer; the store is left empty."""
    import pystack.runtime.images.pull as pull_mod
    from pystack.runtime.images.errors import LayerError

    from .helpers import oci_layout
    monkeypatch.setattr(pull_mod, "STREAM", stream)
    monkeypatch.setattr(pull_mod, "HELPER", helper)
    monkeypatch.setattr(pull_mod, "HELPER_MIN", 0)  # the test's layer is small
    outside = tmp_path / "outside"
    outside.mkdir()
    evil = make_tar([entry("l", "symlink", link=str(outside)), entry("l/pwned", data=b"x" * 5000)])
    layout = oci_layout(tmp_path / "evil-layout", "evil:1", [(gz(evil), evil)])
    (layout / "index.json").write_text((layout / "index.json").read_text().replace(
        '"io.containerd.image.name": "evil:1"', '"org.opencontainers.image.ref.name": "1"'))
    ref = f"{registry.host}/evil/img:1"
    subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", f"oci:{layout}:1", f"docker://{ref}"],
                   check=True, capture_output=True)
    store = ImageStore(tmp_path / "store")
    with pytest.raises(LayerError) as exc:
        store.pull(ref)
    assert f"image {ref}" in str(exc.value) and "layer 1/1" in str(exc.value) and "symlink" in str(exc.value)
    assert list(outside.iterdir()) == []
    assert store_files(store.root) == {"blobs": [], "layers": [], "images": [], "tmp": [], "refs": []}


CONCURRENT_PULL = r"""
import sys
from pathlib import Path
from pystack.runtime.images.store import ImageStore
img = ImageStore(Path(sys.argv[1])).pull(sys.argv[2])
print(img.id)
"""


@pytest.mark.slow
def test_concurrent_pulls_into_one_store(registry, store, tmp_path) -> None:
    """Three processes pull the same multi-layer image at once: one copy of each blob and
    layer, every process gets the image, nothing is left in tmp/."""
    import sys
    multi = _multilayer(store, tmp_path)
    ref = f"{registry.host}/conc/multi:1"
    store.tag("multi:1", ref)
    store.push(ref)
    shared = tmp_path / "shared"
    procs = [subprocess.Popen([sys.executable, "-c", CONCURRENT_PULL, str(shared), ref], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for _ in range(3)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [o[1].decode()[-500:] for o in outs]
    assert {o[0].decode().strip() for o in outs} == {multi.id}
    files = store_files(shared)
    assert len(files["layers"]) == 3 and len(files["images"]) == 1 and files["tmp"] == []
    assert len(files["blobs"]) == 5  # 3 layers, config, manifest


KILLED_PULL = r"""
import sys
from pathlib import Path
from pystack.runtime.images.store import ImageStore
ImageStore(Path(sys.argv[1])).pull(sys.argv[2])
"""


@pytest.mark.slow
def test_pull_killed_midway_then_rerun_converges(registry, store, tmp_path) -> None:
    """SIGKILL a pull while its blobs are half downloaded; the next pull resumes the partial
    blobs with Range and succeeds; prune then clears what the killed one left."""
    import signal
    import sys
    import time
    multi = _multilayer(store, tmp_path)
    store.tag("multi:1", f"{registry.host}/kill/multi:1")
    store.push(f"{registry.host}/kill/multi:1")
    stall = Proxy(registry.host, stall_blobs=True)
    shared = tmp_path / "shared"
    try:
        proc = subprocess.Popen([sys.executable, "-c", KILLED_PULL, str(shared), f"{stall.host}/kill/multi:1"])
        partials = []
        deadline = time.monotonic() + 60
        while len(partials) < 3 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
            partials = [p for p in (shared / "tmp").glob("partial-*") if not p.name.endswith(".lock")
                        and p.stat().st_size > 0] if (shared / "tmp").exists() else []
        assert len(partials) == 3, partials
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        stall.stop()
    recorder = Proxy(registry.host)
    try:
        img = ImageStore(shared).pull(f"{recorder.host}/kill/multi:1")
    finally:
        recorder.stop()
    assert img.id == multi.id
    ranges = [h.get("Range") for m, p, h in recorder.requests if "/blobs/" in p and h.get("Range")]
    assert len(ranges) == 3 and all(r != "bytes=0-" for r in ranges), ranges
    ImageStore(shared).prune()
    files = store_files(shared)
    assert len(files["layers"]) == 3 and files["tmp"] == []
    for a, b in zip(ImageStore(shared).prepare(img), store.prepare(multi)):
        _diff(a, b)
