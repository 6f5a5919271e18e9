"""``/networks/...``: the Engine API over ``pystack.networking.NetworkManager``.

Bridge networks are real (``NetworkManager``); ``host`` and ``none`` are listed as Docker
lists them, as virtual entries with fixed ids (no kernel object behind them). The default
``bridge`` network is the container manager's (made on first use) and shows up once it
exists. Connect/disconnect go through ``engine.containers`` (it owns the containers'
sandboxes and emits the connect/disconnect events); create/destroy events are emitted here.
Network creation times are kept beside the manager's state (``<root>/network-created.json``).
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import secrets
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from aiohttp import web

from pystack.engine.api import BadRequest, add_route, error_response, filters_of, json_body
from pystack.errors import Conflict, NotFound, UserError

PREDEFINED = ("bridge", "host", "none")
VIRTUAL = {"host": "host", "none": "null"}  # name -> driver
NETWORK_FILTERS = ("name", "id", "label", "driver", "type", "dangling", "scope")
CREATE_FIELDS = {"Name", "Driver", "Internal", "Attachable", "EnableIPv6", "IPAM", "Labels", "Options",
                 "CheckDuplicate", "Scope", "Ingress", "ConfigOnly", "ConfigFrom", "EnableIPv4"}


def _now() -> str:
    t = datetime.now(timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond:06d}000Z"


def virtual_id(name: str) -> str:
    return hashlib.sha256(f"pystack-predefined-network/{name}".encode()).hexdigest()


class CreatedTimes:
    """Creation times of networks (the manager's records do not keep one)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> dict[str, str]:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def _write(self, data: dict[str, str]) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.path)

    def set(self, net_id: str, when: str) -> None:
        data = self.read()
        data[net_id] = when
        self._write(data)

    def drop(self, net_id: str) -> None:
        data = self.read()
        if data.pop(net_id, None) is not None:
            self._write(data)

    def get(self, net_id: str) -> str:
        value = self.read().get(net_id)
        if value:
            return value
        try:
            st = self.path.parent.stat()
            return datetime.fromtimestamp(st.st_mtime, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        except OSError:
            return "0001-01-01T00:00:00Z"


def _times(engine) -> CreatedTimes:
    return CreatedTimes(engine.root / "network-created.json")


def _virtual_json(name: str) -> dict[str, Any]:
    return {
        "Name": name, "Id": virtual_id(name), "Created": "0001-01-01T00:00:00Z", "Scope": "local",
        "Driver": VIRTUAL[name], "EnableIPv6": False,
        "IPAM": {"Driver": "default", "Options": None, "Config": []},
        "Internal": False, "Attachable": False, "Ingress": False, "ConfigFrom": {"Network": ""},
        "ConfigOnly": False, "Containers": {}, "Options": {}, "Labels": {},
    }


def _all_endpoints(nm) -> list:
    from pystack.networking.types import EndpointRecord
    out = []
    for eps in nm.state.read().get("endpoints", {}).values():
        for ep in eps.values():
            out.append(EndpointRecord.from_dict(ep))
    return out


def _container_names(engine) -> dict[str, str]:
    try:
        return {r.id: r.name for r in engine.records}
    except Exception:  # noqa: BLE001 - names are cosmetic here
        return {}


def network_docs(engine) -> list[dict[str, Any]]:
    """Every network as ``GET /networks/{id}`` shows it: real ones, then host and none."""
    from pystack.networking.docker_json import network_json
    nm = engine.networks
    endpoints = _all_endpoints(nm)
    names = _container_names(engine)
    times = _times(engine)
    docs = [network_json(net, endpoints, names, created=times.get(net.id)) for net in nm.list_networks()]
    have = {d["Name"] for d in docs}
    docs += [_virtual_json(n) for n in VIRTUAL if n not in have]
    return docs


def find_network(engine, ref: str) -> dict[str, Any]:
    """By full id, name, or unique id prefix (Docker's order); NotFound otherwise."""
    docs = network_docs(engine)
    for key in ("Id", "Name"):
        for d in docs:
            if d[key] == ref:
                return d
    found = [d for d in docs if ref and d["Id"].startswith(ref)]
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise UserError(f"network {ref} is ambiguous ({len(found)} matches found based on ID prefix)")
    raise NotFound(f"network {ref} not found")


def _regex_match(patterns: list[str], value: str) -> bool:
    for p in patterns:
        try:
            if re.search(p, value):
                return True
        except re.error:
            if p in value:
                return True
    return False


def _label_match(wanted: list[str], labels: dict[str, str]) -> bool:
    for w in wanted:
        k, eq, v = w.partition("=")
        if k not in labels or (eq and labels[k] != v):
            return False
    return True


def apply_filters(docs: list[dict[str, Any]], filters: dict[str, list[str]]) -> list[dict[str, Any]]:
    for key, values in filters.items():
        if key not in NETWORK_FILTERS:
            raise BadRequest(f"invalid filter '{key}'")
        if key == "type":
            for v in values:
                if v not in ("custom", "builtin"):
                    raise BadRequest(f"invalid filter: 'type'='{v}'")
        if key == "dangling":
            for v in values:
                if v.lower() not in ("true", "false", "1", "0"):
                    raise BadRequest(f"invalid filter 'dangling={v}'")
    out = []
    for d in docs:
        if "name" in filters and not _regex_match(filters["name"], d["Name"]):
            continue
        if "id" in filters and not _regex_match(filters["id"], d["Id"]):
            continue
        if "driver" in filters and d["Driver"] not in filters["driver"]:
            continue
        if "label" in filters and not _label_match(filters["label"], d["Labels"] or {}):
            continue
        if "scope" in filters and d["Scope"] not in filters["scope"]:
            continue
        if "type" in filters:
            kind = "builtin" if d["Name"] in PREDEFINED else "custom"
            if kind not in filters["type"]:
                continue
        if "dangling" in filters:
            want = filters["dangling"][0].lower() in ("true", "1")
            dangling = not d["Containers"] and d["Name"] not in PREDEFINED
            if dangling != want:
                continue
        out.append(d)
    return out


async def list_networks(request: web.Request) -> web.Response:
    engine = request.app["engine"]
    filters = filters_of(request)
    docs = await asyncio.to_thread(network_docs, engine)
    return web.json_response(apply_filters(docs, filters))


async def inspect_network(request: web.Request) -> web.Response:
    engine = request.app["engine"]
    ref = request.match_info["id"]
    return web.json_response(await asyncio.to_thread(find_network, engine, ref))


def _check_create_body(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    unknown = sorted(set(body) - CREATE_FIELDS)
    if unknown:
        raise BadRequest(f"network create: field {unknown[0]} is not supported by pystack")
    name = body.get("Name")
    if not name or not isinstance(name, str):
        raise BadRequest("network create: Name is required")
    if not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", name):
        raise BadRequest(f"network create: invalid name {name!r} (only [a-zA-Z0-9][a-zA-Z0-9_.-] allowed)")
    driver = body.get("Driver") or "bridge"
    if driver != "bridge":
        raise BadRequest(f'network create: driver "{driver}" is not supported (pystack has bridge networks only)')
    if (body.get("Scope") or "local") != "local":
        raise BadRequest(f"network create: Scope {body['Scope']!r} is not supported (local only)")
    for flag_name in ("Ingress", "ConfigOnly"):
        if body.get(flag_name):
            raise BadRequest(f"network create: {flag_name} is not supported (no swarm)")
    if (body.get("ConfigFrom") or {}).get("Network"):
        raise BadRequest("network create: ConfigFrom is not supported")
    if body.get("EnableIPv4") is False:
        raise BadRequest("network create: EnableIPv4=false is not supported")
    ipam = body.get("IPAM") or {}
    if not isinstance(ipam, dict):
        raise BadRequest("network create: IPAM must be an object")
    if (ipam.get("Driver") or "default") != "default":
        raise BadRequest(f"network create: IPAM driver {ipam['Driver']!r} is not supported (default only)")
    for key in ("Labels", "Options"):
        value = body.get(key)
        if value is not None and (not isinstance(value, dict)
                                  or not all(isinstance(v, str) for v in value.values())):
            raise BadRequest(f"network create: {key} must map strings to strings")
    configs = ipam.get("Config") or []
    if not isinstance(configs, list) or not all(isinstance(c, dict) for c in configs):
        raise BadRequest("network create: IPAM.Config must be a list of objects")
    return body


async def create_network(request: web.Request) -> web.Response:
    engine = request.app["engine"]
    body = _check_create_body(await json_body(request))
    name = body["Name"]
    if name in PREDEFINED:
        return error_response(403, f"{name} is a pre-defined network and cannot be created")
    from pystack.networking.docker_json import network_spec_from_api
    net_id = secrets.token_hex(32)
    spec = network_spec_from_api({**body, "Driver": "bridge"}, net_id)
    lock = request.app["network_lock"]
    async with lock:  # name checks and creation, one at a time in this engine
        nm = engine.networks
        existing = await asyncio.to_thread(nm.list_networks)
        if any(n.name == name for n in existing):
            raise Conflict(f"network with name {name} already exists")
        record = await asyncio.to_thread(nm.create_network, spec)
        _times(engine).set(record.id, _now())
    engine.events.emit("network", "create", record.id, {"name": record.name, "type": "bridge"})
    return web.json_response({"Id": record.id, "Warning": ""}, status=201)


async def _remove(engine, doc: dict[str, Any]) -> None:
    await asyncio.to_thread(engine.networks.remove_network, doc["Id"])
    _times(engine).drop(doc["Id"])
    engine.events.emit("network", "destroy", doc["Id"], {"name": doc["Name"], "type": doc["Driver"]})


async def remove_network(request: web.Request) -> web.Response:
    engine = request.app["engine"]
    doc = await asyncio.to_thread(find_network, engine, request.match_info["id"])
    if doc["Name"] in PREDEFINED:
        return error_response(403, f"{doc['Name']} is a pre-defined network and cannot be removed")
    async with request.app["network_lock"]:
        try:
            await _remove(engine, doc)
        except Conflict as exc:
            raise Conflict(f"error while removing network: {exc}") from None
    return web.Response(status=204)


async def prune_networks(request: web.Request) -> web.Response:
    engine = request.app["engine"]
    filters = filters_of(request)
    for key in filters:
        if key not in ("label", "label!", "until"):
            raise BadRequest(f"invalid filter '{key}'")
    cutoff = None
    if filters.get("until"):
        from pystack.engine.event_routes import parse_time
        cutoff = parse_time(filters["until"][0])
    deleted = []
    async with request.app["network_lock"]:
        docs = await asyncio.to_thread(network_docs, engine)
        for d in docs:
            if d["Name"] in PREDEFINED or d["Containers"]:
                continue
            labels = d["Labels"] or {}
            if "label" in filters and not _label_match(filters["label"], labels):
                continue
            if "label!" in filters and any(_label_match([w], labels) for w in filters["label!"]):
                continue
            if cutoff is not None:
                from pystack.runtime.images.display import parse_time as parse_rfc
                if parse_rfc(d["Created"]).timestamp() * 1e9 >= cutoff:
                    continue
            try:
                await _remove(engine, d)
            except (Conflict, NotFound):
                continue  # a container joined it meanwhile, or it went away
            deleted.append(d["Name"])
    return web.json_response({"NetworksDeleted": deleted})


def _manager(engine):
    try:
        return engine.containers
    except ModuleNotFoundError:
        raise UserError("this engine cannot connect containers yet (no container manager)") from None


async def connect(request: web.Request) -> web.Response:
    engine = request.app["engine"]
    body = await json_body(request)
    if not isinstance(body, dict) or not body.get("Container"):
        raise BadRequest("network connect: Container is required")
    doc = await asyncio.to_thread(find_network, engine, request.match_info["id"])
    if doc["Name"] in VIRTUAL:
        raise BadRequest(f"container cannot be connected to the {doc['Name']} network: "
                         "choose it with network_mode when creating the container")
    endpoint = body.get("EndpointConfig") or {}
    if not isinstance(endpoint, dict):
        raise BadRequest("network connect: EndpointConfig must be an object")
    await _manager(engine).connect_network(body["Container"], doc["Id"], endpoint)
    return web.Response(status=200)


async def disconnect(request: web.Request) -> web.Response:
    engine = request.app["engine"]
    body = await json_body(request)
    if not isinstance(body, dict) or not body.get("Container"):
        raise BadRequest("network disconnect: Container is required")
    doc = await asyncio.to_thread(find_network, engine, request.match_info["id"])
    if doc["Name"] in VIRTUAL:
        raise BadRequest(f"container cannot be disconnected from the {doc['Name']} network")
    await _manager(engine).disconnect_network(body["Container"], doc["Id"], bool(body.get("Force")))
    return web.Response(status=200)


async def _on_startup(app: web.Application) -> None:
    app["network_lock"] = asyncio.Lock()


def setup(app: web.Application) -> None:
    app.on_startup.append(_on_startup)
    add_route(app, "GET", "/networks", list_networks)
    add_route(app, "GET", "/networks/", list_networks)
    add_route(app, "POST", "/networks/create", create_network)
    add_route(app, "POST", "/networks/prune", prune_networks)
    add_route(app, "GET", "/networks/{id}", inspect_network)
    add_route(app, "DELETE", "/networks/{id}", remove_network)
    add_route(app, "POST", "/networks/{id}/connect", connect)
    add_route(app, "POST", "/networks/{id}/disconnect", disconnect)
