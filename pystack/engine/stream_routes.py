"""``/containers/{id}/logs``, ``/containers/{id}/attach`` and ``/containers/{id}/archive``.

Logs come from the container's json-file log (pystack.engine.logs): multiplexed frames
(``application/vnd.docker.multiplexed-stream``) without a TTY, raw bytes with one.
Attach hijacks the connection (pystack.engine.hijack) and follows the log from the moment
of the request — so a client attaching before ``start`` (``docker run``) loses nothing —
until the container dies; stdin goes to the runtime's FIFO (``OpenStdin``).
Archive (``docker cp``) is pystack.engine.archive, run in a thread.
"""
from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from pathlib import Path

from aiohttp import web

from pystack.engine import hijack, logs
from pystack.engine.api import BadRequest, add_route, flag
from pystack.errors import NotFound, UserError

log = logging.getLogger("pystackd.streams")


def _mgr(request: web.Request):
    return request.app["engine"].containers


async def _maybe(value):
    if inspect.isawaitable(value):
        return await value
    return value


def _log_path(rec) -> Path:
    path = (rec.extra or {}).get("log_path")
    if not path:
        raise BadRequest(f"container {rec.id[:12]} has no json-file log")
    return Path(path)


def _tty(rec) -> bool:
    return bool((rec.config or {}).get("Tty"))


async def _is_running(mgr, cid: str) -> bool | None:
    """True/False, None when the container is gone."""
    try:
        rec = mgr.get(cid)
    except NotFound:
        return None
    return bool(await _maybe(mgr.is_running(rec)))


# -- logs ----------------------------------------------------------------------------------

async def container_logs(request: web.Request) -> web.StreamResponse:
    mgr = _mgr(request)
    rec = mgr.get(request.match_info["id"])
    stdout, stderr = flag(request, "stdout"), flag(request, "stderr")
    if not stdout and not stderr:
        raise BadRequest("Bad parameters: you must choose at least one stream")
    tty = _tty(rec)
    opts = logs.LogOptions(stdout=stdout, stderr=stderr, since=logs.parse_api_time(request.query.get("since")),
                           until=logs.parse_api_time(request.query.get("until")),
                           timestamps=flag(request, "timestamps"), tail=logs.parse_tail(request.query.get("tail")),
                           tty=tty)
    path = _log_path(rec)
    follow = flag(request, "follow") and bool(await _maybe(mgr.is_running(rec)))
    cid = rec.id

    async def stopped() -> bool:
        if request.transport is None or request.transport.is_closing():
            return True  # the client went away (a silent container would keep us polling)
        return not await _is_running(mgr, cid)

    resp = web.StreamResponse(status=200, headers={
        "Content-Type": hijack.RAW_STREAM if tty else hijack.MULTIPLEXED_STREAM})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    try:
        with hijack.track(request), (mgr.reading(cid) if follow and hasattr(mgr, "reading")
                                     else contextlib.nullcontext()):
            async with contextlib.aclosing(logs.stream_log(path, opts, history=True, follow=follow,
                                                           stopped=stopped)) as chunks:
                async for chunk in chunks:
                    await resp.write(chunk)
                    if request.transport is None or request.transport.is_closing():
                        break
    except (ConnectionError, asyncio.CancelledError):
        return resp
    try:
        await resp.write_eof()
    except ConnectionError:
        pass
    return resp


# -- attach --------------------------------------------------------------------------------

class _DieWatch:
    """Subscribes to the event bus before the stream starts: knows when the container dies."""

    def __init__(self, engine, cid: str) -> None:
        self.bus = engine.events
        self.cid = cid
        self.queue: asyncio.Queue = asyncio.Queue()
        self.bus.subscribers.add(self.queue)
        self.dead = False

    def check(self) -> bool:
        while not self.queue.empty():
            ev = self.queue.get_nowait()
            if ev.get("Type") == "container" and ev["Actor"]["ID"] == self.cid and \
                    ev.get("Action") in ("die", "destroy"):
                self.dead = True
        return self.dead

    def close(self) -> None:
        self.bus.subscribers.discard(self.queue)


