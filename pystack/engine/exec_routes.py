"""``POST /containers/{id}/exec``, ``POST /exec/{id}/start``, ``/exec/{id}/resize``,
``GET /exec/{id}/json`` — Docker's exec API on ``engine.runtime.exec``.

Start hijacks the connection (pystack.engine.hijack): multiplexed frames without a TTY,
raw bytes with one. A program that cannot be started (not found, not executable) gets
Docker's treatment: the stream carries the OCI-style error text and the instance's
ExitCode is 126 (``docker exec`` exits 126, what docker-py's ``exec_run`` returns).
"""
from __future__ import annotations

import asyncio
import inspect
import logging
import os

from aiohttp import web

from pystack.engine import execs, hijack
from pystack.engine.api import BadRequest, add_route, json_body
from pystack.errors import Conflict, NotFound, UserError

log = logging.getLogger("pystackd.exec")


async def _maybe(value):
    if inspect.isawaitable(value):
        return await value
    return value


def _live_ids(engine) -> set[str]:
    try:
        return {r.id for r in engine.containers.all()}
    except AttributeError:
        return {r.id for r in engine.records}


async def exec_create(request: web.Request) -> web.Response:
    engine = request.app["engine"]
    mgr = engine.containers
    rec = mgr.get(request.match_info["id"])
    body = execs.validate_create(await json_body(request))
    status = (rec.state or {}).get("Status")
    if status == "paused":
        raise Conflict(f"Container {rec.id} is paused, unpause the container before exec")
    if not await _maybe(mgr.is_running(rec)):
        raise Conflict(f"Container {rec.id} is not running")
    store = execs.store_of(engine)
    store.prune(_live_ids(engine))
    inst = execs.ExecInstance(rec.id, body)
    store.add(inst)
    engine.events.emit("container", f"exec_create: {' '.join(inst.cmd)}", rec.id,
                       {"name": rec.name, "image": rec.image, "execID": inst.id})
    return web.json_response({"Id": inst.id}, status=201)


def _instance(request: web.Request) -> execs.ExecInstance:
    """The exec instance named in the path; gone (404) once its container is removed."""
    engine = request.app["engine"]
    store = execs.store_of(engine)
    inst = store.get(request.match_info["id"])
    try:
        engine.containers.get(inst.container_id)
    except NotFound:
        if not inst.running:
            store.items.pop(inst.id, None)
            raise NotFound(f"No such exec instance: {request.match_info['id']}") from None
    return inst


async def exec_json(request: web.Request) -> web.Response:
    return web.json_response(_instance(request).inspect())


async def exec_resize(request: web.Request) -> web.Response:
    inst = _instance(request)
    try:
        h = int(request.query.get("h", "0"))
        w = int(request.query.get("w", "0"))
    except ValueError:
        raise BadRequest("h and w must be integers") from None
    if h < 0 or w < 0 or h > 65535 or w > 65535:
        raise BadRequest("h and w must be between 0 and 65535")
    inst.size = (h, w)
    proc = inst.process
    if proc is not None and getattr(proc, "pty", None) is not None:
        try:
            execs.set_winsize(proc.pty, h, w)
        except OSError:
            pass
    elif inst.started and not inst.running:
        raise Conflict(f"Exec {inst.id} is not running")
    return web.Response(status=200)


async def _spawn(engine, inst: execs.ExecInstance, rec, *, detach: bool):
    """Start the process (in a thread: the runtime blocks until it is exec'd)."""
    def work():
        pid = None
        try:
            pid = int(engine.runtime.state(rec.id).get("pid") or 0)
        except Exception:  # noqa: BLE001
            pass
        root = f"/proc/{pid}/root" if pid else "/nonexistent"
        process = execs.build_process(inst, rec, root)
        return engine.runtime.exec(rec.id, process, tty=inst.tty, detach=detach)
    return await asyncio.to_thread(work)


