"""`pystack info` and `pystack engine start|status|stop`, and the image/volume commands
going through whichever engine PYSTACK_HOST names (a real process each time)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from resource_helpers import docker_client, import_busybox


def _running(pid: int) -> bool:
    """Alive and not a zombie (the engine's parent, the CLI, is gone; a subreaper may reap late)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _pystack(env: dict[str, str], *args: str, input: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from pystack.cli import main; main()", *args],
                          capture_output=True, env=env, timeout=60, input=input)


@pytest.fixture
def private_env(tmp_path: Path):
    """A root and run dir of our own and no PYSTACK_HOST: `engine start` starts pystackd there."""
    env = {**os.environ, "PYSTACK_ROOT": str(tmp_path / "root"), "PYSTACK_RUN": str(tmp_path / "run")}
    env.pop("PYSTACK_HOST", None)
    env.pop("PYSTACK_NO_AUTOSTART", None)
    yield env
    pid_file = tmp_path / "run" / "pystackd.pid"
    if pid_file.exists():  # a failed test left it running: stop it by its PID
        pid = int(pid_file.read_text())
        if _running(pid) and b"pystack" in Path(f"/proc/{pid}/cmdline").read_bytes():
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 20
            while _running(pid) and time.monotonic() < deadline:
                time.sleep(0.05)


def test_engine_start_status_stop(private_env, tmp_path: Path) -> None:
    st = _pystack(private_env, "engine", "status")
    assert st.returncode == 1 and b"not running" in st.stdout
    started = _pystack(private_env, "engine", "start")
    assert started.returncode == 0, started.stderr
    sock = tmp_path / "run" / "pystack.sock"
    assert f"unix://{sock}".encode() in started.stdout
    pid = int((tmp_path / "run" / "pystackd.pid").read_text())
    again = _pystack(private_env, "engine", "start")  # already running: the same engine
    assert again.returncode == 0 and f"(pid {pid})".encode() in again.stdout
    status = json.loads(_pystack(private_env, "engine", "status", "--format", "json").stdout)
    assert status["Running"] is True and status["Pid"] == pid and status["ApiVersion"] == "1.43"
    # every image/volume command reaches this engine, which owns the stores
    assert _pystack(private_env, "volume", "create", "v1").stdout == b"v1\n"
    assert (tmp_path / "root" / "volumes" / "v1" / "_data").is_dir()
    stopped = _pystack(private_env, "engine", "stop")
    assert stopped.returncode == 0 and f"stopped (pid {pid})".encode() in stopped.stdout
    assert not _running(pid) and not sock.exists()
    assert _pystack(private_env, "engine", "stop").stdout == b"pystackd is not running\n"
    # a command started on demand brings the engine back, with its state
    assert _pystack(private_env, "volume", "ls", "-q").stdout == b"v1\n"
    log = _pystack(private_env, "engine", "logs", "-n", "0")
    assert log.returncode == 0 and log.stdout.count(b"listening on unix://") == 2
    assert _pystack(private_env, "engine", "stop").returncode == 0


def test_info_and_commands_through_pystack_host(engine, busybox_rootfs: Path, tmp_path: Path) -> None:
    env = {**engine.env, "DOCKER_CONFIG": str(tmp_path / "docker-config")}
    info = _pystack(env, "info")
    assert info.returncode == 0, info.stderr
    text = info.stdout.decode()
    assert "Engine: pystackd" in text and f"Docker Root Dir: {engine.root}" in text
    doc = json.loads(_pystack(env, "info", "--format", "json").stdout)
    assert doc["OSType"] == "linux" and doc["DockerRootDir"] == str(engine.root)
    assert _pystack(env, "info", "--format", "{{.OSType}}").stdout == b"linux\n"
    # the image commands see what another client (docker-py) did through the same engine
    image_id = import_busybox(engine, busybox_rootfs, tmp_path)
    ls = _pystack(env, "image", "ls").stdout.decode().splitlines()
    assert ls[1].split()[:3] == ["busybox", "latest", image_id[7:19]]
    dc = docker_client(engine)
    try:
        assert _pystack(env, "image", "tag", "busybox", "other:1").returncode == 0
        assert "other:1" in dc.images.get(image_id).tags
        assert _pystack(env, "volume", "create", "--label", "a=b", "vv").returncode == 0
        assert dc.volumes.get("vv").attrs["Labels"] == {"a": "b"}
    finally:
        dc.close()
    out = _pystack(env, "image", "rm", "other:1")
    assert out.returncode == 0 and out.stdout == b"Untagged: other:1\n"


def test_unreachable_engine_is_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "PYSTACK_HOST": f"unix://{tmp_path}/nobody.sock", "PYSTACK_ROOT": str(tmp_path / "r")}
    for args in (["image", "ls"], ["volume", "ls"], ["info"], ["login", "x.example", "-u", "a", "-p", "b"]):
        p = _pystack(env, *args)
        err = p.stderr.decode()
        assert p.returncode != 0 and "cannot reach the engine" in err and "Traceback" not in err, (args, err)
        assert len(err.strip().splitlines()) == 1, err
    st = _pystack(env, "engine", "start")
    assert st.returncode != 0 and b"does not answer" in st.stderr
