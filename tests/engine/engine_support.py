"""The private-pystackd helpers engine tests share: ``EngineProcess``, ``EngineAPI``, ``engine_subnet``.

A plain module (not conftest) so test modules can import it by name: several test folders have
a ``conftest.py``, and ``from conftest import ...`` picks whichever was imported last.
"""
from __future__ import annotations

import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest

def _free_octet(low: int, high: int, avoid: tuple[int, ...] = ()) -> int:
    routes = subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True).stdout
    for _ in range(500):
        n = random.randint(low, high)
        if n not in avoid and f"10.211.{n}.0/" not in routes:
            return n
    raise RuntimeError("no free 10.211.x.0/24 subnet for a test engine")


def engine_subnet() -> str:
    """A /24 of 10.211.0.0/17 not routed on this host now (for networks a test creates)."""
    return f"10.211.{_free_octet(1, 127)}.0/24"


class EngineProcess:
    """A running pystackd started by a test; stopped by PID in teardown."""

    def __init__(self, base: Path, start: bool = True, env: dict[str, str] | None = None) -> None:
        self.base = base
        self.root = base / "root"
        self.run = base / "run"
        self.socket = base / "pystack.sock"
        self.cgroup_parent = "pystack-t" + uuid.uuid4().hex[:8]
        # a list: the engine takes the first one no other engine has routed meanwhile
        octets: list[int] = []
        for _ in range(4):
            octets.append(_free_octet(128, 254, tuple(octets)))
        self.bridge_subnet = ",".join(f"10.211.{n}.0/24" for n in octets)
        self.env = {**os.environ, "PYSTACK_ROOT": str(self.root), "PYSTACK_RUN": str(self.run),
                    "PYSTACK_HOST": f"unix://{self.socket}", "PYSTACK_CGROUP_PARENT": self.cgroup_parent,
                    "PYSTACK_BRIDGE_SUBNET": self.bridge_subnet, **(env or {})}
        self.log = open(base / "pystackd.log", "a+")
        self.proc: subprocess.Popen | None = None
        if start:
            self.start()

    def start(self) -> None:
        """Start (again) a pystackd on this root and wait until it answers /_ping."""
        if self.log.closed:
            self.log = open(self.base / "pystackd.log", "a+")
        self.proc = subprocess.Popen([sys.executable, "-m", "pystack.engine.daemon"], env=self.env,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            if self.socket.exists():
                try:
                    if EngineAPI(self.socket).get("/_ping")[0] == 200:
                        return
                except OSError:
                    pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.log.seek(0)
                raise RuntimeError(f"pystackd did not start: {self.log.read()[-4000:]}")
            time.sleep(0.02)

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def client(self, timeout: float = 60):
        """A docker-py client on this engine."""
        docker = pytest.importorskip("docker")
        return docker.DockerClient(base_url=self.url, version="1.43", timeout=timeout)

    def api(self, timeout: float = 60) -> "EngineAPI":
        return EngineAPI(self.socket, timeout)

    def import_busybox(self, rootfs: Path, ref: str = "busybox:latest") -> str:
        """Import the test image into this engine's store (only while the engine is stopped,
        or before its first start)."""
        from pystack.runtime.images import ImageStore
        return ImageStore(self.root / "images").import_rootfs(rootfs, ref).id

    def kill9(self) -> None:
        """SIGKILL the daemon (its containers' shims live on)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> int:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self.log.closed:
            self.log.close()
        return self.proc.returncode if self.proc is not None else 0

    def read_log(self) -> str:
        return (self.base / "pystackd.log").read_text()

    def cleanup(self) -> None:
        """Teardown: remove every container through the API, stop the engine, then sweep
        what a broken engine could have left (cgroups under its parent)."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                api = self.api(timeout=60)
                status, items = api.get("/containers/json?all=1")
                if status == 200:
                    for c in items:
                        api.delete(f"/containers/{c['Id']}?force=1&v=1")
                status, nets = api.get("/networks")
                if status == 200:
                    for n in nets:
                        api.delete(f"/networks/{n['Id']}")
            except OSError:
                pass
        self.stop()
        try:
            from pystack.runtime import cgroups
            cgroups.cleanup_parent(self.cgroup_parent)
        except Exception:  # noqa: BLE001
            pass
        _cleanup_networks(self)

    def leaks(self) -> dict[str, list[str]]:
        """Kernel objects this engine still holds: mounts under its dirs, netns, cgroups,
        bridges and veths (call after removing everything)."""
        out: dict[str, list[str]] = {}
        mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
        mine = [m for m in mounts if m.startswith(str(self.base))]
        if mine:
            out["mounts"] = mine
        netns_dir = self.run / "net" / "netns"
        if netns_dir.is_dir() and any(netns_dir.iterdir()):
            out["netns"] = [p.name for p in netns_dir.iterdir()]
        cgs = []
        for ctrl in Path("/sys/fs/cgroup").iterdir():
            d = ctrl / self.cgroup_parent
            if d.is_dir():
                cgs += [str(p) for p in d.iterdir() if p.is_dir()]
        if cgs:
            out["cgroups"] = cgs
        return out


def _cleanup_networks(engine: EngineProcess) -> None:
    """Remove bridges/state a killed engine left (through the networking library)."""
    try:
        from pystack.networking import NetworkManager
        nm = NetworkManager(engine.root / "networks", engine.run / "net", dns=False)
        nm.cleanup_all()
        nm.close()
    except Exception:  # noqa: BLE001
        pass


class EngineAPI:
    """A tiny Engine API client over the UNIX socket (one connection per call)."""

    def __init__(self, sock: Path | str, timeout: float = 60) -> None:
        self.sock = str(sock)
        self.timeout = timeout

    def _conn(self) -> http.client.HTTPConnection:
        conn = http.client.HTTPConnection("localhost", timeout=self.timeout)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.sock)
        conn.sock = s
        return conn

    def request(self, method: str, path: str, body: Any = None,
                headers: dict[str, str] | None = None) -> tuple[int, Any]:
        conn = self._conn()
        try:
            data = None
            hdrs = dict(headers or {})
            if body is not None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                hdrs.setdefault("Content-Type", "application/json")
            conn.request(method, quote(path, safe="/?&=:%+,;@!$'()*"), body=data, headers=hdrs)
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        if resp.getheader("Content-Type", "").startswith("application/json") and raw.strip():
            try:
                return resp.status, json.loads(raw)
            except ValueError:
                return resp.status, raw
        return resp.status, raw

    def get(self, path: str) -> tuple[int, Any]:
        return self.request("GET", path)

    def post(self, path: str, body: Any = None) -> tuple[int, Any]:
        return self.request("POST", path, body if body is not None else {})

    def delete(self, path: str) -> tuple[int, Any]:
        return self.request("DELETE", path)

    def create(self, cmd: list[str] | None = None, name: str | None = None, image: str = "busybox:latest",
               **config: Any) -> str:
        body = {"Image": image, **config}
        if cmd is not None:
            body["Cmd"] = cmd
        path = "/containers/create" + (f"?{urlencode({'name': name})}" if name else "")
        status, out = self.post(path, body)
        assert status == 201, (status, out)
        return out["Id"]

    def run(self, cmd: list[str] | None = None, name: str | None = None, **config: Any) -> str:
        cid = self.create(cmd, name, **config)
        status, out = self.post(f"/containers/{cid}/start")
        assert status == 204, (status, out)
        return cid

    def inspect(self, ref: str) -> dict:
        status, out = self.get(f"/containers/{quote(ref)}/json")
        assert status == 200, (status, out)
        return out

    def wait(self, ref: str, condition: str = "not-running") -> dict:
        status, out = self.post(f"/containers/{quote(ref)}/wait?condition={condition}")
        assert status == 200, (status, out)
        return out


