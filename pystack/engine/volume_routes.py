"""``/volumes/...``: the Engine API over ``pystack.volumes.api`` (Docker's shapes and codes),
plus the engine-only snapshot extras under ``/pystack/volumes/...``.

Events: ``volume create`` (only when the volume is new: create is idempotent) and
``volume destroy``; mount/unmount are the container manager's.

Extras (pystack only, used by ``pystack volume snapshot|restore``):

    GET    /pystack/volumes/snapshots              every snapshot (list of metadata dicts)
    GET    /pystack/volumes/{name}/snapshots       one volume's snapshots
    POST   /pystack/volumes/{name}/snapshots?tag=T take one -> SnapshotInfo (201)
    DELETE /pystack/volumes/{name}/snapshots/{tag} delete one (204)
    POST   /pystack/volumes/{name}/restore?tag=T   put the data back (409 while in use)
"""
from __future__ import annotations

import asyncio

from aiohttp import web

from pystack.engine.api import BadRequest, add_route, json_body


def _store(request: web.Request):
    return request.app["engine"].volumes


def _emit(request: web.Request, action: str, name: str, **attrs: str) -> None:
    request.app["engine"].events.emit("volume", action, name, {"driver": "local", **attrs})


async def list_volumes(request: web.Request) -> web.Response:
    from pystack.volumes import api
    return web.json_response(await asyncio.to_thread(api.list_volumes, _store(request), dict(request.query)))


async def create_volume(request: web.Request) -> web.Response:
    from pystack.volumes import api
    body = await json_body(request)
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    store = _store(request)
    name = body.get("Name") or None
    if name is not None and not isinstance(name, str):
        raise BadRequest("Name must be a string")

    def work():
        existed = bool(name) and store.exists(name)
        return existed, api.create_volume(store, body)
    existed, vol = await asyncio.to_thread(work)
    if not existed:
        _emit(request, "create", vol["Name"], driver=vol.get("Driver", "local"))
    return web.json_response(vol, status=201)


async def inspect_volume(request: web.Request) -> web.Response:
    from pystack.volumes import api
    return web.json_response(await asyncio.to_thread(api.inspect_volume, _store(request),
                                                     request.match_info["name"]))


async def remove_volume(request: web.Request) -> web.Response:
    from pystack.volumes import api
    store = _store(request)
    name = request.match_info["name"]

    def work():
        existed = store.exists(name)
        api.remove_volume(store, name, dict(request.query))
        return existed
    if await asyncio.to_thread(work):
        _emit(request, "destroy", name)
    return web.Response(status=204)


async def prune_volumes(request: web.Request) -> web.Response:
    from pystack.volumes import api
    result = await asyncio.to_thread(api.prune_volumes, _store(request), dict(request.query))
    for name in result.get("VolumesDeleted") or []:
        _emit(request, "destroy", name)
    return web.json_response(result)


# -- engine-only extras: snapshots -----------------------------------------------------------

def _tag(request: web.Request) -> str:
    tag = request.query.get("tag", "")
    if not tag:
        raise BadRequest("tag is required")
    return tag


async def list_snapshots(request: web.Request) -> web.Response:
    name = request.match_info.get("name")
    return web.json_response(await asyncio.to_thread(_store(request).snapshots, name))


async def take_snapshot(request: web.Request) -> web.Response:
    info = await asyncio.to_thread(_store(request).snapshot, request.match_info["name"], _tag(request))
    return web.json_response(info.to_dict(), status=201)


async def remove_snapshot(request: web.Request) -> web.Response:
    await asyncio.to_thread(_store(request).remove_snapshot, request.match_info["name"], request.match_info["tag"])
    return web.Response(status=204)


async def restore_snapshot(request: web.Request) -> web.Response:
    info = await asyncio.to_thread(_store(request).restore, request.match_info["name"], _tag(request))
    return web.json_response(info.to_dict())


def setup(app: web.Application) -> None:
    add_route(app, "GET", "/volumes", list_volumes)
    add_route(app, "POST", "/volumes/create", create_volume)
    add_route(app, "POST", "/volumes/prune", prune_volumes)
    add_route(app, "GET", "/volumes/{name}", inspect_volume)
    add_route(app, "DELETE", "/volumes/{name}", remove_volume)
    add_route(app, "GET", "/pystack/volumes/snapshots", list_snapshots)
    add_route(app, "GET", "/pystack/volumes/{name}/snapshots", list_snapshots)
    add_route(app, "POST", "/pystack/volumes/{name}/snapshots", take_snapshot)
    add_route(app, "DELETE", "/pystack/volumes/{name}/snapshots/{tag}", remove_snapshot)
    add_route(app, "POST", "/pystack/volumes/{name}/restore", restore_snapshot)
