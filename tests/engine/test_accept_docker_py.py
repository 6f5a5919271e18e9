"""Issue 7's acceptance with docker-py (``docker`` on PyPI, written by nobody here) pointed at a
private pystackd: containers (run detached/attached, logs stream, exec_run, stop, kill, wait,
remove), images (list, get, pull from Debian's docker-registry on loopback after a push
through the engine), networks (create/connect/disconnect/remove in 10.211.0.0/17), volumes,
events (decode, filters, until) and df.

Run: /opt/pystack/venv/bin/python -m pytest tests/engine/test_accept_docker_py.py -q
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from engine_support import engine_subnet
from resource_helpers import assert_engine_clean, registryfix

docker = pytest.importorskip("docker", reason="docker-py is not installed (pip install docker; .ci/run installs it)")


@pytest.fixture
def dc(busybox_engine):
    client = docker.DockerClient(base_url=busybox_engine.url, version="1.41", timeout=120)
    yield client
    client.close()


@pytest.fixture
def local_registry(tmp_path: Path):
    rf = registryfix()
    reg = rf.start_registry(tmp_path)
    yield reg
    reg.stop()


def _wait_runs(c, n: int, timeout: float = 30) -> None:
    """Wait until the container's log shows its n-th run began (n lines "n1")."""
    deadline = time.monotonic() + timeout
    while c.logs().split(b"\n").count(b"n1") < n:
        assert time.monotonic() < deadline, c.logs()[-200:]
        time.sleep(0.05)


def test_run_attached_and_detached_logs_exec_stop_kill_wait_remove(dc, busybox_engine, unique_name) -> None:
    # attached: the output is returned (stdout only by default, both with stderr=True)
    assert dc.containers.run("busybox", ["echo", "hello"], remove=True) == b"hello\n"
    out = dc.containers.run("busybox", ["sh", "-c", "echo out; echo err >&2"], stderr=True, stdout=False,
                            remove=True)
    assert out == b"err\n"
    with pytest.raises(docker.errors.ContainerError) as err:
        dc.containers.run("busybox", ["sh", "-c", "echo boom >&2; exit 5"], name=unique_name + "-f")
    assert err.value.exit_status == 5 and b"boom" in err.value.stderr
    dc.containers.get(unique_name + "-f").remove()
    with pytest.raises(docker.errors.ImageNotFound):  # create does not pull (run would, from the Hub)
        dc.containers.create("no-such-image-here:1", ["true"])

    # detached, with a label; a log stream that follows while it writes
    c = dc.containers.run("busybox", ["sh", "-c", "trap 'echo term; exit 0' TERM; i=0; "
                                      "while true; do i=$((i+1)); echo n$i; sleep 0.05; done"],
                          detach=True, name=unique_name, labels={"accept": unique_name})
    assert c.status == "created"
    c.reload()
    assert c.status == "running" and c.name == unique_name and c.labels == {"accept": unique_name}
    got = b""
    stream = c.logs(stream=True, follow=True)
    for chunk in stream:
        got += chunk
        if b"n5\n" in got:
            break
    stream.close()
    assert got.startswith(b"n1\nn2\nn3\nn4\nn5\n")
    assert [x.id for x in dc.containers.list(filters={"label": f"accept={unique_name}"})] == [c.id]

    # exec_run: exit code and output, demuxed, with env and workdir
    res = c.exec_run(["sh", "-c", "echo $FOO $(pwd); echo e >&2; exit 7"], environment={"FOO": "bar"},
                     workdir="/tmp")
    # stdout and stderr are two pipes: which one the engine reads first is a race (in Docker
    # too), so only the lines are checked here; the demuxed call below checks the streams
    assert res.exit_code == 7 and sorted(res.output.splitlines(keepends=True)) == [b"bar /tmp\n", b"e\n"]
    res = c.exec_run(["sh", "-c", "echo o; echo e >&2"], demux=True)
    assert (res.exit_code, res.output) == (0, (b"o\n", b"e\n"))
    res = c.exec_run(["/no/such/program"])
    assert res.exit_code in (126, 127)

    # stop: the TERM handler runs, exit 0
    c.stop(timeout=10)
    assert c.wait(timeout=30)["StatusCode"] == 0
    c.reload()
    assert c.status == "exited" and c.attrs["State"]["ExitCode"] == 0
    assert c.logs().endswith(b"term\n")

    # kill: 128+9, and wait returns the code
    c.start()
    c.kill()
    assert c.wait(timeout=30)["StatusCode"] == 137
    c.start()
    _wait_runs(c, 3)  # the TERM trap is set before the first line
    c.kill(signal="SIGTERM")
    assert c.wait(timeout=30)["StatusCode"] == 0  # the trap exits 0

    # remove: a running container needs force
    c.start()
    with pytest.raises(docker.errors.APIError) as err:
        c.remove()
    assert err.value.status_code == 409
    c.remove(force=True, v=True)
    with pytest.raises(docker.errors.NotFound):
        dc.containers.get(c.id)
    assert dc.containers.list(all=True, filters={"label": f"accept={unique_name}"}) == []
    assert_engine_clean(busybox_engine, container_ids=[c.id])


