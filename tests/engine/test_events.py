"""/events (history with since/until, live streaming, filters) and /system/df, through
docker-py, the docker CLI and raw HTTP."""
from __future__ import annotations

import json
import queue
import socket
import threading
import time
from pathlib import Path

import pytest

from resource_helpers import API, docker_cli, docker_client, free_subnet, http, import_busybox


@pytest.fixture
def dc(engine):
    client = docker_client(engine)
    yield client
    client.close()


def _history(dc, since: float, **kw) -> list[dict]:
    """Events from ``since`` to now (the stream ends at ``until``)."""
    return list(dc.events(since=since, until=time.time() + 0.2, decode=True, **kw))


def test_history_and_filters(engine, dc, unique_name, busybox_rootfs: Path, tmp_path: Path) -> None:
    import docker
    t0 = time.time()
    dc.volumes.create(unique_name + "v", labels={"team": "core"})
    net = dc.networks.create(unique_name + "n", ipam=docker.types.IPAMConfig(
        pool_configs=[docker.types.IPAMPool(subnet=free_subnet())]))
    net.remove()
    dc.volumes.get(unique_name + "v").remove()
    image_id = import_busybox(engine, busybox_rootfs, tmp_path)
    dc.images.get("busybox").tag("busybox", "two")
    events = _history(dc, t0)
    seen = [(e["Type"], e["Action"], e["Actor"]["ID"]) for e in events]
    assert seen == [("volume", "create", unique_name + "v"), ("network", "create", net.id),
                    ("network", "destroy", net.id), ("volume", "destroy", unique_name + "v"),
                    ("image", "import", image_id), ("image", "tag", image_id)]
    assert all(e["scope"] == "local" and e["timeNano"] // 1_000_000_000 == e["time"] for e in events)
    assert events[1]["Actor"]["Attributes"] == {"name": unique_name + "n", "type": "bridge"}
    # filters: type, event, volume/network by name or id prefix, image, label
    assert [e["Action"] for e in _history(dc, t0, filters={"type": "volume"})] == ["create", "destroy"]
    assert [e["Type"] for e in _history(dc, t0, filters={"event": "destroy"})] == ["network", "volume"]
    assert [e["Action"] for e in _history(dc, t0, filters={"network": unique_name + "n"})] == ["create", "destroy"]
    assert [e["Action"] for e in _history(dc, t0, filters={"network": net.id[:12]})] == ["create", "destroy"]
    assert [e["Action"] for e in _history(dc, t0, filters={"image": "busybox:two"})] == ["tag"]
    assert [e["Action"] for e in _history(dc, t0, filters={"type": ["volume", "network"], "event": "create"})] == \
        ["create", "create"]
    assert _history(dc, t0, filters={"label": "nothing=here"}) == []
    # since after everything: nothing; until before everything: nothing
    assert _history(dc, time.time()) == []
    assert list(dc.events(since=t0 - 60, until=t0 - 30, decode=True)) == []
    # bad filters and times are a 400
    for query in ('filters={"colour":["red"]}', 'filters={"type":["bogus"]}', "since=yesterday"):
        status, _, body = http(engine.socket, "GET", f"{API}/events?{query}")
        assert status == 400 and json.loads(body)["message"], query


def test_live_stream_and_until(engine, dc, unique_name) -> None:
    got: queue.Queue = queue.Queue()
    stream = dc.events(decode=True, filters={"type": "volume"})

    def reader() -> None:
        for event in stream:
            got.put(event)
    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    time.sleep(0.2)  # let the subscription reach the engine (not a timing assertion)
    dc.networks.list()  # another client is served meanwhile
    dc.volumes.create(unique_name)
    event = got.get(timeout=20)
    assert (event["Type"], event["Action"], event["Actor"]["ID"]) == ("volume", "create", unique_name)
    dc.volumes.get(unique_name).remove()
    assert got.get(timeout=20)["Action"] == "destroy"
    stream.close()
    # a stream with until in the future ends by itself
    until = time.time() + 1
    assert [e["Action"] for e in dc.events(since=until - 30, until=until, decode=True,
                                           filters={"volume": unique_name})] == ["create", "destroy"]


def test_idle_clients_that_go_away_do_not_block(engine, dc, unique_name) -> None:
    for _ in range(5):
        s = socket.socket(socket.AF_UNIX)
        s.connect(str(engine.socket))
        s.sendall(b"GET /v1.43/events HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.recv(1024).startswith(b"HTTP/1.1 200")
        s.close()
    dc.volumes.create(unique_name)  # publishing to the dead subscribers must not fail
    assert dc.volumes.get(unique_name).name == unique_name
    assert dc.ping()


def test_system_df(engine, dc, unique_name, busybox_rootfs: Path, tmp_path: Path) -> None:
    image_id = import_busybox(engine, busybox_rootfs, tmp_path)
    vol = dc.volumes.create(unique_name)
    (Path(vol.attrs["Mountpoint"]) / "f").write_bytes(b"x" * 10000)
    df = dc.df()
    assert df["BuildCache"] == [] and df["LayersSize"] > 0
    assert [i["Id"] for i in df["Images"]] == [image_id] and df["Images"][0]["Containers"] == 0
    [v] = df["Volumes"]
    assert v["Name"] == unique_name and v["UsageData"]["Size"] >= 10000 and v["UsageData"]["RefCount"] == 0
    status, _, _ = http(engine.socket, "GET", f"{API}/system/df?type=bogus")
    assert status == 400
    container = dc.containers.create("busybox", ["true"], network_mode="none", name=unique_name)
    try:
        df = dc.df()
        [c] = df["Containers"]
        assert c["Id"] == container.id and c["Names"] == [f"/{unique_name}"] and c["SizeRw"] >= 0
        assert df["Images"][0]["Containers"] == 1
    finally:
        container.remove(force=True)


def test_docker_cli_events(engine, unique_name, tmp_path: Path) -> None:
    docker = docker_cli(engine, tmp_path)
    t0 = int(time.time()) - 1
    docker("volume", "create", unique_name)
    docker("volume", "rm", unique_name)
    out = docker("events", "--since", str(t0), "--until", str(int(time.time()) + 1), "--filter", "type=volume",
                 "--format", "{{.Type}} {{.Action}} {{.Actor.ID}}").stdout.decode().splitlines()
    assert out == [f"volume create {unique_name}", f"volume destroy {unique_name}"]
