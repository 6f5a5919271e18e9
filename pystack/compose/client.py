"""A small Docker Engine API client: HTTP/1.1 over a UNIX socket (``wire.py``).

The compose front talks to an engine only through this client, so the same code drives
pystackd and a real dockerd. docker-py costs ~0.14 s to import and even ``http.client``
20-50 ms (email, ssl); this module needs only sockets, so ``pystack ps`` stays fast.

Streams: ``logs`` and non-TTY ``attach``/``exec`` use Docker's multiplexed framing (an
8-byte header: stream id, 3 zero bytes, big-endian length); TTY streams are raw bytes.
``attach``/``exec start`` hijack the connection (``Upgrade: tcp``) and hand back the raw
socket so stdin can be written to it.
"""
from __future__ import annotations

import json
import os
import struct
from _thread import _local as _thread_local  # threading.local itself, without threading
TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs every command ~4 ms to import: annotations only
    import socket
    from typing import Any, Iterator

from pystack.compose.wire import Connection, Response, WireError
from pystack.errors import Conflict, EngineUnavailable, NotFound, UserError

API_VERSION = "1.41"
STDOUT, STDERR = 1, 2


class EngineError(UserError):
    """The engine refused a request; its message is shown as one line."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# urllib.parse's quoting, written out: importing urllib.parse (and the ipaddress module it
# imports) costs every command ~2 ms; the output is the same (a test compares the two)
_ALWAYS_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")


def quote(text: str, safe: str = "/") -> str:
    """``urllib.parse.quote`` of a str (UTF-8, strict)."""
    ok = _ALWAYS_SAFE.union(safe.encode("ascii", "ignore"))
    return "".join([chr(b) if b in ok else f"%{b:02X}" for b in text.encode("utf-8")])


def urlencode(query: dict[str, Any]) -> str:
    """``urllib.parse.urlencode`` of a mapping of str keys to non-sequence values."""
    out = []
    for k, v in query.items():
        if isinstance(k, bytes) or isinstance(v, bytes):
            import urllib.parse

            return urllib.parse.urlencode(query)
        out.append(_quote_plus(str(k)) + "=" + _quote_plus(str(v)))
    return "&".join(out)


def _quote_plus(text: str) -> str:
    if " " not in text:
        return quote(text, "")
    return quote(text, " ").replace(" ", "+")


def _open(path: str, timeout: float | None = None) -> Connection:
    """A connected wire.Connection, or one clear line saying the engine is not there."""
    conn = Connection(path, timeout)
    try:
        conn.connect()
    except OSError as exc:
        raise EngineUnavailable(
            f"cannot reach the engine at {path}: {exc.strerror or exc} "
            "(start pystackd, or point PYSTACK_HOST at a running engine)") from None
    return conn


def default_socket() -> str:
    """The engine socket: ``PYSTACK_HOST`` (``unix://`` URL or path) or pystack's default."""
    from pystack.paths import engine_socket

    return str(engine_socket())


def demux(read: Any) -> Iterator[tuple[int, bytes]]:
    """Split Docker's multiplexed stream into ``(stream, payload)`` frames.

    ``read(n)`` must return up to n bytes and b"" at the end.
    """
    while True:
        header = _read_exact(read, 8)
        if len(header) < 8:
            return
        stream, size = header[0], struct.unpack(">I", header[4:8])[0]
        payload = _read_exact(read, size)
        yield stream, payload
        if len(payload) < size:
            return


def _read_exact(read: Any, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = read(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return buf


class Hijacked:
    """A hijacked connection: raw socket plus whatever bytes arrived with the headers."""

    def __init__(self, sock: socket.socket, pending: bytes) -> None:
        self.sock = sock
        self._pending = pending

    def read(self, n: int = 65536) -> bytes:
        if self._pending:
            out, self._pending = self._pending[:n], self._pending[n:]
            return out
        try:
            return self.sock.recv(n)
        except OSError:
            return b""

    def write(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close_write(self) -> None:
        import socket  # already imported by hijack()

        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        self.sock.close()


class EngineClient:
    """Docker Engine API calls used by the compose front (one keep-alive connection per thread)."""

    def __init__(self, socket_path: str | None = None, api_version: str = API_VERSION) -> None:
        self.socket_path = socket_path or default_socket()
        self.prefix = f"/v{api_version}"
        self._local = _thread_local()

    # -- transport ---------------------------------------------------------------------
    def _conn(self) -> Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.sock is None:
            conn = self._local.conn = _open(self.socket_path)
        return conn

    def _url(self, path: str, params: dict[str, Any] | None) -> str:
        url = self.prefix + path
        if params:
            clean = {}
            for k, v in params.items():
                if v is None:
                    continue
                if isinstance(v, bool):
                    v = "1" if v else "0"
                elif isinstance(v, (dict, list)):
                    v = json.dumps(v)
                clean[k] = v
            url += "?" + urlencode(clean)
        return url

    def request(self, method: str, path: str, params: dict[str, Any] | None = None,
                body: Any = None, headers: dict[str, str] | None = None,
                raw_body: bytes | None = None) -> Any:
        """One request; returns decoded JSON (or bytes for non-JSON), raises on errors."""
        hdrs = dict(headers or {})
        data = raw_body
        if body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        url = self._url(path, params)
        for attempt in (0, 1):
            conn = self._conn()
            fresh, conn.fresh = conn.fresh, False
            try:
                conn.send(method, url, hdrs, data)
                resp = conn.response(method)
                payload = resp.read()
                if not resp.reusable:
                    conn.close()
                break
            except (WireError, BrokenPipeError, ConnectionResetError):
                # a kept-alive connection the engine closed meanwhile: one retry on a new one
                conn.close()
                if attempt or fresh:
                    raise EngineUnavailable(f"the engine at {self.socket_path} closed the connection") from None
            except BaseException:
                conn.close()
                raise
        self._check(resp.status, payload)
        if (resp.getheader("Content-Type") or "").startswith("application/json") and payload:
            return json.loads(payload)
        return payload

    @staticmethod
    def _check(status: int, payload: bytes) -> None:
        if status < 400:
            return
        try:
            message = json.loads(payload).get("message", "")
        except (ValueError, AttributeError):
            message = payload.decode(errors="replace").strip()
        message = message or f"engine error {status}"
        if status == 404:
            raise NotFound(message)
        if status == 409:
            raise Conflict(message)
        raise EngineError(status, message)

    def stream(self, method: str, path: str, params: dict[str, Any] | None = None,
               body: Any = None, headers: dict[str, str] | None = None,
               timeout: float | None = None) -> Response:
        """A request on its own connection whose response is read incrementally."""
        conn = _open(self.socket_path, timeout)
        hdrs = dict(headers or {})
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        try:
            conn.send(method, self._url(path, params), hdrs, data)
            resp = conn.response(method)
        except (WireError, OSError):
            conn.close()
            raise EngineUnavailable(f"the engine at {self.socket_path} closed the connection") from None
        if resp.status >= 400:
            payload = resp.read()
            conn.close()
            self._check(resp.status, payload)
        return resp

    def json_stream(self, method: str, path: str, **kw: Any) -> Iterator[dict]:
        """Newline-delimited JSON objects of a streamed response (events, pull progress)."""
        resp = self.stream(method, path, **kw)
        try:
            buf = b""
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

    def hijack(self, path: str, params: dict[str, Any] | None = None, body: Any = None) -> Hijacked:
        """POST with ``Upgrade: tcp`` and return the raw bidirectional socket."""
        import socket

        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self.socket_path)
        except OSError as exc:
            sock.close()
            raise EngineUnavailable(f"cannot reach the engine at {self.socket_path}: {exc}") from None
        data = json.dumps(body).encode() if body is not None else b""
        head = (f"POST {self._url(path, params)} HTTP/1.1\r\nHost: localhost\r\n"
                "Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(data)}\r\n\r\n").encode()
        sock.sendall(head + data)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
        header, _, rest = buf.partition(b"\r\n\r\n")
        status_line = header.split(b"\r\n", 1)[0].decode(errors="replace")
        try:
            status = int(status_line.split()[1])
        except (IndexError, ValueError):
            sock.close()
            raise EngineError(0, f"bad response from engine: {status_line!r}") from None
        if status >= 400:
            sock.settimeout(5)
            try:
                while True:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    rest += chunk
            except OSError:
                pass
            sock.close()
            # the body may be chunked; find the JSON object in it
            start = rest.find(b"{")
            self._check(status, rest[start:rest.rfind(b"}") + 1] if start >= 0 else rest)
        return Hijacked(sock, rest)

    # -- system ------------------------------------------------------------------------
    def version(self) -> dict:
        return self.request("GET", "/version")

    def ping(self) -> bool:
        self.request("GET", "/_ping")
        return True

    # -- containers --------------------------------------------------------------------
    def containers(self, all: bool = True, labels: list[str] | None = None,
                   filters: dict[str, list[str]] | None = None) -> list[dict]:
        f: dict[str, list[str]] = dict(filters or {})
        if labels:
            f["label"] = list(labels)
        return self.request("GET", "/containers/json", {"all": all, "filters": f or None})

    def inspect(self, cid: str) -> dict:
        return self.request("GET", f"/containers/{cid}/json")

    def create(self, name: str | None, body: dict) -> str:
        return self.request("POST", "/containers/create", {"name": name}, body=body)["Id"]

    def start(self, cid: str) -> None:
        self.request("POST", f"/containers/{cid}/start")

    def stop(self, cid: str, timeout: int | None = None) -> None:
        self.request("POST", f"/containers/{cid}/stop", {"t": timeout})

    def restart(self, cid: str, timeout: int | None = None) -> None:
        self.request("POST", f"/containers/{cid}/restart", {"t": timeout})

    def kill(self, cid: str, signal: str | None = None) -> None:
        self.request("POST", f"/containers/{cid}/kill", {"signal": signal})

    def remove(self, cid: str, force: bool = False, volumes: bool = False) -> None:
        self.request("DELETE", f"/containers/{cid}", {"force": force, "v": volumes})

    def rename(self, cid: str, name: str) -> None:
        self.request("POST", f"/containers/{cid}/rename", {"name": name})

    def pause(self, cid: str) -> None:
        self.request("POST", f"/containers/{cid}/pause")

    def unpause(self, cid: str) -> None:
        self.request("POST", f"/containers/{cid}/unpause")

    def wait(self, cid: str, condition: str = "not-running") -> int:
        resp = self.stream("POST", f"/containers/{cid}/wait", {"condition": condition})
        try:
            return int(json.loads(resp.read()).get("StatusCode", -1))
        finally:
            resp.close()

    def top(self, cid: str) -> dict:
        return self.request("GET", f"/containers/{cid}/top")

    def resize(self, cid: str, h: int, w: int) -> None:
        self.request("POST", f"/containers/{cid}/resize", {"h": h, "w": w})

    def logs(self, cid: str, *, follow: bool = False, timestamps: bool = False,
             tail: str | None = None, since: str | None = None, until: str | None = None,
             tty: bool = False) -> Iterator[tuple[int, bytes]]:
        """(stream, chunk) pairs of a container's log; TTY logs come as stream 1."""
        resp = self.stream("GET", f"/containers/{cid}/logs", {
            "stdout": True, "stderr": True, "follow": follow, "timestamps": timestamps,
            "tail": tail, "since": since, "until": until})
        try:
            if tty:
                while True:
                    chunk = resp.read1(65536)
                    if not chunk:
                        return
                    yield STDOUT, chunk
            else:
                yield from demux(resp.read)
        finally:
            resp.close()

    def attach(self, cid: str, stdin: bool = False, logs: bool = False) -> Hijacked:
        return self.hijack(f"/containers/{cid}/attach", {
            "stream": True, "stdin": stdin, "stdout": True, "stderr": True, "logs": logs})

    def get_archive(self, cid: str, path: str) -> Response:
        return self.stream("GET", f"/containers/{cid}/archive", {"path": path})

    def put_archive(self, cid: str, path: str, tar: bytes) -> None:
        self.request("PUT", f"/containers/{cid}/archive", {"path": path},
                     headers={"Content-Type": "application/x-tar"}, raw_body=tar)

    # -- exec --------------------------------------------------------------------------
    def exec_create(self, cid: str, body: dict) -> str:
        return self.request("POST", f"/containers/{cid}/exec", body=body)["Id"]

    def exec_start(self, eid: str, tty: bool, detach: bool = False) -> Hijacked | None:
        if detach:
            self.request("POST", f"/exec/{eid}/start", body={"Detach": True, "Tty": tty})
            return None
        return self.hijack(f"/exec/{eid}/start", body={"Detach": False, "Tty": tty})

    def exec_inspect(self, eid: str) -> dict:
        return self.request("GET", f"/exec/{eid}/json")

    def exec_resize(self, eid: str, h: int, w: int) -> None:
        self.request("POST", f"/exec/{eid}/resize", {"h": h, "w": w})

    # -- networks and volumes ----------------------------------------------------------
    def networks(self, labels: list[str] | None = None, names: list[str] | None = None) -> list[dict]:
        f: dict[str, list[str]] = {}
        if labels:
            f["label"] = labels
        if names:
            f["name"] = names
        return self.request("GET", "/networks", {"filters": f or None})

    def network_inspect(self, name: str) -> dict:
        return self.request("GET", f"/networks/{name}")

    def network_create(self, body: dict) -> str:
        return self.request("POST", "/networks/create", body=body)["Id"]

    def network_remove(self, name: str) -> None:
        self.request("DELETE", f"/networks/{name}")

    def network_disconnect(self, net: str, cid: str, force: bool = False) -> None:
        self.request("POST", f"/networks/{net}/disconnect", body={"Container": cid, "Force": force})

    def network_connect(self, net: str, cid: str, endpoint: dict | None = None) -> None:
        self.request("POST", f"/networks/{net}/connect",
                     body={"Container": cid, "EndpointConfig": endpoint or {}})

    def volumes(self, labels: list[str] | None = None) -> list[dict]:
        f = {"label": labels} if labels else None
        return self.request("GET", "/volumes", {"filters": f}).get("Volumes") or []

    def volume_inspect(self, name: str) -> dict:
        return self.request("GET", f"/volumes/{name}")

    def volume_create(self, body: dict) -> dict:
        return self.request("POST", "/volumes/create", body=body)

    def volume_remove(self, name: str, force: bool = False) -> None:
        self.request("DELETE", f"/volumes/{name}", {"force": force})

    # -- images ------------------------------------------------------------------------
    def image_inspect(self, ref: str) -> dict:
        return self.request("GET", f"/images/{quote(ref, safe='/:@')}/json")

    def images(self) -> list[dict]:
        return self.request("GET", "/images/json")

    def image_remove(self, ref: str, force: bool = False) -> None:
        self.request("DELETE", f"/images/{quote(ref, safe='/:@')}", {"force": force})

    def pull(self, ref: str, platform: str | None = None) -> Iterator[dict]:
        image, tag = split_ref(ref)
        return self.json_stream("POST", "/images/create",
                                params={"fromImage": image, "tag": tag, "platform": platform},
                                headers={"X-Registry-Auth": _auth_header(image)})

    def push(self, ref: str) -> Iterator[dict]:
        image, tag = split_ref(ref)
        return self.json_stream("POST", f"/images/{image}/push", params={"tag": tag},
                                headers={"X-Registry-Auth": _auth_header(image)})

    # -- events ------------------------------------------------------------------------
    def events(self, filters: dict[str, list[str]] | None = None, since: str | None = None,
               until: str | None = None) -> Iterator[dict]:
        return self.json_stream("GET", "/events", params={
            "filters": filters or None, "since": since, "until": until})


def split_ref(ref: str) -> tuple[str, str]:
    """``registry:5000/a/b:tag`` -> (``registry:5000/a/b``, ``tag``); digests stay whole."""
    if "@" in ref:
        return ref, ""
    name, sep, tag = ref.rpartition(":")
    if sep and "/" not in tag:
        return name, tag
    return ref, "latest"


def _auth_header(image: str) -> str:
    """X-Registry-Auth from ~/.docker/config.json when it has the registry, else empty auth."""
    import base64
    from pathlib import Path

    registry = image.split("/", 1)[0] if "/" in image and ("." in image.split("/", 1)[0]
                                                             or ":" in image.split("/", 1)[0]) else ""
    auth: dict[str, str] = {}
    cfg = Path(os.environ.get("DOCKER_CONFIG", Path.home() / ".docker")) / "config.json"
    if registry and cfg.exists():
        try:
            entry = json.loads(cfg.read_text()).get("auths", {}).get(registry, {})
            if entry.get("auth"):
                user, _, pw = base64.b64decode(entry["auth"]).decode().partition(":")
                auth = {"username": user, "password": pw, "serveraddress": registry}
        except (ValueError, OSError):
            pass
    return base64.urlsafe_b64encode(json.dumps(auth).encode()).decode()
