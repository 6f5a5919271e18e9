"""The config hash that decides whether ``up`` recreates a container.

Like Docker Compose's ``ServiceHash``: a sha256 over the service's canonical config with
the keys that do not change the container cleared (``build``, ``pull_policy``, ``scale``,
``deploy.replicas``, ``depends_on``, ``profiles``), and with references to other services
(``network_mode: service:x``, ``ipc``, ``pid``, ``volumes_from``) resolved to the container
ids they point at, so that recreating a namespace parent recreates its children.

With ``pystack.stack.hash`` (Go's field order, byte for byte) the value equals Docker
Compose's; the fallback below (sorted-key JSON) is only for a partial install.
"""
from __future__ import annotations

import json
TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs every command ~4 ms to import: annotations only
    from typing import Any

IGNORED = ("build", "pull_policy", "scale", "depends_on", "profiles")
REF_KEYS = ("network_mode", "ipc", "pid", "cgroup", "uts")


def resolve_refs(svc: dict[str, Any], containers: dict[str, str]) -> dict[str, Any]:
    """A copy of ``svc`` with ``service:x`` references replaced by ``container:<id>``."""
    out = dict(svc)
    for key in REF_KEYS:
        value = out.get(key)
        if isinstance(value, str) and value.startswith("service:"):
            target = value.split(":", 1)[1]
            if target in containers:
                out[key] = "container:" + containers[target]
    if out.get("volumes_from"):
        resolved = []
        for ref in out["volumes_from"]:
            name, _, mode = ref.partition(":")
            if name.startswith("container:"):
                resolved.append(ref)
            elif name in containers:
                resolved.append("container:" + containers[name] + (":" + mode if mode else ""))
            else:
                resolved.append(ref)
        out["volumes_from"] = resolved
    return out


def service_hash(svc: dict[str, Any], containers: dict[str, str] | None = None) -> str:
    """sha256 hex of the service's container-relevant config.

    Uses the stack model's byte-exact copy of Compose's hash when it is installed, so a
    project brought up by Docker Compose is not recreated by pystack (and vice versa).
    """
    data = resolve_refs(svc, containers or {})
    try:
        from pystack.stack.hash import service_hash as compose_hash
    except ImportError:
        compose_hash = None
    if compose_hash is not None:
        return compose_hash(data)
    import copy
    import hashlib

    for key in IGNORED:
        data.pop(key, None)
    if isinstance(data.get("deploy"), dict) and "replicas" in data["deploy"]:
        data["deploy"] = copy.deepcopy(data["deploy"])
        data["deploy"].pop("replicas", None)
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()
