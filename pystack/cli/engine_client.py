"""What the image, volume and engine commands need on top of ``pystack.compose.client``:
the engine found (or started) by ``pystack.compose.autostart``, uploads streamed from a
file, a directory (tarred on the fly) or stdin with chunked transfer encoding, streamed
downloads, Docker's JSON message streams, and ``X-Registry-Auth`` from the docker config.

Only sockets and JSON are imported here, so ``pystack volume ls`` stays quick.
"""
from __future__ import annotations

import base64
import json
import os
import urllib.parse
from pathlib import Path
from typing import IO, Any, Iterator

from pystack.errors import EngineUnavailable, UserError


def client():
    """An EngineClient on the engine's socket (pystackd started first when it is the default and silent)."""
    from pystack.compose.autostart import engine_socket_path
    from pystack.compose.client import EngineClient
    return EngineClient(engine_socket_path())


def quote(ref: str) -> str:
    return urllib.parse.quote(ref, safe="/:@")


class _ChunkedWriter:
    """A write-only file object sending HTTP/1.1 chunks on a socket."""

    def __init__(self, sock) -> None:
        self.sock = sock
        self.buf = bytearray()

    def write(self, data: bytes) -> int:
        self.buf += data
        if len(self.buf) >= 1 << 20:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self.buf:
            self.sock.sendall(b"%x\r\n" % len(self.buf) + bytes(self.buf) + b"\r\n")
            self.buf = bytearray()

    def finish(self) -> None:
        self.flush()
        self.sock.sendall(b"0\r\n\r\n")


def tar_directory(directory: Path, out: IO[bytes]) -> None:
    """A directory as an uncompressed tar stream (owners, modes, links and devices kept)."""
    import tarfile
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:  # type: ignore[call-overload]
        for dirpath, dirnames, filenames in os.walk(directory):
            dirnames.sort()
            rel = os.path.relpath(dirpath, directory)
            for name in sorted(dirnames) + sorted(filenames):
                path = os.path.join(dirpath, name)
                arc = name if rel == "." else os.path.join(rel, name)
                ti = tf.gettarinfo(path, arcname=arc)
                if ti.isreg():
                    with open(path, "rb") as fh:
                        tf.addfile(ti, fh)
                else:
                    tf.addfile(ti)


def upload(cli, path: str, params: dict[str, Any], source: Path | IO[bytes] | None,
           content_type: str = "application/x-tar"):
    """POST a body streamed from ``source`` (a file, a directory tarred on the fly, or a binary
    stream); returns the wire Response (status checked)."""
    from pystack.compose.client import _open
    from pystack.compose.wire import WireError
    conn = _open(cli.socket_path)
    pairs = []
    for k, v in params.items():  # list values repeat the key (``changes=...&changes=...``)
        for item in (v if isinstance(v, list) else [v]):
            if item is None:
                continue
            pairs.append((k, ("1" if item else "0") if isinstance(item, bool) else str(item)))
    url = cli.prefix + path + ("?" + urllib.parse.urlencode(pairs) if pairs else "")
    head = (f"POST {url} HTTP/1.1\r\nHost: localhost\r\n"
            f"Content-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
    try:
        assert conn.sock is not None
        try:
            conn.sock.sendall(head)
            writer = _ChunkedWriter(conn.sock)
            if isinstance(source, Path) and source.is_dir():
                tar_directory(source, writer)  # type: ignore[arg-type]
            elif isinstance(source, Path):
                with open(source, "rb") as fh:
                    while chunk := fh.read(1 << 20):
                        writer.write(chunk)
            elif source is not None:
                while chunk := source.read(1 << 20):
                    writer.write(chunk)
            writer.finish()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the engine refused early: its answer says why
        resp = conn.response("POST")
    except (WireError, BrokenPipeError, ConnectionResetError):
        conn.close()
        raise EngineUnavailable(f"the engine at {cli.socket_path} closed the connection") from None
    if resp.status >= 400:
        payload = resp.read()
        conn.close()
        cli._check(resp.status, payload)
    return resp


def json_lines(resp) -> Iterator[dict]:
    """Newline-delimited JSON objects of a response, read as they arrive."""
    buf = b""
    try:
        while True:
            chunk = resp.read1(65536)
            if not chunk:
                break
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if line.strip():
                    yield json.loads(line)
        if buf.strip():
            yield json.loads(buf)
    finally:
        resp.close()


def check_line(line: dict) -> None:
    """A JSON message stream's error line becomes a UserError."""
    if "errorDetail" in line or "error" in line:
        detail = line.get("errorDetail") or {}
        raise UserError(detail.get("message") or line.get("error") or "engine error")


def registry_auth(ref_text: str) -> str:
    """``X-Registry-Auth`` for the reference's registry (empty JSON when not logged in)."""
    auth: dict[str, str] = {}
    try:
        from pystack.runtime.images.auth import get_credentials
        from pystack.runtime.images.reference import parse
        ref = parse(ref_text)
        creds = get_credentials(ref.registry)
        if creds:
            auth = {"username": creds[0], "password": creds[1], "serveraddress": ref.registry}
    except UserError:
        pass
    return base64.urlsafe_b64encode(json.dumps(auth).encode()).decode()