def _finish(engine, inst: execs.ExecInstance, code: int) -> None:
    inst.exit_code = code
    inst.running = False
    inst.process = None
    inst.done.set()
    try:
        rec = engine.containers.get(inst.container_id)
        engine.events.emit("container", "exec_die", rec.id,
                           {"name": rec.name, "image": rec.image, "execID": inst.id, "exitCode": str(code)})
    except (NotFound, UserError):
        pass


async def _wait_exit(proc) -> int:
    """The exec's exit code, waited for on the event loop (no thread held per exec)."""
    if not hasattr(proc, "poll") or not hasattr(proc, "fileno"):
        try:
            return await asyncio.to_thread(proc.wait)
        except Exception:  # noqa: BLE001 - the supervisor died: unknown
            return 126
    loop = asyncio.get_running_loop()
    try:
        while True:
            code = proc.poll()
            if code is not None:
                return code
            fd = proc.fileno()
            fut = loop.create_future()
            loop.add_reader(fd, lambda: fut.done() or fut.set_result(None))
            try:
                await fut
            finally:
                loop.remove_reader(fd)
    except Exception:  # noqa: BLE001 - the supervisor died: unknown
        return 126


async def exec_start(request: web.Request) -> web.StreamResponse:
    engine = request.app["engine"]
    inst = _instance(request)
    body = await json_body(request)
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    detach = bool(body.get("Detach"))
    if "Tty" in body and body.get("Tty") is not None:
        inst.tty = bool(body["Tty"]) or inst.tty
    if body.get("ConsoleSize"):
        size = body["ConsoleSize"]
        if isinstance(size, list) and len(size) == 2:
            inst.size = (int(size[0]), int(size[1]))
    execs.check_startable(inst)
    mgr = engine.containers
    rec = mgr.get(inst.container_id)
    if (rec.state or {}).get("Status") == "paused":
        raise Conflict(f"Container {rec.id} is paused, unpause the container before exec")
    if not await _maybe(mgr.is_running(rec)):
        raise Conflict(f"Container {rec.id} is not running")
    inst.started = True
    inst.running = True

    if detach:
        try:
            proc = await _spawn(engine, inst, rec, detach=True)
        except UserError as exc:
            _finish(engine, inst, 126)
            raise Conflict(_oci_error(exc)) from None
        inst.pid, inst.process = proc.pid, proc
        engine.events.emit("container", f"exec_start: {' '.join(inst.cmd)}", rec.id,
                           {"name": rec.name, "image": rec.image, "execID": inst.id})

        async def reap():
            drain = None
            if proc.pty is not None:  # nobody reads a detached terminal: keep it from filling
                drain = asyncio.ensure_future(_discard(proc.pty))
            code = await _wait_exit(proc)
            if drain is not None:
                drain.cancel()
                await asyncio.gather(drain, return_exceptions=True)
            proc.close()
            _finish(engine, inst, code)
        asyncio.ensure_future(reap())
        return web.Response(status=200)

    conn = await hijack.hijack(request, hijack.RAW_STREAM if inst.tty else hijack.MULTIPLEXED_STREAM)
    tracker = hijack.track(request).__enter__()
    try:
        try:
            proc = await _spawn(engine, inst, rec, detach=False)
        except UserError as exc:
            msg = (_oci_error(exc) + "\r\n").encode()
            await conn.write(msg if inst.tty else hijack.frame(hijack.STDOUT, msg))
            _finish(engine, inst, 126)
            return hijack.HijackedResponse()
        inst.pid, inst.process = proc.pid, proc
        engine.events.emit("container", f"exec_start: {' '.join(inst.cmd)}", rec.id,
                           {"name": rec.name, "image": rec.image, "execID": inst.id})
        if inst.tty and inst.size and proc.pty is not None:
            try:
                execs.set_winsize(proc.pty, *inst.size)
            except OSError:
                pass
        code = await _run_attached(conn, inst, proc)
        _finish(engine, inst, code)
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        tracker.__exit__()
        conn.close()
    return hijack.HijackedResponse()


