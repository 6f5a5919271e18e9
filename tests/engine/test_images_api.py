"""/images/... and /auth through real clients: docker-py, the docker CLI, raw HTTP, and
Debian's docker-registry on loopback for pull/push/login."""
from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from resource_helpers import API, docker_cli, docker_client, http, import_busybox, json_lines, registryfix


@pytest.fixture
def dc(engine):
    client = docker_client(engine)
    yield client
    client.close()


def test_import_list_inspect_tag_history_remove(engine, dc, busybox_rootfs: Path, tmp_path: Path) -> None:
    import docker
    image_id = import_busybox(engine, busybox_rootfs, tmp_path, changes=('CMD ["sh"]', "LABEL team=core"))
    assert image_id.startswith("sha256:")
    img = dc.images.get("busybox")
    assert img.id == image_id and img.tags == ["busybox:latest"]
    assert img.attrs["Config"]["Cmd"] == ["sh"] and img.attrs["RootFS"]["Layers"]
    assert [i.id for i in dc.images.list()] == [image_id]
    assert img.tag("example/bb", "2") is True
    assert sorted(dc.images.get(image_id).tags) == ["busybox:latest", "example/bb:2"]
    # filters: reference, label, dangling
    assert [i.id for i in dc.images.list(filters={"reference": "example/*"})] == [image_id]
    assert dc.images.list(filters={"reference": "nothing*"}) == []
    assert [i.id for i in dc.images.list(filters={"label": "team=core"})] == [image_id]
    assert dc.images.list(filters={"label": "team=other"}) == []
    assert dc.images.list(filters={"dangling": True}) == []
    hist = dc.api.history("busybox")
    assert hist[0]["Id"] == image_id and hist[0]["Size"] == img.attrs["Size"]
    # rmi of one of two tags only untags
    assert dc.api.remove_image("example/bb:2") == [{"Untagged": "example/bb:2"}]
    assert dc.images.get(image_id).tags == ["busybox:latest"]
    with pytest.raises(docker.errors.ImageNotFound):
        dc.images.get("nope:1")
    with pytest.raises(docker.errors.ImageNotFound):
        dc.images.remove("nope:1")
    status, _, body = http(engine.socket, "GET", API + '/images/json?filters={"colour":["red"]}')
    assert status == 400 and b"invalid filter" in body
    lines = dc.api.remove_image("busybox")
    assert {"Deleted": image_id} in lines and {"Untagged": "busybox:latest"} in lines
    assert dc.images.list() == []


def test_save_and_load_round_trip(engine, dc, busybox_rootfs: Path, tmp_path: Path) -> None:
    image_id = import_busybox(engine, busybox_rootfs, tmp_path)
    data = b"".join(dc.images.get("busybox").save())
    assert data[:512].count(b"oci-layout") == 1 or b"manifest.json" in data
    status, hdrs, both = http(engine.socket, "GET", API + "/images/get?names=busybox&names=" + image_id)
    assert status == 200 and hdrs["content-type"] == "application/x-tar" and len(both) >= len(data) // 2
    status, _, body = http(engine.socket, "GET", API + "/images/get?names=nope")
    assert status == 404 and json.loads(body)["message"] == "No such image: nope"
    dc.images.remove("busybox")
    loaded = dc.images.load(data)
    assert [i.id for i in loaded] == [image_id] and loaded[0].tags == ["busybox:latest"]
    # a broken archive is a 400 with one message, and leaves no temp file behind
    status, _, body = http(engine.socket, "POST", API + "/images/load", b"not a tar at all" * 10,
                           {"Content-Type": "application/x-tar"})
    assert status == 400 and "upload-" not in json.loads(body)["message"]
    assert list((engine.root / "images" / "tmp").glob("upload-*")) == []


def test_create_refuses_bad_requests(engine, busybox_rootfs: Path, tmp_path: Path) -> None:
    for path, text in ((API + "/images/create", "fromImage or fromSrc is required"),
                       (API + "/images/create?fromSrc=http://example.com/x.tar", "not supported"),
                       (API + "/images/create?fromImage=Bad_Name", "invalid reference format"),
                       (API + "/images/create?fromSrc=-&repo=UPPER", "invalid reference format"),
                       (API + "/images/create?fromSrc=-&changes=FROM%20x", "unsupported instruction")):
        status, _, body = http(engine.socket, "POST", path)
        assert status == 400 and text in json.loads(body)["message"], (path, body)
    status, _, body = http(engine.socket, "POST", API + "/images/nope/push")
    assert status == 404
    status, _, body = http(engine.socket, "POST", API + "/images/nope/tag?repo=x")
    assert status == 404
    import_busybox(engine, busybox_rootfs, tmp_path)
    status, _, body = http(engine.socket, "POST", API + "/images/busybox/tag")
    assert status == 400
    status, _, body = http(engine.socket, "POST", API + "/images/create?fromImage=busybox&tag=latest",
                           headers={"X-Registry-Auth": "%%%not-base64"})
    assert status == 400 and "X-Registry-Auth" in json.loads(body)["message"]


