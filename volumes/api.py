"""The Docker Engine API's ``/volumes`` endpoints as plain functions over a VolumeStore.

For the engine's routes (and any other front): each function takes the decoded request
(query dict, JSON body) and returns the JSON-able response Docker returns, raising the
project's errors (NotFound -> 404, Conflict -> 409, UserError -> 400), so the HTTP layer
is a thin shim and docker-py / the docker CLI see Docker's shapes:

    GET    /volumes             list_volumes(store, query)       -> {"Volumes": [...], "Warnings": null}
    POST   /volumes/create      create_volume(store, body)       -> Volume (201)
    GET    /volumes/{name}      inspect_volume(store, name)      -> Volume
    DELETE /volumes/{name}      remove_volume(store, name, query) -> None (204)
    POST   /volumes/prune       prune_volumes(store, query)      -> {"VolumesDeleted": [...], "SpaceReclaimed": n}
"""
from __future__ import annotations

import json
from typing import Any, Mapping

from pystack.errors import UserError
from pystack.volumes.store import VolumeStore


def parse_filters(raw: str | Mapping[str, Any] | None) -> dict[str, list[str]]:
    """Docker's ``filters`` query parameter: JSON ``{"key": ["v", ...]}`` or the older
    ``{"key": {"v": true}}`` form."""
    if not raw:
        return {}
    try:
        data = json.loads(raw) if isinstance(raw, str) else dict(raw)
    except ValueError:
        raise UserError(f"invalid filters: {raw!r}") from None
    if not isinstance(data, dict):
        raise UserError(f"invalid filters: {raw!r}")
    out: dict[str, list[str]] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out[key] = [k for k, on in value.items() if on]
        elif isinstance(value, list):
            out[key] = [str(v) for v in value]
        else:
            out[key] = [str(value)]
    return out


def _truthy(value: Any) -> bool:
    return str(value).lower() in ("1", "true", "yes")


def list_volumes(store: VolumeStore, query: Mapping[str, Any] | None = None) -> dict[str, Any]:
    filters = parse_filters((query or {}).get("filters"))
    return {"Volumes": [r.to_api() for r in store.list(filters)], "Warnings": None}


def create_volume(store: VolumeStore, body: Mapping[str, Any] | None) -> dict[str, Any]:
    body = dict(body or {})  # unknown fields are ignored, as dockerd's JSON decoding does
    if body.get("ClusterVolumeSpec"):
        raise UserError("cluster volumes need Swarm; pystack has none")
    return store.create(body.get("Name") or None, body.get("Driver") or "local",
                        body.get("DriverOpts") or {}, body.get("Labels") or {}).to_api()


def inspect_volume(store: VolumeStore, name: str) -> dict[str, Any]:
    return store.get(name).to_api()


def remove_volume(store: VolumeStore, name: str, query: Mapping[str, Any] | None = None) -> None:
    store.remove(name, force=_truthy((query or {}).get("force", "")))


def prune_volumes(store: VolumeStore, query: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Docker 23+ (API 1.42): anonymous unused volumes, or every unused one with the ``all=true``
    filter (dockerd 20.10 removes every unused volume)."""
    filters = parse_filters((query or {}).get("filters"))
    all_ = any(_truthy(v) for v in filters.pop("all", []))
    removed, reclaimed = store.prune(all=all_, filters=filters)
    return {"VolumesDeleted": removed, "SpaceReclaimed": reclaimed}
