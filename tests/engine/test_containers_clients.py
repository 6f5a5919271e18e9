"""Acceptance with clients no one here wrote: the docker CLI and docker-py on pystackd."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import pytest

DOCKER = shutil.which("docker")


@pytest.fixture
def docker_cli(busybox_engine):
    if DOCKER is None:
        pytest.skip("the docker CLI is not installed (apt-get install docker.io; .ci/run installs it)")
    env = {**os.environ, "DOCKER_HOST": busybox_engine.url, "DOCKER_CONFIG": str(busybox_engine.base / "dockercfg")}
    env.pop("DOCKER_CONTEXT", None)

    def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([DOCKER, *args], env=env, capture_output=True, text=True, timeout=timeout)
    return run


def test_docker_cli_container_lifecycle(docker_cli, busybox_engine, unique_name) -> None:
    out = docker_cli("run", "--rm", "busybox", "echo", "hi")
    assert (out.returncode, out.stdout) == (0, "hi\n"), out.stderr
    out = docker_cli("run", "--name", unique_name + "-x", "busybox", "sh", "-c", "exit 3")
    assert out.returncode == 3, out.stderr
    out = docker_cli("run", "-d", "--name", unique_name, "--label", "t=1", "busybox",
                     "sh", "-c", "echo started; trap 'echo bye; exit 0' TERM; while true; do sleep 0.1; done")
    assert out.returncode == 0, out.stderr
    cid = out.stdout.strip()
    assert len(cid) == 64
    out = docker_cli("ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Names}} {{.Status}}")
    rows = {line.split()[1]: line for line in out.stdout.splitlines()}
    assert rows[unique_name].startswith(cid) and " Up " in rows[unique_name]
    assert "Exited (3)" in rows[unique_name + "-x"]
    out = docker_cli("ps", "--filter", "label=t=1", "-q")
    assert out.stdout.split() == [cid[:12]]
    out = docker_cli("inspect", unique_name)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)[0]
    assert doc["Id"] == cid and doc["State"]["Running"] and doc["Config"]["Labels"] == {"t": "1"}
    assert doc["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
    out = docker_cli("network", "ls", "--format", "{{.Name}}")
    assert "bridge" in out.stdout.split()
    out = docker_cli("volume", "ls")
    assert out.returncode == 0 and out.stdout.startswith("DRIVER")
    logs = subprocess.Popen([DOCKER, "logs", "-f", unique_name], env={
        **os.environ, "DOCKER_HOST": busybox_engine.url, "DOCKER_CONFIG": str(busybox_engine.base / "dockercfg")},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)
    out = docker_cli("stop", unique_name)
    assert out.returncode == 0, out.stderr
    stdout, _ = logs.communicate(timeout=30)  # logs -f ends when the container stops
    assert stdout == "started\nbye\n"
    out = docker_cli("wait", unique_name)
    assert out.stdout.strip() == "0"
    out = docker_cli("rm", unique_name, unique_name + "-x")
    assert out.returncode == 0, out.stderr
    out = docker_cli("rm", unique_name)
    assert out.returncode != 0 and "No such container" in out.stderr
    assert busybox_engine.leaks() == {}


def test_docker_py_containers(busybox_engine, unique_name) -> None:
    docker = pytest.importorskip("docker")
    client = busybox_engine.client()
    assert client.containers.run("busybox", ["sh", "-c", "echo out; echo err >&2"], remove=True,
                                 stderr=True) in (b"out\nerr\n", b"err\nout\n")
    with pytest.raises(docker.errors.ContainerError) as err:
        client.containers.run("busybox", ["sh", "-c", "exit 2"], name=unique_name + "-f", remove=True)
    assert err.value.exit_status == 2
    c = client.containers.run("busybox", ["sh", "-c", "for i in 1 2 3; do echo line$i; sleep 0.1; done; sleep 1000"],
                              detach=True, name=unique_name)
    lines = []
    for chunk in c.logs(stream=True, follow=True):
        lines.append(chunk)
        if b"line3" in b"".join(lines):
            break
    assert b"".join(lines) == b"line1\nline2\nline3\n"
    res = c.exec_run(["sh", "-c", "echo $((1+2)); exit 4"])
    assert (res.exit_code, res.output) == (4, b"3\n")
    c.kill(signal="SIGKILL")
    assert c.wait(timeout=30)["StatusCode"] == 137
    c.reload()
    assert c.status == "exited"
    c.start()
    c.reload()
    assert c.status == "running"
    c.stop(timeout=1)
    c.remove(v=True)
    with pytest.raises(docker.errors.NotFound):
        client.containers.get(unique_name)
    # events: create/start/die/destroy of one container
    since = int(time.time()) - 1
    c = client.containers.run("busybox", ["true"], name=unique_name + "-e", detach=True)
    c.wait()
    c.remove()
    events = client.events(since=since, until=int(time.time()) + 1, decode=True,
                           filters={"container": unique_name + "-e"})
    actions = [e["Action"] for e in events]
    assert [a for a in actions if a in ("create", "start", "die", "destroy")] == ["create", "start", "die", "destroy"]
    client.close()
