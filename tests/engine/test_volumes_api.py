"""/volumes/... (and the /pystack/volumes snapshot extras) through docker-py, the docker CLI
and raw HTTP."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from resource_helpers import API, docker_cli, docker_client, http, import_busybox


@pytest.fixture
def dc(engine):
    client = docker_client(engine)
    yield client
    client.close()


def test_create_get_list_remove_prune(engine, dc, unique_name) -> None:
    import docker
    vol = dc.volumes.create(unique_name, labels={"team": "core"})
    assert vol.name == unique_name and vol.attrs["Driver"] == "local"
    assert vol.attrs["Mountpoint"] == str(engine.root / "volumes" / unique_name / "_data")
    assert dc.volumes.create(unique_name).attrs["Labels"] == {"team": "core"}  # idempotent, as dockerd
    assert dc.volumes.get(unique_name).attrs["Labels"] == {"team": "core"}
    anon = dc.volumes.create()
    assert len(anon.name) == 64
    assert [v.name for v in dc.volumes.list(filters={"label": "team=core"})] == [unique_name]
    assert sorted(v.name for v in dc.volumes.list()) == sorted([unique_name, anon.name])
    pruned = dc.volumes.prune()
    assert pruned["VolumesDeleted"] == [anon.name]
    with pytest.raises(docker.errors.APIError) as err:
        dc.volumes.create(unique_name + "x", driver="rexray")
    assert err.value.status_code == 400 and "rexray" in str(err.value)
    with pytest.raises(docker.errors.APIError) as err:
        dc.volumes.create("../etc")
    assert err.value.status_code == 400
    vol.remove()
    with pytest.raises(docker.errors.NotFound):
        dc.volumes.get(unique_name)
    with pytest.raises(docker.errors.NotFound):
        dc.api.remove_volume(unique_name)
    status, _, _ = http(engine.socket, "DELETE", f"{API}/volumes/{unique_name}?force=1")
    assert status == 204  # force: a missing volume is fine
    assert dc.volumes.list() == []


def test_names_cannot_reach_outside_the_root(engine, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    for name in ("..%2F..%2F..%2Fetc", "%2E%2E", "..", "a%00b"):
        status, _, body = http(engine.socket, "GET", f"{API}/volumes/{name}")
        assert status in (400, 404), (name, status, body)
        status, _, body = http(engine.socket, "DELETE", f"{API}/volumes/{name}?force=1")
        assert status in (204, 400, 404), (name, status, body)
    for path in ("/images/..%2F..%2F..%2Fetc%2Fpasswd/json", "/images/sha256:..%2F..%2Fx/json",
                 "/networks/..%2F..%2Fetc", "/images/%2E%2E/get"):
        status, _, body = http(engine.socket, "GET", API + path)
        assert status in (400, 404), (path, status, body)
    status, _, body = http(engine.socket, "POST", API + "/volumes/create", {"Name": "../../outside"})
    assert status == 400
    status, _, body = http(engine.socket, "POST", API + "/volumes/create", b"[1, 2]")
    assert status == 400
    assert Path("/etc/passwd").exists()


def test_volume_in_use_is_refused(engine, dc, unique_name, busybox_rootfs: Path, tmp_path: Path) -> None:
    import docker
    import_busybox(engine, busybox_rootfs, tmp_path)
    dc.volumes.create(unique_name)
    try:
        container = dc.containers.create("busybox", ["true"], network_mode="none",
                                         volumes={unique_name: {"bind": "/data", "mode": "rw"}})
    except docker.errors.NotFound as exc:
        pytest.skip(f"container routes not available in this engine yet: {exc}")
    try:
        with pytest.raises(docker.errors.APIError) as err:
            dc.volumes.get(unique_name).remove(force=True)
        assert err.value.status_code == 409
        assert dc.volumes.prune(filters={"all": "true"})["VolumesDeleted"] in ([], None)
    finally:
        container.remove(force=True)
    dc.volumes.get(unique_name).remove()


def test_snapshot_extras(engine, dc, unique_name) -> None:
    dc.volumes.create(unique_name)
    data = engine.root / "volumes" / unique_name / "_data"
    (data / "table").write_bytes(b"v1" * 100)
    status, _, body = http(engine.socket, "POST", f"/pystack/volumes/{unique_name}/snapshots?tag=t1")
    assert status == 201 and json.loads(body)["tag"] == "t1"
    (data / "table").write_bytes(b"broken")
    status, _, body = http(engine.socket, "POST", f"/pystack/volumes/{unique_name}/restore?tag=t1")
    assert status == 200 and (data / "table").read_bytes() == b"v1" * 100
    status, _, body = http(engine.socket, "GET", f"/pystack/volumes/{unique_name}/snapshots")
    assert status == 200 and [s["tag"] for s in json.loads(body)] == ["t1"]
    status, _, body = http(engine.socket, "POST", f"/pystack/volumes/{unique_name}/restore?tag=nope")
    assert status == 404
    status, _, body = http(engine.socket, "POST", f"/pystack/volumes/{unique_name}/snapshots")
    assert status == 400 and "tag" in json.loads(body)["message"]
    status, _, _ = http(engine.socket, "DELETE", f"/pystack/volumes/{unique_name}/snapshots/t1")
    assert status == 204
    assert json.loads(http(engine.socket, "GET", "/pystack/volumes/snapshots")[2]) == []


def test_docker_cli_volumes(engine, unique_name, tmp_path: Path) -> None:
    docker = docker_cli(engine, tmp_path)
    assert docker("volume", "create", "--label", "via=cli", unique_name).stdout.decode().strip() == unique_name
    ls = docker("volume", "ls", "--format", "{{.Driver}} {{.Name}}").stdout.decode().splitlines()
    assert ls == [f"local {unique_name}"]
    assert docker("volume", "ls", "-q", "--filter", "label=via=cli").stdout.decode().split() == [unique_name]
    doc = json.loads(docker("volume", "inspect", unique_name).stdout)[0]
    assert doc["Labels"] == {"via": "cli"} and doc["Mountpoint"].endswith(f"{unique_name}/_data")
    assert docker("volume", "rm", unique_name).stdout.decode().strip() == unique_name
    missing = docker("volume", "inspect", unique_name, ok=False)
    assert missing.returncode != 0 and b"no such volume" in missing.stderr.lower()
