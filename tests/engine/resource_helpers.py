"""Helpers of the image/network/volume/event API tests: raw HTTP over the engine's socket,
docker-py and docker CLI clients, the busybox tarball, and loopback registries."""
from __future__ import annotations

import importlib.util
import ipaddress
import json
import os
import random
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

API = "/v1.43"


def http(sock_path, method: str, path: str, body: bytes | dict | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.0 request without any client library; the whole response."""
    if isinstance(body, dict):
        body = json.dumps(body).encode()
    body = body or b""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(60)
    s.connect(str(sock_path))
    head = f"{method} {path} HTTP/1.0\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
    for k, v in (headers or {"Content-Type": "application/json"}).items():
        head += f"{k}: {v}\r\n"
    s.sendall(head.encode() + b"\r\n" + body)
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    top, _, payload = data.partition(b"\r\n\r\n")
    lines = top.decode("latin-1").split("\r\n")
    hdrs = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    if "chunked" in hdrs.get("transfer-encoding", ""):
        out, rest = b"", payload
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0] or b"0", 16)
            if size == 0:
                break
            out, rest = out + rest[:size], rest[size + 2:]
        payload = out
    return int(lines[0].split()[1]), hdrs, payload


def json_lines(payload: bytes) -> list[dict]:
    return [json.loads(line) for line in payload.splitlines() if line.strip()]


def docker_client(engine):
    docker = pytest.importorskip("docker", reason="docker-py is not installed (pip install docker)")
    return docker.DockerClient(base_url=engine.url, version="1.43", timeout=120)


def docker_cli(engine, tmp_path: Path):
    """A function running the docker CLI against the engine (skips when the CLI is missing)."""
    exe = shutil.which("docker")
    if exe is None:
        pytest.skip("the docker CLI is not installed (Debian docker.io; .ci/run installs it)")
    conf = tmp_path / "docker-cli-config"
    conf.mkdir(exist_ok=True)
    env = {**os.environ, "DOCKER_HOST": engine.url, "DOCKER_CONFIG": str(conf)}
    env.pop("DOCKER_CONTEXT", None)

    def run(*args: str, ok: bool = True, input: bytes | None = None) -> subprocess.CompletedProcess:
        p = subprocess.run([exe, *args], env=env, capture_output=True, timeout=120, input=input)
        if ok:
            assert p.returncode == 0, (args, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace"))
        return p
    return run


def busybox_tar(busybox_rootfs: Path, dest: Path) -> bytes:
    out = dest / "busybox-rootfs.tar"
    if not out.exists():
        subprocess.run(["tar", "-C", str(busybox_rootfs), "-cf", str(out), "."], check=True)
    return out.read_bytes()


def import_busybox(engine, busybox_rootfs: Path, tmp_path: Path, repo: str = "busybox", tag: str = "latest",
                   changes: tuple[str, ...] = ('CMD ["sh"]',)) -> str:
    """POST /images/create?fromSrc=- as docker-py's import_image_from_data does; the image id."""
    from urllib.parse import urlencode
    query = urlencode([("fromSrc", "-"), ("repo", repo), ("tag", tag)] + [("changes", c) for c in changes])
    status, _, payload = http(engine.socket, "POST", f"{API}/images/create?{query}",
                              busybox_tar(busybox_rootfs, tmp_path), {"Content-Type": "application/x-tar"})
    assert status == 200, payload
    return json_lines(payload)[-1]["status"]


def registryfix():
    """tests/images/registryfix.py (Debian's docker-registry on loopback), loaded by path."""
    path = Path(__file__).resolve().parents[1] / "images" / "registryfix.py"
    spec = importlib.util.spec_from_file_location("_engine_registryfix", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("_engine_registryfix", module)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def free_subnet() -> str:
    """A /24 of the engine's test range (10.211.0.0/16) that no host route uses."""
    routes = subprocess.run(["ip", "-4", "route", "show"], capture_output=True, text=True).stdout
    used = []
    for line in routes.splitlines():
        try:
            used.append(ipaddress.ip_network(line.split()[0], strict=False))
        except ValueError:
            continue
    for _ in range(200):
        net = ipaddress.ip_network(f"10.211.{random.randint(100, 254)}.0/24")
        if not any(net.overlaps(u) for u in used):
            return str(net)
    raise RuntimeError("no free /24 in 10.211.0.0/16")


def link_exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", name], capture_output=True).returncode == 0


def assert_engine_clean(engine, bridges=(), container_ids=(), timeout: float = 15.0) -> None:
    """What this test's engine made is gone: the given bridges, the host veths of the given
    containers, and every netns mount under the engine's run dir.

    Only this engine's objects are checked (other suites may run beside this one); the
    container manager tears a sandbox down right after the removal, so this polls a while.
    """
    import time

    def leftovers() -> list[str]:
        links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
        names = {ln.split(": ")[1].split("@")[0] for ln in links.splitlines() if ": " in ln}
        found = [b for b in bridges if b in names]
        found += [n for n in names for cid in container_ids if n.startswith("psv" + cid[:8])]
        mounts = Path("/proc/self/mounts").read_text().split("\n")
        found += [m.split()[1] for m in mounts if m and m.split()[1].startswith(str(engine.run))]
        return found
    deadline = time.monotonic() + timeout
    while (left := leftovers()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"left behind by the engine: {left}"