async def _discard(fd: int) -> None:
    os.set_blocking(fd, False)
    while await hijack.read_fd(fd):
        pass


def _oci_error(exc: Exception) -> str:
    return f"OCI runtime exec failed: exec failed: unable to start container process: {exc}: unknown"


async def _run_attached(conn: hijack.Hijacked, inst: execs.ExecInstance, proc) -> int:
    """Copy the process's output to the client and the client's input to the process until
    the process has exited and its output is drained; returns the exit code."""
    tasks: list[asyncio.Task] = []
    outputs: list[asyncio.Task] = []
    client_ok = True

    async def send(data: bytes) -> None:
        nonlocal client_ok
        if not client_ok:
            return
        try:
            await conn.write(data)
        except ConnectionError:
            client_ok = False

    async def copy_out(fd: int, stream: int | None) -> None:
        os.set_blocking(fd, False)
        wanted = inst.attach_stdout if stream in (None, hijack.STDOUT) else inst.attach_stderr
        while True:
            data = await hijack.read_fd(fd)
            if not data:
                return
            if wanted:  # not attached: read and dropped, as Docker does
                await send(data if stream is None else hijack.frame(stream, data))

    if proc.pty is not None:
        master = proc.pty
        outputs.append(asyncio.ensure_future(copy_out(master, None)))
        if inst.attach_stdin:
            tasks.append(asyncio.ensure_future(hijack.pump_stdin(conn, os.dup(master), close_at_eof=True)))
    else:
        if proc.stdout is not None:
            outputs.append(asyncio.ensure_future(copy_out(proc.stdout.fileno(), hijack.STDOUT)))
        if proc.stderr is not None:
            outputs.append(asyncio.ensure_future(copy_out(proc.stderr.fileno(), hijack.STDERR)))
        if proc.stdin is not None:
            if inst.attach_stdin:
                fd = os.dup(proc.stdin.fileno())
                proc.stdin.close()
                proc.stdin = None
                tasks.append(asyncio.ensure_future(hijack.pump_stdin(conn, fd, close_at_eof=True)))
            else:
                proc.stdin.close()
                proc.stdin = None
    wait_task = asyncio.ensure_future(_wait_exit(proc))
    try:
        await asyncio.wait({wait_task, conn.lost}, return_when=asyncio.FIRST_COMPLETED)
        if not wait_task.done():
            # the client went away: hang up the terminal (SIGHUP) or close the pipes (EOF,
            # SIGPIPE) as a dropped connection does with Docker; the exit is still recorded
            for t in tasks + outputs:
                t.cancel()
            await asyncio.gather(*tasks, *outputs, return_exceptions=True)
            if proc.pty is not None:
                os.close(proc.pty)
                proc.pty = None
            for name in ("stdin", "stdout", "stderr"):
                f = getattr(proc, name)
                if f is not None:
                    f.close()
                    setattr(proc, name, None)
        code = await wait_task
        if proc.pty is not None:
            # the pty's output may still hold bytes: drain briefly (EIO ends it once the
            # last holder of the slave side is gone)
            await asyncio.wait(outputs, timeout=2.0)
        else:
            await asyncio.wait(outputs, timeout=5.0)
        return code
    finally:
        for t in tasks + outputs + [wait_task]:
            if not t.done():
                t.cancel()
        await asyncio.gather(*tasks, *outputs, return_exceptions=True)
        try:
            proc.close()
        except OSError:
            pass


def setup(app: web.Application) -> None:
    hijack.setup_shutdown(app)
    add_route(app, "POST", "/containers/{id}/exec", exec_create)
    add_route(app, "POST", "/exec/{id}/start", exec_start)
    add_route(app, "POST", "/exec/{id}/resize", exec_resize)
    add_route(app, "GET", "/exec/{id}/json", exec_json)
