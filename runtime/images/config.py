"""Registry settings: insecure registries and mirrors, like dockerd's daemon.json.

Read from ``$PYSTACK_REGISTRIES`` (a JSON file), else ``<state_root>/registries.json``,
else ``/etc/pystack/registries.json``::

    {"insecure-registries": ["myreg:5000"],
     "registry-mirrors": ["https://mirror.example"],          # Docker Hub mirrors
     "mirrors": {"ghcr.io": ["http://127.0.0.1:5001"]}}        # per registry

Loopback registries (localhost, 127.0.0.0/8, ::1) are always allowed plain HTTP, as in
Docker. ``PYSTACK_INSECURE_REGISTRIES`` / ``PYSTACK_REGISTRY_MIRRORS`` (comma separated)
add to the file.
"""
from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from pystack.errors import UserError
from pystack.paths import state_root

from .reference import DEFAULT_REGISTRY


@dataclass
class RegistryConfig:
    insecure: list[str] = field(default_factory=list)
    mirrors: dict[str, list[str]] = field(default_factory=dict)

    def is_insecure(self, host: str) -> bool:
        """Plain HTTP allowed: loopback (as Docker), or listed (``host[:port]`` or ``host``)."""
        name = _hostname(host)
        if name == "localhost":
            return True
        try:
            if ipaddress.ip_address(name).is_loopback:
                return True
        except ValueError:
            pass
        return host in self.insecure or name in self.insecure

    def mirrors_for(self, registry: str) -> list[str]:
        return list(self.mirrors.get(registry, []))


def _hostname(host: str) -> str:
    """``[::1]:5000`` -> ``::1``; ``127.0.0.1:5000`` -> ``127.0.0.1``; ``name`` -> ``name``."""
    if host.startswith("["):
        return host[1:host.index("]")] if "]" in host else host
    if host.count(":") == 1:
        return host.split(":", 1)[0]
    return host


def load_config() -> RegistryConfig:
    candidates = [os.environ.get("PYSTACK_REGISTRIES"), str(state_root() / "registries.json"),
                  "/etc/pystack/registries.json"]
    data: dict = {}
    for c in candidates:
        if c and Path(c).is_file():
            try:
                data = json.loads(Path(c).read_text())
            except ValueError as exc:
                raise UserError(f"{c}: invalid JSON: {exc}") from None
            break
    insecure = list(data.get("insecure-registries", []))
    mirrors = {k: list(v) for k, v in (data.get("mirrors") or {}).items()}
    hub = list(data.get("registry-mirrors", []))
    insecure += [x for x in os.environ.get("PYSTACK_INSECURE_REGISTRIES", "").split(",") if x]
    hub += [x for x in os.environ.get("PYSTACK_REGISTRY_MIRRORS", "").split(",") if x]
    if hub:
        mirrors[DEFAULT_REGISTRY] = hub + mirrors.get(DEFAULT_REGISTRY, [])
    return RegistryConfig(insecure, mirrors)
