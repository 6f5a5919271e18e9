"""Fixtures for the compose front: a private dockerd, the busybox image in it, projects.

The dockerd runs on its own socket, data root, exec root and pidfile, with
``--iptables=false`` (it would otherwise set the FORWARD policy to DROP and cut other
bridges), no default bridge, and an address pool inside the dockerd-oracle range
(10.213.0.0/16; these tests use 10.213.192.0/18). It starts its own containerd and is
stopped by PID at the end of the session; everything under its roots is removed.
When pystackd can serve the same API, it will join the ``engine`` parameters.
"""
from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PYSTACK = [str(Path(sys.executable).parent / "pystack")]


@dataclass
class Dockerd:
    socket: str
    root: Path
    pid: int

    @property
    def host(self) -> str:
        return "unix://" + self.socket

    def client(self):
        from pystack.compose.client import EngineClient

        return EngineClient(self.socket)


def _tar_dir(path: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for entry in sorted(path.iterdir()):
            if entry.name == ".complete":
                continue
            tar.add(str(entry), arcname=entry.name)
    return buf.getvalue()


def _stop_pid(pid: int, timeout: float = 20.0) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="session")
def dockerd(busybox_rootfs):
    """A private dockerd with ``busybox:latest`` imported; skipped where dockerd cannot run."""
    exe = shutil.which("dockerd")
    if exe is None or os.geteuid() != 0:
        pytest.skip("dockerd is not installed or not root: the dockerd oracle cannot run")
    ident = uuid.uuid4().hex[:8]
    root = Path(tempfile.mkdtemp(prefix="pystack-compose-dockerd-"))
    sock = f"/run/pystack-test-dockerd-{ident}.sock"
    pidfile = root / "dockerd.pid"
    log = open(root / "dockerd.log", "wb")
    proc = subprocess.Popen(
        [exe, "--host", "unix://" + sock, "--data-root", str(root / "data"),
         "--exec-root", str(root / "exec"), "--pidfile", str(pidfile),
         "--iptables=false", "--ip6tables=false", "--bridge=none",
         "--default-address-pool", "base=10.213.192.0/18,size=24",
         "--storage-driver", "overlay2", "--containerd-namespace", f"pystack-{ident}",
         "--containerd-plugins-namespace", f"pystack-{ident}-plugins"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    d = Dockerd(sock, root, proc.pid)
    client = d.client()
    deadline = time.monotonic() + 40
    while True:
        if proc.poll() is not None:
            tail = (root / "dockerd.log").read_text(errors="replace")[-400:]
            shutil.rmtree(root, ignore_errors=True)
            pytest.skip(f"dockerd could not start: {tail}")
        try:
            client.ping()
            break
        except Exception:
            if time.monotonic() > deadline:
                _stop_pid(proc.pid)
                shutil.rmtree(root, ignore_errors=True)
                pytest.skip("dockerd did not answer within 40 s")
            time.sleep(0.2)
    client.request("POST", "/images/create", params={"fromSrc": "-", "repo": "busybox", "tag": "latest"},
                   headers={"Content-Type": "application/x-tar"}, raw_body=_tar_dir(busybox_rootfs))
    try:
        yield d
    finally:
        try:
            for c in client.containers(all=True):
                client.remove(c["Id"], force=True, volumes=True)
        except Exception:
            pass
        _stop_pid(proc.pid)
        proc.wait(timeout=30)
        log.close()
        # dockerd unmounts its layers on shutdown; anything left is unmounted before removal
        for line in reversed(Path("/proc/self/mounts").read_text().splitlines()):
            mnt = line.split()[1]
            if mnt.startswith(str(root)):
                subprocess.run(["umount", "-l", mnt], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
        try:
            os.unlink(sock)
        except FileNotFoundError:
            pass


@dataclass
class Stack:
    """A project directory and a ``pystack`` runner pointed at the test engine."""

    engine: Dockerd
    dir: Path
    name: str
    env: dict[str, str] = field(default_factory=dict)

    def write(self, text: str, filename: str = "compose.yaml") -> Path:
        path = self.dir / filename
        path.write_text(text)
        return path

    def run(self, *args: str, check: bool = True, timeout: float = 90, input: str | None = None
            ) -> subprocess.CompletedProcess:
        proc = subprocess.run(PYSTACK + ["-p", self.name, "--progress", "plain", *args], cwd=self.dir,
                              env=self.env, capture_output=True, text=True, timeout=timeout,
                              input=input, stdin=None if input is not None else subprocess.DEVNULL)
        if check and proc.returncode != 0:
            raise AssertionError(f"pystack {' '.join(args)} exited {proc.returncode}:\n"
                                 f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
        return proc

    def popen(self, *args: str, **kw) -> subprocess.Popen:
        return subprocess.Popen(PYSTACK + ["-p", self.name, "--progress", "plain", *args], cwd=self.dir,
                                env=self.env, **kw)

    def client(self):
        return self.engine.client()

    def containers(self, all: bool = True) -> list[dict]:
        return self.client().containers(all=all, labels=[f"com.docker.compose.project={self.name}"])

    def by_name(self) -> dict[str, dict]:
        return {c["Names"][0].lstrip("/"): c for c in self.containers()}

    def inspect(self, name: str) -> dict:
        return self.client().inspect(name)


@pytest.fixture(params=["dockerd"])
def engine(request, dockerd):
    """The engine the scenarios run against (pystackd joins when it serves the API)."""
    return dockerd


@pytest.fixture
def stack(engine, tmp_path, unique_name):
    env = dict(os.environ)
    env.pop("DOCKER_HOST", None)
    env["PYSTACK_HOST"] = engine.host
    env["COMPOSE_PROJECT_NAME"] = unique_name
    d = tmp_path / "proj"
    d.mkdir()
    s = Stack(engine, d, unique_name, env)
    yield s
    # tear down by label, whatever the test left
    client = engine.client()
    label = f"com.docker.compose.project={unique_name}"
    for c in client.containers(all=True, labels=[label]):
        client.remove(c["Id"], force=True, volumes=True)
    for n in client.networks(labels=[label]):
        client.network_remove(n["Id"])
    for v in client.volumes(labels=[label]):
        client.volume_remove(v["Name"], force=True)