def test_rmi_refused_and_prune_keeps_images_in_use(engine, dc, busybox_rootfs: Path, tmp_path: Path) -> None:
    import docker
    image_id = import_busybox(engine, busybox_rootfs, tmp_path)
    untagged = import_busybox(engine, busybox_rootfs, tmp_path, repo="", tag="", changes=("LABEL x=y",))
    assert [i.id for i in dc.images.list(filters={"dangling": True})] == [untagged]
    try:
        container = dc.containers.create("busybox", ["true"], network_mode="none")
    except docker.errors.NotFound as exc:
        pytest.skip(f"container routes not available in this engine yet: {exc}")
    try:
        with pytest.raises(docker.errors.APIError) as err:
            dc.images.remove("busybox")
        assert err.value.status_code == 409 and "is using its referenced image" in str(err.value)
        with pytest.raises(docker.errors.APIError) as err:
            dc.images.remove(image_id, force=True)
        assert err.value.status_code == 409
        # a second tag can go while a container uses the image
        dc.images.get("busybox").tag("busybox", "two")
        dc.images.remove("busybox:two")
        result = dc.images.prune(filters={"dangling": False})
        deleted = [d.get("Deleted") for d in result["ImagesDeleted"] or []]
        assert untagged in deleted and image_id not in deleted
        assert dc.images.get("busybox").id == image_id
    finally:
        container.remove(force=True)
    result = dc.images.prune(filters={"dangling": False})
    assert {"Deleted": image_id} in result["ImagesDeleted"] and result["SpaceReclaimed"] > 0


@pytest.fixture
def registry(tmp_path: Path):
    rf = registryfix()
    reg = rf.start_registry(tmp_path)
    yield reg
    reg.stop()


@pytest.fixture
def basic_registry(tmp_path: Path):
    rf = registryfix()
    reg = rf.start_registry(tmp_path, {"htpasswd": {"realm": "basic-realm",
                                                     "path": str(rf.htpasswd_file(tmp_path, "alice", "s3cret"))}})
    yield reg
    reg.stop()


@pytest.mark.slow
def test_push_and_pull_with_docker_py(engine, dc, registry, busybox_rootfs: Path, tmp_path: Path) -> None:
    import docker
    image_id = import_busybox(engine, busybox_rootfs, tmp_path)
    repo = f"{registry.host}/engine/busybox"
    dc.images.get("busybox").tag(repo, "1")
    lines = list(dc.images.push(repo, "1", stream=True, decode=True))
    assert not any("error" in line for line in lines), lines
    aux = [line["aux"] for line in lines if "aux" in line]
    assert aux and aux[0]["Tag"] == "1" and aux[0]["Digest"].startswith("sha256:")
    assert any(line.get("status") == "Pushed" for line in lines)
    dc.images.remove(image_id, force=True)
    assert dc.images.list() == []
    pulled = dc.images.pull(repo, tag="1")
    assert pulled.id == image_id and f"{repo}:1" in pulled.tags
    assert pulled.attrs["RepoDigests"] == [f"{repo}@{aux[0]['Digest']}"]
    # the progress stream is Docker's: Pulling from, layer lines, Digest, Status
    status, hdrs, payload = http(engine.socket, "POST", f"{API}/images/create?fromImage={repo}&tag=1")
    lines = json_lines(payload)
    assert status == 200 and hdrs["content-type"] == "application/json"
    assert lines[-1]["status"] == f"Status: Image is up to date for {repo}:1"
    assert any(line.get("status", "").startswith("Digest: sha256:") for line in lines)
    # errors before any layer moved are plain HTTP errors
    with pytest.raises(docker.errors.NotFound):
        dc.images.pull(f"{registry.host}/engine/missing", tag="1")
    status, _, body = http(engine.socket, "POST", f"{API}/images/create?fromImage={repo}&tag=nope")
    assert status == 404 and "not found" in json.loads(body)["message"]


