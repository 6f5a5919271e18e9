"""Hijacked connections: Docker's attach / exec-start streams on top of aiohttp.

Docker clients ask for ``Connection: Upgrade`` + ``Upgrade: tcp``; the engine answers
``101 UPGRADED`` (or ``200 OK`` when no upgrade was asked for) with a raw-stream or
multiplexed-stream content type and from then on the socket carries raw bytes both ways:
output from the container, stdin to it.

aiohttp has no API for this, so :func:`hijack` writes the response head itself, then
swaps the transport's protocol for :class:`_HijackProtocol`, which

* keeps the socket open when the client half-closes (the docker CLI always sends
  ``CloseWrite`` once its stdin ends, even without ``-i``: aiohttp would close the whole
  connection and lose the output);
* turns incoming bytes into an ``asyncio.StreamReader`` (with flow control);
* hands ``connection_lost`` back to aiohttp's protocol so that its bookkeeping stays right.

The handler then returns :class:`HijackedResponse`, whose ``prepare``/``write_eof`` do
nothing (the head was already sent).
"""
from __future__ import annotations

import asyncio
import logging

from aiohttp import web

log = logging.getLogger("pystackd.hijack")

RAW_STREAM = "application/vnd.docker.raw-stream"
MULTIPLEXED_STREAM = "application/vnd.docker.multiplexed-stream"

STDIN, STDOUT, STDERR = 0, 1, 2


def frame(stream: int, data: bytes) -> bytes:
    """One frame of Docker's multiplexed stream: [stream, 0, 0, 0, size (big-endian u32)] + data."""
    return bytes((stream, 0, 0, 0)) + len(data).to_bytes(4, "big") + data


def wants_upgrade(request: web.Request) -> bool:
    conn = request.headers.get("Connection", "").lower()
    return "upgrade" in [t.strip() for t in conn.split(",")] and bool(request.headers.get("Upgrade"))


class HijackedResponse(web.StreamResponse):
    """What a hijacking handler returns: aiohttp must not write anything any more."""

    async def prepare(self, request):  # type: ignore[override]
        return None

    async def write_eof(self, data: bytes = b"") -> None:  # type: ignore[override]
        return None


class _HijackProtocol(asyncio.Protocol):
    def __init__(self, conn: "Hijacked", original: asyncio.BaseProtocol) -> None:
        self.conn = conn
        self.original = original

    def data_received(self, data: bytes) -> None:
        self.conn.reader.feed_data(data)

    def eof_received(self) -> bool:
        self.conn.reader.feed_eof()
        return True  # half-closed: keep writing to the client

    def pause_writing(self) -> None:
        self.conn._can_write.clear()

    def resume_writing(self) -> None:
        self.conn._can_write.set()

    def connection_lost(self, exc: BaseException | None) -> None:
        self.conn.closed = True
        self.conn._can_write.set()
        if not self.conn.reader.at_eof():
            self.conn.reader.feed_eof()
        if not self.conn.lost.done():
            self.conn.lost.set_result(None)
        try:
            self.original.connection_lost(exc)
        except Exception:  # noqa: BLE001 - aiohttp's bookkeeping only
            log.debug("aiohttp connection_lost failed", exc_info=True)