async def container_attach(request: web.Request) -> web.StreamResponse:
    engine = request.app["engine"]
    mgr = engine.containers
    rec = mgr.get(request.match_info["id"])
    cid = rec.id
    tty = _tty(rec)
    want_stream = flag(request, "stream")
    want_logs = flag(request, "logs")
    want_stdin = flag(request, "stdin")
    opts = logs.LogOptions(stdout=flag(request, "stdout"), stderr=flag(request, "stderr"), tty=tty)
    if not want_stream and not want_logs:
        raise BadRequest("Bad parameters: you must choose at least one of stream or logs")
    try:
        detach_keys = hijack.parse_detach_keys(request.query.get("detachKeys") or hijack.DEFAULT_DETACH_KEYS)
    except ValueError:
        raise BadRequest(f"Invalid detach keys ({request.query.get('detachKeys')}) provided") from None
    path = _log_path(rec)
    offset, inode = await asyncio.to_thread(logs.end_of_log, path)
    watch = _DieWatch(engine, cid)
    seen_running = bool(await _maybe(mgr.is_running(rec)))
    try:
        conn = await hijack.hijack(request, hijack.RAW_STREAM if tty else hijack.MULTIPLEXED_STREAM)
    except BaseException:
        watch.close()
        raise
    stdin_task = None
    tracker = hijack.track(request).__enter__()
    reading = contextlib.ExitStack()
    if hasattr(mgr, "reading"):
        reading.enter_context(mgr.reading(cid))
    try:
        if want_stdin and rec.config.get("OpenStdin"):
            stdin_task = asyncio.ensure_future(_attach_stdin(engine, cid, conn, bool(rec.config.get("StdinOnce")),
                                                             detach_keys))

        async def stopped() -> bool:
            nonlocal seen_running
            if conn.closed or watch.check():
                return True
            if stdin_task is not None and stdin_task.done() and not stdin_task.cancelled() \
                    and stdin_task.result() == "detached":
                return True
            running = await _is_running(mgr, cid)
            if running is None:
                return True
            if running:
                seen_running = True
            return seen_running and not running

        if opts.stdout or opts.stderr:
            async with contextlib.aclosing(logs.stream_log(
                    path, opts, history=want_logs, follow=want_stream, stopped=stopped,
                    start=None if want_logs else (offset, inode))) as chunks:
                async for chunk in chunks:
                    await conn.write(chunk)
        elif want_stream:
            while not await stopped():
                await asyncio.sleep(logs.POLL)
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        reading.close()
        tracker.__exit__()
        watch.close()
        if stdin_task is not None:
            stdin_task.cancel()
        conn.close()
    return hijack.HijackedResponse()