def test_images_list_get_push_pull(dc, busybox_engine, local_registry, tmp_path: Path) -> None:
    images = dc.images.list()
    assert [i.tags for i in images] == [["busybox:latest"]]
    bb = dc.images.get("busybox")
    assert bb.id == images[0].id and bb.id.startswith("sha256:")
    with pytest.raises(docker.errors.ImageNotFound):
        dc.images.get("nope:1")
    # push the test image to a registry on loopback through the engine, then pull it back
    repo = f"{local_registry.host}/accept/busybox"
    assert bb.tag(repo, "v1")
    lines = list(dc.images.push(repo, "v1", stream=True, decode=True))
    assert not [ln for ln in lines if "error" in ln], lines
    dc.images.remove(f"{repo}:v1")
    assert f"{repo}:v1" not in [t for i in dc.images.list() for t in i.tags]
    pulled = dc.images.pull(repo, tag="v1")
    assert pulled.id == bb.id and f"{repo}:v1" in pulled.tags
    assert any(d.startswith(f"{repo}@sha256:") for d in pulled.attrs["RepoDigests"])
    # the pulled image runs
    assert dc.containers.run(f"{repo}:v1", ["echo", "pulled"], remove=True) == b"pulled\n"
    with pytest.raises(docker.errors.NotFound):
        dc.images.pull(f"{local_registry.host}/accept/missing", tag="v1")


def test_networks_connect_disconnect_and_volumes(dc, busybox_engine, unique_name) -> None:
    subnet = engine_subnet()
    pool = docker.types.IPAMPool(subnet=subnet)
    net = dc.networks.create(unique_name, driver="bridge", ipam=docker.types.IPAMConfig(pool_configs=[pool]),
                             labels={"accept": "1"})
    assert dc.networks.get(net.id).name == unique_name
    assert unique_name in [n.name for n in dc.networks.list(filters={"label": "accept=1"})]
    vol = dc.volumes.create(unique_name + "-v", labels={"accept": "1"})
    assert vol.name == unique_name + "-v" and dc.volumes.get(vol.name).attrs["Labels"] == {"accept": "1"}
    c = dc.containers.run("busybox", ["sleep", "1000"], detach=True, name=unique_name + "-c",
                          volumes={vol.name: {"bind": "/data", "mode": "rw"}})
    try:
        assert c.exec_run(["sh", "-c", "echo kept > /data/f"]).exit_code == 0
        net.connect(c, aliases=["acc"])
        c.reload()
        ip = c.attrs["NetworkSettings"]["Networks"][unique_name]["IPAddress"]
        prefix = subnet.rsplit(".", 1)[0] + "."
        assert ip.startswith(prefix)
        res = c.exec_run(["ip", "-4", "-o", "addr"])
        assert ip in res.output.decode()
        net.reload()
        assert c.id in [x.id for x in net.containers]
        with pytest.raises(docker.errors.APIError) as err:
            net.remove()  # in use
        assert err.value.status_code in (403, 409)
        net.disconnect(c)
        c.reload()
        assert unique_name not in c.attrs["NetworkSettings"]["Networks"]
        assert ip not in c.exec_run(["ip", "-4", "-o", "addr"]).output.decode()
        with pytest.raises(docker.errors.APIError) as err:
            vol.remove()  # in use
        assert err.value.status_code == 409
    finally:
        c.remove(force=True)
    net.remove()
    with pytest.raises(docker.errors.NotFound):
        dc.networks.get(net.id)
    # the volume outlived its container
    out = dc.containers.run("busybox", ["cat", "/data/f"], remove=True, volumes={vol.name: {"bind": "/data"}})
    assert out == b"kept\n"
    vol.remove()
    with pytest.raises(docker.errors.NotFound):
        dc.volumes.get(vol.name)
    assert_engine_clean(busybox_engine, container_ids=[c.id])


def test_events_filtered_with_until_and_df(dc, busybox_engine, unique_name) -> None:
    since = time.time() - 0.5
    c = dc.containers.run("busybox", ["sh", "-c", "exit 3"], detach=True, name=unique_name)
    assert c.wait(timeout=30)["StatusCode"] == 3
    other = dc.containers.run("busybox", ["true"], detach=True, name="o" + unique_name)  # not a prefix match
    other.wait(timeout=30)
    vol = dc.volumes.create("v" + unique_name)
    vol.remove()
    c.remove()
    until = time.time() + 0.5
    # a stream with `until` in the past ends by itself: history only
    events = list(dc.events(since=since, until=until, decode=True, filters={"container": unique_name}))
    assert events, "no events"
    assert [e for e in events if e["Type"] != "container" or e["Actor"]["ID"] != c.id] == []
    actions = [e["Action"] for e in events]
    assert [a for a in actions if a in ("create", "start", "die", "destroy")] == ["create", "start", "die", "destroy"]
    die = next(e for e in events if e["Action"] == "die")
    assert die["Actor"]["Attributes"]["exitCode"] == "3" and die["Actor"]["Attributes"]["name"] == unique_name
    assert all(since - 1 <= e["time"] <= until + 1 for e in events)
    vol_events = list(dc.events(since=since, until=until, decode=True,
                                filters={"type": "volume", "volume": "v" + unique_name}))
    assert [e["Action"] for e in vol_events] == ["create", "destroy"]
    # a live stream with a near `until` also ends, carrying what happened meanwhile
    start = time.time()
    live = dc.events(since=start, until=start + 3, decode=True, filters={"event": "start"})
    other.start()
    got = list(live)
    assert [e["Actor"]["ID"] for e in got] == [other.id]
    other.remove(force=True)

    df = dc.df()
    assert set(df) >= {"Images", "Containers", "Volumes", "LayersSize"}
    assert [i["RepoTags"] for i in df["Images"]] == [["busybox:latest"]]
    assert df["LayersSize"] > 0
