"""Helpers that run Debian's reference registry (``docker-registry``) on 127.0.0.1.

Each registry gets a free port, its own storage dir and config file, and is stopped by
PID in teardown. Docker Hub cannot be reached from here, so every registry test runs
against these local registries (and, for the token flow, a token issuer below).
"""
from __future__ import annotations

import base64
import http.client
import json
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit


PORTS = range(25000, 26000)  # this area's loopback ports (registries, proxies, token issuers)


def free_port() -> int:
    """A port of PORTS that is free on 127.0.0.1 now (random order: parallel runs rarely meet)."""
    import random
    for port in random.sample(PORTS, len(PORTS)):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {PORTS}")


def http_server(handler: type) -> ThreadingHTTPServer:
    """A threading HTTP server on 127.0.0.1 at a port of PORTS."""
    for _ in range(50):
        try:
            return ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
        except OSError:  # taken between the probe and the bind: another one
            continue
    raise RuntimeError(f"no free port in {PORTS}")


@dataclass
class Registry:
    host: str          # "127.0.0.1:PORT"
    proc: subprocess.Popen
    storage: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def get(self, path: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
        conn = http.client.HTTPConnection(self.host, timeout=10)
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        body = r.read()
        conn.close()
        return r.status, dict(r.headers), body


def start_registry(tmp: Path, auth: dict | None = None) -> Registry:
    port = free_port()
    storage = tmp / f"registry-{port}"
    storage.mkdir(parents=True)
    config = {
        "version": 0.1, "log": {"level": "error", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(storage)}, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}"},
    }
    if auth:
        config["auth"] = auth
    cfg = tmp / f"registry-{port}.yml"
    cfg.write_text(json.dumps(config))  # YAML is a superset of JSON
    log = open(tmp / f"registry-{port}.log", "wb")
    proc = subprocess.Popen(["docker-registry", "serve", str(cfg)], stdout=log, stderr=subprocess.STDOUT)
    reg = Registry(f"127.0.0.1:{port}", proc, storage)
    deadline = time.monotonic() + 20
    while True:
        try:
            status, _, _ = reg.get("/v2/")
            if status in (200, 401):
                return reg
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            reg.stop()
            raise RuntimeError(f"docker-registry did not start: {(tmp / f'registry-{port}.log').read_text()}")
        time.sleep(0.05)


