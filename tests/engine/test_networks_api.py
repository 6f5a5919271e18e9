"""/networks/... through docker-py, the docker CLI and raw HTTP: real bridges (10.211.0.0/16),
checked in the kernel and gone afterwards."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from resource_helpers import (API, assert_engine_clean, docker_cli, docker_client, free_subnet, http, import_busybox,
                              link_exists)


@pytest.fixture
def dc(engine):
    client = docker_client(engine)
    yield client
    client.close()


def _ipam(subnet: str):
    import docker
    return docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=subnet)])


def _bridge(net) -> str:
    return net.attrs["Options"]["com.docker.network.bridge.name"]


def test_create_inspect_list_remove(engine, dc, unique_name) -> None:
    import docker
    subnet = free_subnet()
    net = dc.networks.create(unique_name, driver="bridge", ipam=_ipam(subnet), labels={"team": "core"},
                             internal=True, attachable=True, options={"com.docker.network.driver.mtu": "1400"})
    try:
        net.reload()
        attrs = net.attrs
        assert attrs["Name"] == unique_name and attrs["Driver"] == "bridge" and attrs["Scope"] == "local"
        assert attrs["IPAM"]["Config"][0]["Subnet"] == subnet
        assert attrs["Internal"] is True and attrs["Attachable"] is True and attrs["Labels"] == {"team": "core"}
        assert attrs["Options"]["com.docker.network.driver.mtu"] == "1400"
        assert attrs["Created"].endswith("Z") and attrs["Containers"] == {}
        assert link_exists(_bridge(net))
        assert dc.networks.get(net.id[:12]).name == unique_name
        # filters: name (substring), id (prefix), label, driver, type
        assert [n.id for n in dc.networks.list(names=[unique_name])] == [net.id]
        assert [n.id for n in dc.networks.list(ids=[net.id[:10]])] == [net.id]
        assert [n.id for n in dc.networks.list(filters={"label": "team=core"})] == [net.id]
        assert dc.networks.list(filters={"label": "team=other"}) == []
        builtin = {n.name for n in dc.networks.list(filters={"type": "builtin"})}
        assert {"host", "none"} <= builtin and unique_name not in builtin
        assert net.id in [n.id for n in dc.networks.list(filters={"type": "custom", "driver": "bridge"})]
        assert {n.attrs["Driver"] for n in dc.networks.list(names=["host"])} >= {"host"}
        # a second network of that name is a 409; another driver or field a clear 400
        with pytest.raises(docker.errors.APIError) as err:
            dc.networks.create(unique_name, ipam=_ipam(free_subnet()))
        assert err.value.status_code == 409 and "already exists" in str(err.value)
        with pytest.raises(docker.errors.APIError) as err:
            dc.networks.create(unique_name + "x", driver="overlay")
        assert err.value.status_code == 400 and "overlay" in str(err.value)
        status, _, body = http(engine.socket, "POST", API + "/networks/create",
                               {"Name": unique_name + "y", "Scope": "swarm"})
        assert status == 400 and "Scope" in json.loads(body)["message"]
        status, _, body = http(engine.socket, "POST", API + "/networks/create", {"Name": unique_name + "z", "Bogus": 1})
        assert status == 400 and "Bogus" in json.loads(body)["message"]
        status, _, body = http(engine.socket, "POST", API + "/networks/create", {"Driver": "bridge"})
        assert status == 400 and "Name" in json.loads(body)["message"]
        # the predefined networks: 403, as dockerd
        for method, path, body in (("DELETE", "/networks/host", None), ("POST", "/networks/create", {"Name": "none"})):
            status, _, _ = http(engine.socket, method, API + path, body)
            assert status == 403
    finally:
        net.remove()
    assert not link_exists(_bridge(net))
    with pytest.raises(docker.errors.NotFound):
        dc.networks.get(unique_name)
    status, _, body = http(engine.socket, "DELETE", f"{API}/networks/{unique_name}")
    assert status == 404 and "not found" in json.loads(body)["message"]
    assert_engine_clean(engine, bridges=[_bridge(net)])


def test_prune_by_label(engine, dc, unique_name) -> None:
    a = dc.networks.create(unique_name + "a", ipam=_ipam(free_subnet()), labels={"prune": "yes"})
    b = dc.networks.create(unique_name + "b", ipam=_ipam(free_subnet()))
    try:
        result = dc.networks.prune(filters={"label": "prune=yes"})
        assert result["NetworksDeleted"] == [unique_name + "a"]
        assert [n.name for n in dc.networks.list(names=[unique_name])] == [unique_name + "b"]
        assert not link_exists(_bridge(a))
    finally:
        b.remove()
    assert_engine_clean(engine, bridges=[_bridge(a), _bridge(b)])


def test_connect_disconnect_and_remove_conflict(engine, dc, unique_name, busybox_rootfs: Path,
                                                tmp_path: Path) -> None:
    import docker
    import_busybox(engine, busybox_rootfs, tmp_path)
    front = dc.networks.create(unique_name + "f", ipam=_ipam(free_subnet()))
    back = dc.networks.create(unique_name + "b", ipam=_ipam(free_subnet()))
    try:
        try:
            container = dc.containers.run("busybox", ["sleep", "60"], detach=True, network=front.name,
                                          name=unique_name)
        except docker.errors.NotFound as exc:
            pytest.skip(f"container routes not available in this engine yet: {exc}")
        try:
            back.connect(container, aliases=["db"])
            back.reload()
            assert list(back.attrs["Containers"]) == [container.id]
            assert back.attrs["Containers"][container.id]["Name"] == unique_name
            container.reload()
            assert set(container.attrs["NetworkSettings"]["Networks"]) == {front.name, back.name}
            with pytest.raises(docker.errors.APIError) as err:
                back.remove()
            assert err.value.status_code == 409
            assert dc.networks.prune()["NetworksDeleted"] in ([], None)
            back.disconnect(container)
            back.reload()
            assert back.attrs["Containers"] == {}
            with pytest.raises(docker.errors.NotFound):
                back.connect("no-such-container")
            status, _, _ = http(engine.socket, "POST", API + "/networks/host/connect", {"Container": container.id})
            assert status == 400
        finally:
            container.remove(force=True)
        assert sorted(dc.networks.prune()["NetworksDeleted"]) == sorted([front.name, back.name])
    finally:
        for net in (front, back):
            try:
                net.remove()
            except docker.errors.NotFound:
                pass
    assert_engine_clean(engine, bridges=[_bridge(front), _bridge(back)], container_ids=[container.id])


def test_docker_cli_networks(engine, unique_name, tmp_path: Path) -> None:
    docker = docker_cli(engine, tmp_path)
    subnet = free_subnet()
    net_id = docker("network", "create", "--subnet", subnet, "--label", "via=cli", unique_name).stdout.decode().strip()
    try:
        ls = docker("network", "ls", "--format", "{{.Name}} {{.Driver}} {{.Scope}}").stdout.decode().splitlines()
        assert f"{unique_name} bridge local" in ls and "host host local" in ls and "none null local" in ls
        out = docker("network", "ls", "-q", "--filter", "label=via=cli", "--no-trunc").stdout.decode().split()
        assert out == [net_id]
        doc = json.loads(docker("network", "inspect", unique_name).stdout)[0]
        assert doc["Id"] == net_id and doc["IPAM"]["Config"][0]["Subnet"] == subnet
        dup = docker("network", "create", unique_name, ok=False)
        assert dup.returncode != 0 and b"already exists" in dup.stderr
    finally:
        docker("network", "rm", unique_name)
    assert unique_name not in docker("network", "ls").stdout.decode()
    assert_engine_clean(engine, bridges=["psbr-" + net_id[:8]])


def test_concurrent_creates_of_one_name(engine, unique_name) -> None:
    import threading
    from urllib.parse import quote
    results: list[int] = []
    subnets = [free_subnet() for _ in range(4)]

    def create(i: int) -> None:
        status, _, _ = http(engine.socket, "POST", API + "/networks/create",
                            {"Name": unique_name, "IPAM": {"Config": [{"Subnet": subnets[i]}]}})
        results.append(status)
    threads = [threading.Thread(target=create, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(results) == [201, 409, 409, 409]
    status, _, body = http(engine.socket, "GET", f"{API}/networks?filters=" + quote(json.dumps({"name": [unique_name]})))
    [doc] = json.loads(body)
    status, _, _ = http(engine.socket, "DELETE", f"{API}/networks/{doc['Id']}")
    assert status == 204
    assert_engine_clean(engine, bridges=[doc["Options"]["com.docker.network.bridge.name"]])
