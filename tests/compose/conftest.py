"""Fixtures for the compose front: a private dockerd, the busybox image in it, projects.

The dockerd runs on its own socket, data root, exec root and pidfile, with
``--iptables=false`` (it would otherwise set the FORWARD policy to DROP and cut other
bridges), no default bridge, and an address pool inside the dockerd-oracle range
(10.213.0.0/16; these tests use 10.213.192.0/18). It starts its own containerd and is
stopped by PID at the end of the session; everything under its roots is removed.
The same scenarios run against pystackd (the ``engine`` parameter): skipped only where it
is not installed or the tests do not run as root; an endpoint it does not serve fails.
"""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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

    engine: Any
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


@dataclass
class Pystackd:
    """pystack's own engine, on its own root, run dir and socket."""

    socket: str
    root: Path
    proc: subprocess.Popen
    kind: str = "pystackd"

    @property
    def host(self) -> str:
        return "unix://" + self.socket

    def client(self):
        from pystack.compose.client import EngineClient

        return EngineClient(self.socket)


@pytest.fixture(scope="session")
def pystackd(busybox_rootfs, tmp_path_factory):
    """pystackd with busybox imported; skipped only when not installed or not root."""
    import shutil
    import signal
    import time
    import uuid

    exe = shutil.which("pystackd") or str(Path(sys.executable).parent / "pystackd")
    if not Path(exe).exists() or os.geteuid() != 0:
        pytest.skip("pystackd is not installed or not root")
    root = tmp_path_factory.mktemp("pystackd")
    tag = uuid.uuid4().hex[:8]
    sock = f"/run/pystack-compose-test-{tag}.sock"
    # Its own cgroup parent, removed with what is left in it at the end: isolation from the
    # other engines on this host (before a541d29 a pystackd starting up swept every cgroup
    # under its parent, killing other engines' containers with 137).
    cgroup_parent = f"pystack-compose-test-{tag}"
    log = open(root / "pystackd.log", "wb")
    proc = subprocess.Popen([exe, "--root", str(root / "state"), "--run", str(root / "run"), "--host", sock],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env=dict(os.environ, PYSTACK_CGROUP_PARENT=cgroup_parent))
    engine = Pystackd(sock, root, proc)
    try:
        client = engine.client()
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                pytest.fail("pystackd exited: " + (root / "pystackd.log").read_text()[-300:])
            try:
                client.ping()
                break
            except Exception:
                if time.monotonic() > deadline:
                    pytest.fail("pystackd did not answer within 20 s")
                time.sleep(0.1)
        # A missing endpoint is a failure from here on, not a skip.
        import io
        import tarfile

        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for entry in sorted(busybox_rootfs.iterdir()):
                if entry.name != ".complete":
                    tar.add(str(entry), arcname=entry.name)
        client.request("POST", "/images/create", params={"fromSrc": "-", "repo": "busybox", "tag": "latest"},
                       headers={"Content-Type": "application/x-tar"}, raw_body=buf.getvalue())
        yield engine
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
        from pystack.runtime import cgroups

        try:
            cgroups.cleanup_parent(cgroup_parent)
        except Exception:  # noqa: BLE001 - nothing was ever created under it
            pass


@pytest.fixture(params=["dockerd", "pystackd"])
def engine(request):
    """The engine the scenarios run against: the dockerd oracle and pystack's own engine.

    Both must give the same observable results; each is skipped only where it cannot run
    (dockerd not installed / cannot start; pystackd not installed or not root).
    """
    return request.getfixturevalue(request.param)


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


SLOW = {"test_interoperates_with_docker_compose", "test_quickstart", "test_down_leaves_named_volumes_and_nothing_else",
        "test_start_stop_restart_kill_pause_rm"}


def pytest_collection_modifyitems(config, items):
    """Scenarios on the dockerd oracle are ``oracle``; the few longest are also ``slow``."""
    here = Path(__file__).parent
    for item in items:
        if here not in Path(str(item.fspath)).parents:
            continue
        if "[dockerd]" in item.name:
            item.add_marker(pytest.mark.oracle)
        if item.originalname in SLOW:
            item.add_marker(pytest.mark.slow)
