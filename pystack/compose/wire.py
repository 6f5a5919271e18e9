"""Just enough HTTP/1.1 over a UNIX socket for the Engine API.

``http.client`` pulls in ``email.parser`` and ``ssl`` (20-50 ms on a busy machine, a
quarter of ``pystack ps``); the Engine API needs far less: one request at a time per
connection, bodies by Content-Length, chunked transfer or connection close, and the
raw socket after ``101 Switching Protocols`` (attach/exec).
"""
from __future__ import annotations

# the C module: socket.py adds makefile() and friends this module does not use, and costs
# every command ~2 ms to import (selectors, and enums built from the constants)
import _socket

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket


class WireError(OSError):
    """The engine closed the connection or spoke something that is not HTTP."""


class Connection:
    """One keep-alive connection to a UNIX socket."""

    def __init__(self, path: str, timeout: float | None = None) -> None:
        self.path = path
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self.buf = b""
        self.fresh = True  # no request sent yet: a failure is not a stale keep-alive

    def connect(self) -> None:
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        if self.timeout is not None:
            sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except OSError:
            sock.close()
            raise
        self.sock = sock
        self.buf = b""

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None
                self.buf = b""

    def send(self, method: str, url: str, headers: dict[str, str], body: bytes | None) -> None:
        if self.sock is None:
            self.connect()
        assert self.sock is not None
        lines = [f"{method} {url} HTTP/1.1", "Host: localhost"]
        hdrs = dict(headers)
        if body is not None or method in ("POST", "PUT"):
            hdrs.setdefault("Content-Length", str(len(body or b"")))
        lines += [f"{k}: {v}" for k, v in hdrs.items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b""))

    # -- reading -----------------------------------------------------------------------
    def _fill(self) -> bool:
        assert self.sock is not None
        chunk = self.sock.recv(65536)
        if not chunk:
            return False
        self.buf += chunk
        return True

    def readline(self) -> bytes:
        while b"\r\n" not in self.buf:
            if not self._fill():
                line, self.buf = self.buf, b""
                return line
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def read_some(self, n: int) -> bytes:
        if not self.buf and not self._fill():
            return b""
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                break
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def response(self, method: str) -> "Response":
        status_line = self.readline()
        if not status_line:
            raise WireError("the engine closed the connection")
        parts = status_line.decode("latin-1").split(" ", 2)
        try:
            status = int(parts[1])
        except (IndexError, ValueError):
            raise WireError(f"not an HTTP response: {status_line[:80]!r}") from None
        headers: dict[str, str] = {}
        while True:
            line = self.readline()
            if not line:
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        return Response(self, status, headers, method)


class Response:
    """A response whose body is read on demand (whole, or piece by piece for streams)."""

    def __init__(self, conn: Connection, status: int, headers: dict[str, str], method: str) -> None:
        self.conn = conn
        self.status = status
        self.headers = headers
        self.chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        length = headers.get("content-length")
        no_body = method == "HEAD" or status in (101, 204, 304) or 100 <= status < 200
        self.remaining: int | None = 0 if no_body else (int(length) if length is not None and not self.chunked else None)
        self._chunk_left = 0
        self.done = self.remaining == 0
        # keep-alive only when the body's end is known and the engine did not say close
        self.reusable = (self.remaining is not None or self.chunked) and \
            headers.get("connection", "").lower() != "close"

    def getheader(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    def read1(self, n: int = 65536) -> bytes:
        """Up to n bytes of the body, b"" at its end."""
        if self.done:
            return b""
        if self.chunked:
            if self._chunk_left == 0:
                size_line = self.conn.readline()
                try:
                    size = int(size_line.split(b";")[0].strip() or b"0", 16)
                except ValueError:
                    raise WireError(f"bad chunk size {size_line[:40]!r}") from None
                if size == 0:
                    while self.conn.readline():  # trailers, then the empty line
                        pass
                    self.done = True
                    return b""
                self._chunk_left = size
            data = self.conn.read_some(min(n, self._chunk_left))
            if not data:
                self.done = True
                return b""
            self._chunk_left -= len(data)
            if self._chunk_left == 0:
                self.conn.read_exact(2)  # the CRLF after a chunk
            return data
        if self.remaining is None:
            data = self.conn.read_some(n)
            if not data:
                self.done = True
            return data
        data = self.conn.read_some(min(n, self.remaining))
        if not data:
            self.done = True
            return b""
        self.remaining -= len(data)
        if self.remaining == 0:
            self.done = True
        return data

    def read(self, n: int | None = None) -> bytes:
        """The rest of the body (n=None) or up to n bytes, b"" at its end."""
        if n is not None:
            return self.read1(n)
        parts = []
        while True:
            chunk = self.read1(1 << 20)
            if not chunk:
                break
            parts.append(chunk)
        return b"".join(parts)

    def close(self) -> None:
        self.conn.close()