async def _attach_stdin(engine, cid: str, conn: hijack.Hijacked, once: bool,
                        detach_keys: bytes | None = None) -> str | None:
    """Client bytes -> the container's stdin FIFO (the pty, for a TTY container: the shim
    copies the FIFO to it). Waits for the container to be started first."""
    import os
    path = None
    delay = 0.02
    while not conn.closed:  # attached before start: wait (as long as the client stays)
        try:
            st = await asyncio.to_thread(engine.runtime.state, cid)
            path = st.get("stdinPath")
            if path and st.get("status") in ("created", "running", "paused"):
                break
            path = None
        except Exception:  # noqa: BLE001 - not started yet
            pass
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.5)
    if not path:
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return
    try:
        await hijack.pump_stdin(conn, fd, close_at_eof=True, detach_keys=detach_keys)
    except hijack.Detached:
        return "detached"  # the container goes on; its stdin stays open
    if once:
        # StdinOnce: the client's stdin ended, so does the container's (the shim drops
        # its own write end; ours is closed: the container reads EOF)
        ctl = os.path.join(os.path.dirname(path), "stdin-ctl")
        try:
            cfd = os.open(ctl, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return
        try:
            os.write(cfd, b"close\n")
        except OSError:
            pass
        finally:
            os.close(cfd)


# -- archive -------------------------------------------------------------------------------

def _container_pid(engine, rec) -> int | None:
    try:
        st = engine.runtime.state(rec.id)
    except Exception:  # noqa: BLE001 - no runtime state: not started or stopped
        return None
    if st.get("status") in ("created", "running", "paused") and st.get("pid"):
        return int(st["pid"])
    return None


_cleaned: set[int] = set()


@contextlib.asynccontextmanager
async def container_root(engine, rec):
    """The container's root directory fd, for the time of a copy. A stopped container's
    overlay is mounted meanwhile, under its lock (so that it is not started in between);
    a running one is reached through /proc/<pid>/root without blocking its lifecycle."""
    from pystack.engine import archive
    if id(engine) not in _cleaned:
        _cleaned.add(id(engine))
        await asyncio.to_thread(archive.cleanup_stale_mounts, engine.run)
    pid = await asyncio.to_thread(_container_pid, engine, rec)
    lock = None
    if pid is None:
        lock = engine.containers.lock(rec.id)
        await lock.acquire()
    try:
        if lock is not None:
            pid = await asyncio.to_thread(_container_pid, engine, rec)
        ctx = archive.container_root(pid, rec.extra or {}, engine.run, rec.id)
        try:
            root = await asyncio.to_thread(ctx.__enter__)
        except archive.ContainerGone:
            if lock is not None:
                raise
            # it stopped meanwhile: look again under its lock (then its overlay is free)
            lock = engine.containers.lock(rec.id)
            await lock.acquire()
            pid = await asyncio.to_thread(_container_pid, engine, rec)
            ctx = archive.container_root(pid, rec.extra or {}, engine.run, rec.id)
            root = await asyncio.to_thread(ctx.__enter__)
        try:
            yield root
        finally:
            await asyncio.to_thread(ctx.__exit__, None, None, None)
    finally:
        if lock is not None:
            lock.release()


async def archive_head(request: web.Request) -> web.StreamResponse:
    from pystack.engine import archive
    engine = request.app["engine"]
    rec = engine.containers.get(request.match_info["id"])
    path = request.query.get("path", "")
    try:
        async with container_root(engine, rec) as root:
            doc = await asyncio.to_thread(archive.stat_doc, root, path, rec.name)
    except NotFound:
        return web.Response(status=404)
    except UserError:
        return web.Response(status=400)
    return web.Response(status=200, headers={"X-Docker-Container-Path-Stat": archive.stat_header(doc),
                                             "Content-Type": "application/json"})


class _AsyncWriter:
    """A file-like for a worker thread, writing into an aiohttp response on the loop."""

    def __init__(self, resp: web.StreamResponse, loop: asyncio.AbstractEventLoop) -> None:
        self.resp, self.loop = resp, loop
        self.buf = bytearray()

    def write(self, data) -> int:
        self.buf += data
        if len(self.buf) >= 256 * 1024:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self.buf:
            data, self.buf = bytes(self.buf), bytearray()
            asyncio.run_coroutine_threadsafe(self.resp.write(data), self.loop).result()


async def archive_get(request: web.Request) -> web.StreamResponse:
    from pystack.engine import archive
    engine = request.app["engine"]
    rec = engine.containers.get(request.match_info["id"])
    path = request.query.get("path", "")
    loop = asyncio.get_running_loop()
    async with container_root(engine, rec) as root:
        doc = await asyncio.to_thread(archive.stat_doc, root, path, rec.name)
        resp = web.StreamResponse(status=200, headers={
            "Content-Type": "application/x-tar",
            "X-Docker-Container-Path-Stat": archive.stat_header(doc)})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        writer = _AsyncWriter(resp, loop)

        def work():
            archive.write_tar(root, path, writer, rec.name)
            writer.flush()
        try:
            await asyncio.to_thread(work)
        except (ConnectionError, RuntimeError, UserError, OSError) as exc:
            log.warning("archive of %s:%s stopped: %s", rec.id[:12], path, exc)
            return resp  # headers sent: the cut stream tells the client
    await resp.write_eof()
    return resp


class _BodyReader:
    """A blocking file-like over the request body, for tarfile in a worker thread."""

    def __init__(self, request: web.Request, loop: asyncio.AbstractEventLoop, limit: int) -> None:
        self.content, self.loop = request.content, loop
        self.left = limit

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = 1 << 20
        data = asyncio.run_coroutine_threadsafe(self.content.read(n), self.loop).result()
        self.left -= len(data)
        if self.left < 0:
            raise UserError("archive too large")
        return data


MAX_ARCHIVE = 8 * 1024 ** 3


async def archive_put(request: web.Request) -> web.Response:
    from pystack.engine import archive
    engine = request.app["engine"]
    rec = engine.containers.get(request.match_info["id"])
    path = request.query.get("path", "")
    if not path:
        raise BadRequest("path is required (path=/...)")
    no_overwrite = flag(request, "noOverwriteDirNonDir")
    if (rec.host_config or {}).get("ReadonlyRootfs"):
        from pystack.errors import Conflict
        raise Conflict("container rootfs is marked read-only")
    loop = asyncio.get_running_loop()
    reader = _BodyReader(request, loop, MAX_ARCHIVE)
    async with container_root(engine, rec) as root:
        await asyncio.to_thread(archive.extract_tar, root, path, reader,
                                no_overwrite_dir_non_dir=no_overwrite, container=rec.name,
                                copy_uid_gid_of=(rec.config or {}).get("User") or ""
                                if flag(request, "copyUIDGID") else None)
    return web.Response(status=200)


# -- resize (the TTY of a container) -------------------------------------------------------

def _resize_tty(pid: int, cid: str, h: int, w: int) -> None:
    """TIOCSWINSZ on the container's terminal, reached as PID 1's stdin (the pty slave):
    the shim holds the master, the kernel applies the size to the pair either way."""
    import os
    import stat as stat_mod
    from pystack.engine.archive import open_container_proc
    from pystack.engine.execs import set_winsize
    procfd = open_container_proc(pid, cid)
    try:
        fd = os.open("fd/0", os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=procfd)
    finally:
        os.close(procfd)
    try:
        if stat_mod.S_ISCHR(os.fstat(fd).st_mode) and os.isatty(fd):
            set_winsize(fd, h, w)
    finally:
        os.close(fd)


async def container_resize(request: web.Request) -> web.Response:
    from pystack.errors import Conflict
    engine = request.app["engine"]
    rec = engine.containers.get(request.match_info["id"])
    try:
        h = int(request.query.get("h", "0"))
        w = int(request.query.get("w", "0"))
    except ValueError:
        raise BadRequest("h and w must be integers") from None
    if not (0 <= h <= 65535 and 0 <= w <= 65535):
        raise BadRequest("h and w must be between 0 and 65535")
    if not await _maybe(engine.containers.is_running(rec)):
        raise Conflict(f"Container {rec.id} is not running")
    pid = await asyncio.to_thread(_container_pid, engine, rec)
    if pid and _tty(rec):
        try:
            await asyncio.to_thread(_resize_tty, pid, rec.id, h, w)
        except OSError as exc:
            log.debug("resize %s: %s", rec.id[:12], exc)
    return web.Response(status=200)


def setup(app: web.Application) -> None:
    hijack.setup_shutdown(app)
    add_route(app, "POST", "/containers/{id}/resize", container_resize)
    add_route(app, "GET", "/containers/{id}/logs", container_logs)
    add_route(app, "POST", "/containers/{id}/attach", container_attach)
    add_route(app, "HEAD", "/containers/{id}/archive", archive_head)
    add_route(app, "GET", "/containers/{id}/archive", archive_get)
    add_route(app, "PUT", "/containers/{id}/archive", archive_put)
