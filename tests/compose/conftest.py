"""Fixtures for the compose front: a private dockerd, the busybox image in it, projects.

The dockerd runs on its own socket, data root, exec root and pidfile, with
``--iptables=false`` (it would otherwise set the FORWARD policy to DROP and cut other
bridges), no default bridge, and an address pool inside the dockerd-oracle range
(10.213.0.0/16; these tests use 10.213.192.0/18). It starts its own containerd and is
stopped by PID at the end of the session; everything under its roots is removed.
When pystackd can serve the same API, it will join the ``engine`` parameters.
"""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pystack.compose.dockerd import Dockerd, DockerdUnavailable, start_dockerd

PYSTACK = [str(Path(sys.executable).parent / "pystack")]


@pytest.fixture(scope="session")
def dockerd(busybox_rootfs):
    """A private dockerd with ``busybox:latest`` imported; skipped where dockerd cannot run."""
    try:
        d = start_dockerd()
    except DockerdUnavailable as exc:
        pytest.skip(f"the dockerd oracle cannot run here: {exc}")
    try:
        d.import_rootfs(busybox_rootfs, "busybox:latest")
        yield d
    finally:
        d.stop()


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