def htpasswd_file(tmp: Path, user: str, password: str) -> Path:
    out = subprocess.run(["htpasswd", "-Bbn", user, password], capture_output=True, text=True, check=True).stdout
    path = tmp / "htpasswd"
    path.write_text(out)
    return path


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenIssuer:
    """A minimal Docker token server (distribution's token auth spec) for the test.

    It checks Basic credentials, grants the requested scope, and signs an RS256 JWT with
    a throw-away key (``openssl``) whose self-signed certificate the registry trusts via
    ``x5c``. It records each request so tests can check what the client sent.
    """

    def __init__(self, tmp: Path, user: str, password: str, service: str = "pystack-test") -> None:
        self.tmp, self.user, self.password, self.service = tmp, user, password, service
        self.key, self.cert = tmp / "token.key", tmp / "token.crt"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(self.key),
                        "-out", str(self.cert), "-days", "2", "-subj", "/CN=pystack-token"],
                       check=True, capture_output=True)
        der = subprocess.run(["openssl", "x509", "-in", str(self.cert), "-outform", "DER"],
                             check=True, capture_output=True).stdout
        self.x5c = base64.b64encode(der).decode()
        self.requests: list[dict] = []
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet
                pass

            def do_GET(self):
                issuer.handle(self)

        self.server = http_server(Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def registry_auth(self) -> dict:
        return {"token": {"realm": self.realm, "service": self.service, "issuer": "pystack-test-issuer",
                          "rootcertbundle": str(self.cert)}}

    def sign(self, claims: dict) -> str:
        header = {"alg": "RS256", "typ": "JWT", "x5c": [self.x5c]}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.key)], input=signing_input.encode(),
                             capture_output=True, check=True).stdout
        return f"{signing_input}.{_b64url(sig)}"

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        q = parse_qs(urlsplit(h.path).query)
        auth = h.headers.get("Authorization", "")
        self.requests.append({"query": q, "authorization": auth})
        expected = "Basic " + base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        if auth != expected:
            h.send_response(401)
            h.end_headers()
            return
        access = []
        for scope in q.get("scope", []):
            typ, name, actions = scope.split(":")
            access.append({"type": typ, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        token = self.sign({"iss": "pystack-test-issuer", "sub": self.user, "aud": self.service,
                           "exp": now + 300, "nbf": now - 10, "iat": now, "jti": uuid.uuid4().hex,
                           "access": access})
        body = json.dumps({"token": token, "expires_in": 300}).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Proxy:
    """An HTTP proxy in front of a registry that misbehaves on purpose, for one test.

    ``cut_first_blob``: the first blob GET sends its headers and half its body, then
    closes (an interrupted download). ``redirect_blobs``: blob GETs get a 307 to
    ``localhost:<port>/cdn/...`` (another host name), which records whether an
    Authorization header arrived and serves the blob with the test's own credentials.
    ``corrupt_blobs``: blob bodies get one byte flipped. ``ignore_range``: a blob GET's
    Range header is dropped (the whole blob comes back with 200, as from a server without
    range support). Requests are recorded.
    """

    def __init__(self, upstream: str, *, cut_first_blob: bool = False, redirect_blobs: bool = False,
                 corrupt_blobs: bool = False, upstream_auth: str | None = None, corrupt_min: int = 0,
                 stall_blobs: bool = False, ignore_range: bool = False) -> None:
        self.corrupt_min = corrupt_min
        self.ignore_range = ignore_range
        self.stall_blobs = stall_blobs  # send half a blob, then hang (until stop())
        self.stopping = threading.Event()
        self.upstream = upstream
        self.cut_first_blob, self.redirect_blobs, self.corrupt_blobs = cut_first_blob, redirect_blobs, corrupt_blobs
        self.upstream_auth = upstream_auth
        self.requests: list[tuple[str, str, dict]] = []
        self.cut_done = False
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                proxy.handle(self, "GET")

            def do_HEAD(self):
                proxy.handle(self, "HEAD")

        self.server = http_server(Handler)
        self.port = self.server.server_address[1]
        self.host = f"127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        self.requests.append((method, h.path, dict(h.headers)))
        headers = {k: v for k, v in h.headers.items() if k.lower() not in ("host", "connection")}
        is_blob = "/blobs/sha256:" in h.path and method == "GET"
        path = h.path
        if is_blob and self.ignore_range:
            headers.pop("Range", None)
        if path.startswith("/cdn/"):
            path = path[len("/cdn"):]
            headers.pop("Authorization", None)
            if self.upstream_auth:
                headers["Authorization"] = self.upstream_auth
        elif is_blob and self.redirect_blobs:
            h.send_response(307)
            h.send_header("Location", f"http://localhost:{self.port}/cdn{h.path}")
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        conn = http.client.HTTPConnection(self.upstream, timeout=30)
        conn.request(method, path, headers=headers)
        r = conn.getresponse()
        body = r.read()
        conn.close()
        if is_blob and r.status == 200 and self.corrupt_blobs and len(body) > max(self.corrupt_min, 0):
            mid = len(body) // 2  # inside the deflate data: gzip may or may not notice first
            body = body[:mid] + bytes([body[mid] ^ 0xFF]) + body[mid + 1:]
        cut = is_blob and r.status == 200 and self.cut_first_blob and not self.cut_done and len(body) > 1000
        h.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() not in ("connection", "transfer-encoding", "content-length"):
                h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        if cut:
            h.send_header("Connection", "close")
        h.end_headers()
        if method == "HEAD":
            return
        if is_blob and r.status == 200 and self.stall_blobs and len(body) > 1000:
            h.wfile.write(body[: len(body) // 2])
            h.wfile.flush()
            self.stopping.wait(120)
            h.close_connection = True
            return
        if cut:
            self.cut_done = True
            h.wfile.write(body[: len(body) // 2])
            h.wfile.flush()
            h.close_connection = True
            return
        h.wfile.write(body)

    def stop(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()
