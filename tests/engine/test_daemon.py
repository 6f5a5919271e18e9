"""The daemon's lifecycle and the endpoints clients negotiate with, through real clients."""
from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest


def raw_request(sock_path, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
    """One HTTP/1.0 request over the UNIX socket, without any client library."""
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(sock_path))
    head = f"{method} {path} HTTP/1.0\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
    s.sendall(head.encode() + b"Content-Type: application/json\r\n\r\n" + body)
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    status = int(data.split(b" ", 2)[1])
    return status, data.split(b"\r\n\r\n", 1)[1]


def test_ping_and_version_through_docker_py(engine) -> None:
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=engine.url, version="auto")
    assert client.ping() is True
    version = client.version()
    assert version["ApiVersion"] == "1.43"
    assert client.info()["OSType"] == "linux"
    client.close()


def test_versioned_and_bare_paths(engine) -> None:
    for path in ("/_ping", "/v1.41/_ping", "/v1.43/_ping"):
        status, body = raw_request(engine.socket, "GET", path)
        assert (status, body) == (200, b"OK")
    status, _ = raw_request(engine.socket, "GET", "/v1.41/nonexistent")
    assert status == 404


def test_socket_is_root_only(engine) -> None:
    mode = engine.socket.stat().st_mode & 0o777
    assert mode == 0o660
    assert engine.socket.stat().st_uid == 0


def test_second_daemon_on_same_root_is_refused(engine) -> None:
    out = subprocess.run([sys.executable, "-m", "pystack.engine.daemon"], env=engine.env,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    assert "another engine" in out.stderr
    assert "Traceback" not in out.stderr


def test_sigterm_stops_cleanly(engine) -> None:
    assert engine.stop() == 0
    assert not engine.socket.exists()
