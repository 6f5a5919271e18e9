"""Engine-only extras under ``/pystack/...`` (not part of the Docker Engine API).

``PUT /pystack/containers/{id}/files?path=/app/x.py[&mode=0644&uid=&gid=&mkdirs=1]``: the
request body becomes the file ``path`` inside the container, atomically (temporary file
+ rename in the same directory: a watcher in the container sees the old or the new file,
never half of one) — pystack's hot reload (``watch`` sync) uses it instead of a tar
upload. The path is resolved inside the container's root like ``docker cp``'s (no escape
through ``..`` or symlinks). Answer: ``{"Path": ..., "Size": n}``.
"""
from __future__ import annotations

import asyncio

from aiohttp import web

from pystack.engine.api import MAX_BODY, BadRequest, add_route, flag

MAX_FILE = MAX_BODY


def _int(request: web.Request, name: str, base: int = 10) -> int | None:
    value = request.query.get(name)
    if value is None or value == "":
        return None
    try:
        n = int(value, base)
    except ValueError:
        raise BadRequest(f"{name} must be a number") from None
    if n < 0:
        raise BadRequest(f"{name} must not be negative")
    return n


async def put_file(request: web.Request) -> web.Response:
    from pystack.engine import archive
    from pystack.engine.stream_routes import container_root
    engine = request.app["engine"]
    rec = engine.containers.get(request.match_info["id"])
    path = request.query.get("path", "")
    if not path:
        raise BadRequest("path is required (path=/...)")
    mode = _int(request, "mode", 8)
    if mode is not None and mode > 0o7777:
        raise BadRequest("mode must be an octal permission like 0644")
    uid, gid = _int(request, "uid"), _int(request, "gid")
    if request.content_length is not None and request.content_length > MAX_FILE:
        raise BadRequest(f"file larger than {MAX_FILE} bytes")
    data = await request.read()  # bounded by the app's client_max_size
    async with container_root(engine, rec) as root:
        out = await asyncio.to_thread(archive.write_file, root, path, [data], mode=mode, uid=uid, gid=gid,
                                      make_parents=flag(request, "mkdirs"), container=rec.name)
    return web.json_response({"Path": out["path"], "Size": out["size"]})


def setup(app: web.Application) -> None:
    add_route(app, "PUT", "/pystack/containers/{id}/files", put_file)
