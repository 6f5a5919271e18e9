"""Container lifecycle routes of the Docker Engine API (the ContainerManager does the work).

create, list, inspect, start, stop, restart, kill, wait, pause, unpause, DELETE, rename,
top, stats, update (restart policy only), prune. Shapes and status codes as dockerd's.
"""
from __future__ import annotations

import asyncio
import json
import time

from aiohttp import web

from pystack.engine.api import BadRequest, add_route, filters_of, flag, json_body
from pystack.engine.records import now_rfc3339

MAX_CREATE_BODY = 4 * 1024 * 1024


def _mgr(request: web.Request):
    return request.app["engine"].containers


def _int(request: web.Request, name: str, default: int | None = None) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise BadRequest(f"invalid value for {name}: {raw!r}") from None


async def create(request: web.Request) -> web.Response:
    if request.content_length is not None and request.content_length > MAX_CREATE_BODY:
        raise BadRequest("request body too large")
    body = await json_body(request)
    if not isinstance(body, dict):
        raise BadRequest("container config must be a JSON object")
    result = await _mgr(request).create(body, request.query.get("name") or None,
                                        request.query.get("platform") or None)
    return web.json_response(result, status=201)


async def list_containers(request: web.Request) -> web.Response:
    mgr = _mgr(request)
    return web.json_response(mgr.list(flag(request, "all"), _int(request, "limit", -1), filters_of(request)))


async def inspect(request: web.Request) -> web.Response:
    mgr = _mgr(request)
    rec = mgr.get(request.match_info["id"])
    return web.json_response(mgr.inspect(rec, size=flag(request, "size")))


async def start(request: web.Request) -> web.Response:
    started = await _mgr(request).start(request.match_info["id"])
    return web.Response(status=204 if started else 304)


async def stop(request: web.Request) -> web.Response:
    done = await _mgr(request).stop(request.match_info["id"], _int(request, "t"),
                                    request.query.get("signal") or None)
    return web.Response(status=204 if done else 304)


async def restart(request: web.Request) -> web.Response:
    await _mgr(request).restart(request.match_info["id"], _int(request, "t"),
                                request.query.get("signal") or None)
    return web.Response(status=204)


async def kill(request: web.Request) -> web.Response:
    await _mgr(request).kill(request.match_info["id"], request.query.get("signal") or None)
    return web.Response(status=204)


async def wait(request: web.Request) -> web.StreamResponse:
    """Headers go out at once (clients such as `docker run` wait for them before they
    start the container); the body follows when the condition holds."""
    mgr = _mgr(request)
    condition = request.query.get("condition") or "not-running"
    if condition not in ("not-running", "next-exit", "removed"):
        raise BadRequest(f"invalid condition: {condition!r}")
    mgr.get(request.match_info["id"])  # 404 before the 200 headers
    waiter = asyncio.ensure_future(mgr.wait(request.match_info["id"], condition))
    await asyncio.sleep(0)  # register the waiter before anything else runs
    resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    try:
        result = await waiter
    except asyncio.CancelledError:
        waiter.cancel()
        raise
    except Exception as exc:  # noqa: BLE001 - the status line is gone: report in the body
        result = {"StatusCode": -1, "Error": {"Message": str(exc)}}
    try:
        await resp.write(json.dumps(result).encode() + b"\n")
        await resp.write_eof()
    except (ConnectionError, RuntimeError):
        pass  # the client went away (docker run --rm stops waiting once it has the exit)
    return resp


async def pause(request: web.Request) -> web.Response:
    await _mgr(request).pause(request.match_info["id"])
    return web.Response(status=204)


async def unpause(request: web.Request) -> web.Response:
    await _mgr(request).unpause(request.match_info["id"])
    return web.Response(status=204)


async def delete(request: web.Request) -> web.Response:
    await _mgr(request).remove(request.match_info["id"], force=flag(request, "force"), volumes=flag(request, "v"))
    return web.Response(status=204)


async def rename(request: web.Request) -> web.Response:
    await _mgr(request).rename(request.match_info["id"], request.query.get("name") or "")
    return web.Response(status=204)


async def top(request: web.Request) -> web.Response:
    mgr = _mgr(request)
    rec = mgr.get(request.match_info["id"])
    return web.json_response(await asyncio.to_thread(mgr.top, rec, request.query.get("ps_args")))


async def update(request: web.Request) -> web.Response:
    """Only RestartPolicy can change (a clear 400 for any other non-empty field)."""
    mgr = _mgr(request)
    rec = mgr.get(request.match_info["id"])
    body = await json_body(request)
    if not isinstance(body, dict):
        raise BadRequest("update body must be a JSON object")
    unsupported = [k for k, v in body.items() if k != "RestartPolicy" and v not in (None, 0, "", [], {}, False)]
    if unsupported:
        raise BadRequest(f"{unsupported[0]}: updating it is not supported by pystackd (only RestartPolicy)")
    async with mgr.lock(rec.id):
        if "RestartPolicy" in body:
            from pystack.engine.containers import _check_host_config
            hc = {**rec.host_config, "RestartPolicy": body["RestartPolicy"] or {"Name": "no"}}
            _check_host_config(hc)
            rec.host_config = hc
            mgr.records.save(rec)
    mgr.emit(rec, "update")
    return web.json_response({"Warnings": []})