@pytest.mark.slow
def test_login_and_push_with_credentials(engine, dc, basic_registry, busybox_rootfs: Path, tmp_path: Path) -> None:
    import docker
    import_busybox(engine, busybox_rootfs, tmp_path)
    repo = f"{basic_registry.host}/secret/bb"
    dc.images.get("busybox").tag(repo, "1")
    with pytest.raises(docker.errors.APIError) as err:
        dc.login("alice", "wrong", registry=basic_registry.host, reauth=True)
    assert err.value.status_code == 401
    assert dc.login("alice", "s3cret", registry=basic_registry.host, reauth=True)["Status"] == "Login Succeeded"
    # without credentials the push is refused before any layer moved: a 401
    status, _, body = http(engine.socket, "POST", f"{API}/images/{repo}/push?tag=1")
    assert status == 401 and "authentication required" in json.loads(body)["message"]
    auth = {"username": "alice", "password": "s3cret", "serveraddress": basic_registry.host}
    lines = list(dc.images.push(repo, "1", stream=True, decode=True, auth_config=auth))
    assert not any("error" in line for line in lines) and any("aux" in line for line in lines), lines
    dc.images.remove(f"{repo}:1")
    header = base64.urlsafe_b64encode(json.dumps(auth).encode()).decode()
    status, _, payload = http(engine.socket, "POST", f"{API}/images/create?fromImage={repo}&tag=1",
                              headers={"X-Registry-Auth": header})
    assert status == 200 and "Status: " in json_lines(payload)[-1]["status"]


def test_docker_cli_images(engine, busybox_rootfs: Path, tmp_path: Path) -> None:
    docker = docker_cli(engine, tmp_path)
    image_id = import_busybox(engine, busybox_rootfs, tmp_path)
    out = docker("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}").stdout.decode()
    assert out.split() == ["busybox:latest", image_id[7:19]]
    assert docker("image", "inspect", "--format", "{{.Id}} {{.Config.Cmd}}", "busybox").stdout.decode().strip() == \
        f"{image_id} [sh]"
    docker("tag", "busybox", "copy:1")
    saved = tmp_path / "saved.tar"
    docker("save", "-o", str(saved), "copy:1")
    assert docker("rmi", "copy:1").stdout.decode().strip() == "Untagged: copy:1"
    assert "Loaded image: copy:1" in docker("load", "-i", str(saved)).stdout.decode()
    bad = docker("rmi", "nope:1", ok=False)
    assert bad.returncode != 0 and b"No such image: nope:1" in bad.stderr
    df = docker("system", "df", "--format", "{{.Type}} {{.TotalCount}}").stdout.decode().splitlines()
    assert "Images 1" in df


@pytest.mark.slow
def test_docker_cli_login_push_pull(engine, basic_registry, busybox_rootfs: Path, tmp_path: Path) -> None:
    docker = docker_cli(engine, tmp_path)
    image_id = import_busybox(engine, busybox_rootfs, tmp_path)
    repo = f"{basic_registry.host}/cli/bb"
    docker("tag", "busybox", f"{repo}:1")
    bad = docker("login", basic_registry.host, "-u", "alice", "--password-stdin", input=b"wrong\n", ok=False)
    assert bad.returncode != 0 and b"unauthorized" in bad.stderr.lower()
    docker("login", basic_registry.host, "-u", "alice", "--password-stdin", input=b"s3cret\n")
    pushed = docker("push", f"{repo}:1").stdout.decode()
    assert "1: digest: sha256:" in pushed
    docker("rmi", f"{repo}:1", "busybox")
    assert docker("images", "-q").stdout.strip() == b""
    pulled = docker("pull", f"{repo}:1").stdout.decode()
    assert f"Status: Downloaded newer image for {repo}:1" in pulled
    assert docker("image", "inspect", "--format", "{{.Id}}", f"{repo}:1").stdout.decode().strip() == image_id
    missing = docker("pull", f"{repo}:nope", ok=False)
    assert missing.returncode != 0 and b"not found" in missing.stderr


def test_a_client_that_does_not_read_blocks_nobody(engine, dc, busybox_rootfs: Path, tmp_path: Path,
                                                    unique_name) -> None:
    import socket
    import_busybox(engine, busybox_rootfs, tmp_path)
    stalled = []
    for _ in range(3):  # `docker save` streams of ~2 MB nobody reads: far more than a socket buffer
        s = socket.socket(socket.AF_UNIX)
        s.connect(str(engine.socket))
        s.sendall(b"GET /v1.43/images/busybox/get HTTP/1.1\r\nHost: x\r\n\r\n")
        stalled.append(s)
    try:
        for _ in range(3):
            assert [i.tags for i in dc.images.list()] == [["busybox:latest"]]
            assert dc.volumes.create(unique_name).name == unique_name
            assert dc.ping()
    finally:
        for s in stalled:
            s.close()
    assert dc.images.get("busybox").tag("after", "1")  # the writers ended; the store is usable