class Hijacked:
    """The raw connection after the response head: ``reader`` (client -> engine bytes),
    ``write``/``drain`` (engine -> client), ``close``."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.reader = asyncio.StreamReader(limit=1 << 20)
        self.reader.set_transport(transport)
        self._can_write = asyncio.Event()
        self._can_write.set()
        self.closed = False
        self._head_unread = True
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def write(self, data: bytes) -> None:
        """Send ``data``; ConnectionResetError once the client has gone."""
        if self.closed or self.transport.is_closing():
            raise ConnectionResetError("client went away")
        if data and self._head_unread:
            await self._wait_head_read()
        if data:
            self.transport.write(data)
        await self._can_write.wait()
        if self.closed:
            raise ConnectionResetError("client went away")

    async def _wait_head_read(self, limit: float = 0.2) -> None:
        """Until the client has read the response head (the socket's send queue is empty;
        at most ``limit`` seconds). docker-py reads the head through a buffered file and
        the stream from the raw socket under it: body bytes that arrived together with
        the head were read into that buffer and lost (``attach(logs=True)`` of an exited
        container answered b"" now and then). dockerd's head and body leave apart."""
        self._head_unread = False
        sock = self.transport.get_extra_info("socket")
        if sock is None:
            return
        import fcntl
        import struct
        import termios

        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while not self.closed:
            try:
                queued = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]
            except (OSError, ValueError):
                return
            if queued <= 0 or loop.time() >= deadline:
                return
            await asyncio.sleep(0.001)

    def close(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()


async def hijack(request: web.Request, content_type: str = RAW_STREAM) -> Hijacked:
    """Answer the request with 101 (upgrade asked) or 200 and take over its socket."""
    transport = request.transport
    protocol = request.protocol
    if transport is None or transport.is_closing():
        raise ConnectionResetError("client went away")
    if wants_upgrade(request):
        head = (f"HTTP/1.1 101 UPGRADED\r\nContent-Type: {content_type}\r\n"
                "Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
    else:
        head = f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nConnection: close\r\n\r\n"
    # the request body (exec start's JSON) must be consumed before the stream begins
    if request.can_read_body:
        try:
            await request.read()
        except Exception:  # noqa: BLE001 - already read by the handler
            pass
    conn = Hijacked(transport)
    tail = b""
    try:  # bytes the client sent right after the upgrade request (aiohttp buffers them)
        tail = getattr(protocol, "_message_tail", b"") or b""
        if tail:
            protocol._message_tail = b""  # type: ignore[union-attr]
    except AttributeError:
        pass
    transport.set_protocol(_HijackProtocol(conn, protocol))
    if tail:
        conn.reader.feed_data(tail)
    transport.resume_reading()
    transport.write(head.encode())
    return conn


DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"


def parse_detach_keys(spec: str) -> bytes:
    """Docker's detach-keys syntax: comma-separated ``ctrl-<x>`` or single characters."""
    out = bytearray()
    for part in spec.split(","):
        part = part.strip()
        if len(part) == 1:
            out.append(ord(part))
        elif part.lower().startswith("ctrl-") and len(part) == 6:
            c = part[5].lower()
            if "a" <= c <= "z":
                out.append(ord(c) - ord("a") + 1)
            elif c in "@[\\]^_":
                out.append({"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}[c])
            else:
                raise ValueError(part)
        else:
            raise ValueError(part)
    if not out:
        raise ValueError(spec)
    return bytes(out)


class DetachScanner:
    """Holds back bytes that may start the detach sequence; ``feed`` returns what to pass on
    and whether the sequence was typed (then the session detaches, as Docker's escape proxy)."""

    def __init__(self, keys: bytes) -> None:
        self.keys = keys
        self.held = b""

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        out = bytearray()
        for b in data:
            cand = self.held + bytes((b,))
            if self.keys.startswith(cand):
                if cand == self.keys:
                    return bytes(out), True
                self.held = cand
            else:
                out += cand
                self.held = b""
        return bytes(out), False


class Detached(Exception):
    """The client typed the detach keys."""


async def pump_stdin(conn: Hijacked, fd: int, *, close_at_eof: bool = True,
                     detach_keys: bytes | None = None) -> None:
    """Copy the client's bytes into ``fd`` (a pipe, FIFO or pty master) until the client
    half-closes or goes; then close ``fd`` when ``close_at_eof``. With ``detach_keys``,
    typing them raises :class:`Detached` (the bytes are not passed on)."""
    import os
    loop = asyncio.get_running_loop()
    os.set_blocking(fd, False)
    scanner = DetachScanner(detach_keys) if detach_keys else None
    try:
        while True:
            data = await conn.reader.read(65536)
            if not data:
                break
            if scanner is not None:
                data, detach = scanner.feed(data)
                if detach:
                    if data:
                        try:
                            os.write(fd, data)
                        except OSError:
                            pass
                    raise Detached()
            view = memoryview(data)
            while view:
                try:
                    n = os.write(fd, view)
                    view = view[n:]
                except BlockingIOError:
                    fut = loop.create_future()
                    loop.add_writer(fd, lambda: fut.done() or fut.set_result(None))
                    try:
                        await fut
                    finally:
                        loop.remove_writer(fd)
    except (BrokenPipeError, OSError):
        pass
    finally:
        if close_at_eof:
            try:
                os.close(fd)
            except OSError:
                pass


async def read_fd(fd: int, size: int = 65536) -> bytes:
    """One non-blocking read of ``fd`` on the event loop; b"" at EOF (EIO of a pty too)."""
    import os
    loop = asyncio.get_running_loop()
    while True:
        try:
            return os.read(fd, size)
        except BlockingIOError:
            fut = loop.create_future()
            loop.add_reader(fd, lambda: fut.done() or fut.set_result(None))
            try:
                await fut
            finally:
                loop.remove_reader(fd)
        except OSError:  # EIO: the pty's other side closed
            return b""


# -- long-lived streams end when the engine stops -------------------------------------------

_TASKS = "pystack.stream_tasks"


class track:
    """``with hijack.track(request):`` around a long-lived stream handler, so that SIGTERM
    (aiohttp's on_shutdown) cancels it instead of waiting for the server's shutdown timeout."""

    def __init__(self, request: web.Request) -> None:
        self.tasks = request.app.get(_TASKS)
        self.task = asyncio.current_task()

    def __enter__(self) -> "track":
        if self.tasks is not None and self.task is not None:
            self.tasks.add(self.task)
        return self

    def __exit__(self, *exc) -> None:
        if self.tasks is not None and self.task is not None:
            self.tasks.discard(self.task)


def setup_shutdown(app: web.Application) -> None:
    """Install (once per app) the on_shutdown hook cancelling tracked streams."""
    if _TASKS in app:
        return
    app[_TASKS] = set()

    async def cancel_streams(app: web.Application) -> None:
        tasks = list(app[_TASKS])
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
    app.on_shutdown.append(cancel_streams)