async def prune(request: web.Request) -> web.Response:
    mgr = _mgr(request)
    filters = filters_of(request)
    deleted = []
    for rec in list(mgr.all()):
        if mgr.status(rec) not in ("exited", "created", "dead"):
            continue
        if filters.get("label") and not mgr._matches(rec, {"label": filters["label"]}):
            continue
        try:
            await mgr.remove(rec.id)
            deleted.append(rec.id)
        except Exception:  # noqa: BLE001 - started or removed meanwhile
            continue
    request.app["engine"].events.emit("container", "prune", "", {"reclaimed": "0"})
    return web.json_response({"ContainersDeleted": deleted or None, "SpaceReclaimed": 0})


def _stats_doc(mgr, rec, previous: dict | None) -> dict:
    engine = mgr.engine
    doc = {"read": now_rfc3339(), "preread": (previous or {}).get("read", "0001-01-01T00:00:00Z"),
           "name": "/" + rec.name, "id": rec.id, "num_procs": 0, "storage_stats": {},
           "blkio_stats": {"io_service_bytes_recursive": None, "io_serviced_recursive": None,
                           "io_queue_recursive": None, "io_service_time_recursive": None,
                           "io_wait_time_recursive": None, "io_merged_recursive": None,
                           "io_time_recursive": None, "sectors_recursive": None},
           "cpu_stats": {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
                         "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}},
           "memory_stats": {}, "pids_stats": {}}
    if mgr.is_running(rec):
        try:
            doc.update(engine.runtime.stats(rec.id))
        except Exception:  # noqa: BLE001 - stopped meanwhile
            pass
        nets = _net_dev(int(rec.state.get("Pid") or 0))
        if nets:
            doc["networks"] = nets
    doc["precpu_stats"] = (previous or {}).get("cpu_stats") or {
        "cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
        "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}
    return doc


def _net_dev(pid: int) -> dict:
    if pid <= 0:
        return {}
    try:
        lines = open(f"/proc/{pid}/net/dev").read().splitlines()[2:]
    except OSError:
        return {}
    out = {}
    for line in lines:
        name, _, rest = line.partition(":")
        name = name.strip()
        if name == "lo":
            continue
        f = [int(x) for x in rest.split()]
        if len(f) < 16:
            continue
        out[name] = {"rx_bytes": f[0], "rx_packets": f[1], "rx_errors": f[2], "rx_dropped": f[3],
                     "tx_bytes": f[8], "tx_packets": f[9], "tx_errors": f[10], "tx_dropped": f[11]}
    return out


async def stats(request: web.Request) -> web.StreamResponse:
    mgr = _mgr(request)
    rec = mgr.get(request.match_info["id"])
    stream = flag(request, "stream", True) and not flag(request, "one-shot")
    if not stream:
        doc = await asyncio.to_thread(_stats_doc, mgr, rec, None)
        return web.json_response(doc)
    resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    previous = None
    while True:
        doc = await asyncio.to_thread(_stats_doc, mgr, rec, previous)
        try:
            await resp.write(json.dumps(doc).encode() + b"\n")
        except (ConnectionError, RuntimeError):
            return resp
        previous = doc
        if not mgr.is_running(rec):
            break
        await asyncio.sleep(1.0)
        try:
            mgr.get(rec.id)
        except Exception:  # noqa: BLE001 - removed
            break
    try:
        await resp.write_eof()
    except (ConnectionError, RuntimeError):
        pass
    return resp


def setup(app: web.Application) -> None:
    add_route(app, "POST", "/containers/create", create)
    add_route(app, "GET", "/containers/json", list_containers)
    add_route(app, "POST", "/containers/prune", prune)
    add_route(app, "GET", "/containers/{id}/json", inspect)
    add_route(app, "POST", "/containers/{id}/start", start)
    add_route(app, "POST", "/containers/{id}/stop", stop)
    add_route(app, "POST", "/containers/{id}/restart", restart)
    add_route(app, "POST", "/containers/{id}/kill", kill)
    add_route(app, "POST", "/containers/{id}/wait", wait)
    add_route(app, "POST", "/containers/{id}/pause", pause)
    add_route(app, "POST", "/containers/{id}/unpause", unpause)
    add_route(app, "DELETE", "/containers/{id}", delete)
    add_route(app, "POST", "/containers/{id}/rename", rename)
    add_route(app, "GET", "/containers/{id}/top", top)
    add_route(app, "GET", "/containers/{id}/stats", stats)
    add_route(app, "POST", "/containers/{id}/update", update)
