"""``GET /events`` (JSON lines, streamed) and ``GET /system/df``.

``/events``: ``since``/``until`` are unix seconds (fractional: ``1700000000.123456789``) or
RFC 3339 times; past events come from the engine's in-memory history (``EventBus``), live
ones follow; the stream ends at ``until`` (at once when it is in the past). Filters follow
moby's ``daemon/events/filter.go``: every given key must match; ``container``/``network``/
``volume`` match the actor's id (prefix) or ``name`` attribute; ``image`` the id, the
``image`` attribute of container events or the ``name`` of image events (with or without
tag); ``label`` the actor's attributes; ``type`` and ``event`` exactly.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import time
from typing import Any

from aiohttp import web

from pystack.engine.api import BadRequest, add_route, filters_of

EVENT_FILTERS = ("container", "daemon", "event", "image", "label", "network", "node", "plugin", "scope",
                 "service", "type", "volume", "config", "secret")
EVENT_TYPES = ("container", "image", "volume", "network", "daemon", "plugin", "service", "node",
               "secret", "config", "builder")
KEEPALIVE_CHECK = 1.0  # seconds between checks that an idle client is still there


def parse_time(text: str) -> int:
    """Docker's timestamp parameter -> unix nanoseconds."""
    text = text.strip()
    m = re.fullmatch(r"(-?\d+)(?:\.(\d{1,9}))?", text)
    if m:
        return int(m.group(1)) * 1_000_000_000 + int((m.group(2) or "0").ljust(9, "0"))
    from datetime import datetime
    try:
        frac = re.search(r"\.(\d+)", text)
        nanos = int(frac.group(1)[:9].ljust(9, "0")) if frac else 0
        base = re.sub(r"\.\d+", "", text).replace("Z", "+00:00")
        dt = datetime.fromisoformat(base)
        if dt.tzinfo is None:
            from datetime import timezone
            dt = dt.replace(tzinfo=timezone.utc)
        return int(dt.timestamp()) * 1_000_000_000 + nanos
    except ValueError:
        raise BadRequest(f"invalid timestamp {text!r} (unix seconds or RFC 3339)") from None


def _strip_tag(name: str) -> str:
    slash, colon = name.rfind("/"), name.rfind(":")
    return name[:colon] if colon > slash else name


def _fuzzy(wanted: list[str], *values: str) -> bool:
    return any(v and (v == w or v.startswith(w)) for w in wanted for v in values)


def matches(event: dict[str, Any], filters: dict[str, list[str]]) -> bool:
    """moby's events.Filter.Include."""
    actor = event["Actor"]
    attrs = actor.get("Attributes") or {}
    aid = actor.get("ID", "")
    for key, wanted in filters.items():
        if not wanted:
            continue
        if key == "type":
            ok = event["Type"] in wanted
        elif key == "event":
            action = event["Action"]
            ok = action in wanted or action.split(":")[0].strip() in wanted
        elif key in ("container", "network", "volume", "plugin", "service", "node", "config", "secret"):
            ok = _fuzzy(wanted, aid, attrs.get("name", ""))
        elif key == "image":
            name = attrs.get("name" if event["Type"] == "image" else "image", "")
            ok = any(w in (aid, name, _strip_tag(aid), _strip_tag(name)) for w in wanted)
        elif key == "label":
            ok = all(
                (attrs.get(w.split("=", 1)[0]) == w.split("=", 1)[1]) if "=" in w else (w in attrs)
                for w in wanted)
        elif key == "scope":
            ok = event.get("scope", "local") in wanted
        elif key == "daemon":
            ok = event["Type"] == "daemon" and aid in wanted
        else:
            ok = True
        if not ok:
            return False
    return True


async def events(request: web.Request) -> web.StreamResponse:
    engine = request.app["engine"]
    filters = filters_of(request)
    for key, values in filters.items():
        if key not in EVENT_FILTERS:
            raise BadRequest(f"invalid filter '{key}'")
        if key == "type":
            for v in values:
                if v not in EVENT_TYPES:
                    raise BadRequest(f"unknown event type: {v}")
    since = parse_time(request.query["since"]) if request.query.get("since") else None
    until = parse_time(request.query["until"]) if request.query.get("until") else None
    if until is not None and since is None:
        since = 0  # moby replays the buffered events up to until
    if since is not None and since > time.time_ns() and until is None:
        pass  # live events from a future time on: EventBus skips the earlier ones
    resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    if request.version >= (1, 1):
        resp.enable_chunked_encoding()
    await resp.prepare(request)
    stream = engine.events.stream(since, until, {})
    pending: asyncio.Future | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(stream.__anext__())
            done, _ = await asyncio.wait({pending}, timeout=KEEPALIVE_CHECK)
            if not done:
                transport = request.transport
                if transport is None or transport.is_closing():
                    break
                continue
            try:
                event = pending.result()
            except StopAsyncIteration:
                pending = None
                break
            pending = None
            if matches(event, filters):
                await resp.write(json.dumps(event).encode() + b"\n")
    except (ConnectionError, RuntimeError):
        return resp
    finally:
        if pending is not None:
            pending.cancel()
            try:
                await pending
            except (asyncio.CancelledError, StopAsyncIteration):
                pass
        await stream.aclose()
    try:
        await resp.write_eof()
    except (ConnectionError, RuntimeError):
        pass
    return resp


# -- /system/df ------------------------------------------------------------------------------

def _dir_size(path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_blocks * 512
            except OSError:
                pass
    return total


def _layers_size(store) -> int:
    total = 0
    try:
        for d in store.layers_dir.iterdir():
            try:
                total += json.loads((d / "layer.json").read_text()).get("size", 0)
            except (OSError, ValueError):
                continue
    except OSError:
        pass
    return total


def _container_rows(engine) -> list[dict[str, Any]]:
    """``/containers/json`` rows (the container manager's, when it has them), on the loop."""
    records = list(engine.records)
    try:
        manager = engine.containers
        return [dict(manager.list_json(r)) for r in records]
    except (ModuleNotFoundError, AttributeError):
        pass
    rows = []
    for r in records:
        state = (r.state or {}).get("Status", "created")
        rows.append({
            "Id": r.id, "Names": [f"/{r.name}"], "Image": r.image, "ImageID": r.image_id,
            "Command": " ".join((r.config.get("Entrypoint") or []) + (r.config.get("Cmd") or [])),
            "Created": _unix(r.created), "State": state, "Status": state, "Labels": r.labels,
            "Mounts": r.mounts,
        })
    return rows


def _unix(text: str) -> int:
    try:
        return parse_time(text) // 1_000_000_000
    except Exception:  # noqa: BLE001 - a record without a usable time
        return 0


def disk_usage(engine, types: list[str], containers: list[dict[str, Any]]) -> dict[str, Any]:
    from pystack.engine.image_routes import images_in_use, summary
    out: dict[str, Any] = {"LayersSize": 0, "Images": [], "Containers": [], "Volumes": [], "BuildCache": []}
    if not types or "image" in types:
        store = engine.images
        in_use = images_in_use(engine)
        out["Images"] = [summary(img, len(in_use.get(img.id, []))) for img in store.list()]
        for row in out["Images"]:
            row["SharedSize"] = 0
        out["LayersSize"] = _layers_size(store)
    if not types or "container" in types:
        uppers = {r.id: (r.extra or {}).get("upper") for r in engine.records}
        for row in containers:
            upper = uppers.get(row["Id"])
            row["SizeRw"] = _dir_size(upper) if upper else 0
            row["SizeRootFs"] = row["SizeRw"]
            out["Containers"].append(row)
    if not types or "volume" in types:
        for vol in engine.volumes.list():
            doc = vol.to_api()
            doc["UsageData"] = {"Size": _dir_size(vol.data_path), "RefCount": len(vol.users)}
            out["Volumes"].append(doc)
    return out


async def system_df(request: web.Request) -> web.Response:
    types = request.query.getall("type", [])
    for t in types:
        if t not in ("container", "image", "volume", "build-cache"):
            raise BadRequest(f"unknown object type: {t}")
    engine = request.app["engine"]
    containers = _container_rows(engine) if not types or "container" in types else []
    return web.json_response(await asyncio.to_thread(disk_usage, engine, types, containers))


def setup(app: web.Application) -> None:
    add_route(app, "GET", "/events", events)
    add_route(app, "GET", "/system/df", system_df)
