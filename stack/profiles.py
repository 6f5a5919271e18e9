"""Profiles: which services a load keeps (compose-go ``WithProfiles``/``WithServicesEnabled``).

A service without ``profiles`` is always enabled; one with profiles only when one of them
is active (``--profile``, else ``COMPOSE_PROFILES``; ``*`` activates all). Naming a disabled
service on the command line activates its profiles; naming services keeps only them and
the services they depend on.
"""
from __future__ import annotations

from typing import Any, Iterable

from .errors import ComposeError


def _enabled(service: Any, profiles: list[str]) -> bool:
    own = service.get("profiles") if isinstance(service, dict) else None
    if not own:
        return True
    if not isinstance(own, list):
        own = [own]
    return "*" in profiles or any(p in own for p in profiles)


def apply_profiles(data: dict[str, Any], profiles: Iterable[str], names: Iterable[str] = ()) -> list[str]:
    """Filter ``data['services']`` in place; returns the active profiles."""
    services: dict[str, Any] = data.get("services") or {}
    active = [p for p in profiles if p]
    names = list(names)
    for name in names:
        if name not in services:
            raise ComposeError(f"no such service: {name}")
        if not _enabled(services[name], active):
            own = services[name].get("profiles") or []
            active.extend(own if isinstance(own, list) else [own])
    kept = {n: s for n, s in services.items() if _enabled(s, active)}
    if names:
        selected: dict[str, Any] = {}
        todo = list(names)
        while todo:
            name = todo.pop()
            if name in selected:
                continue
            svc = kept.get(name) or services.get(name)
            if svc is None:
                continue
            selected[name] = svc
            todo.extend((svc.get("depends_on") or {}).keys() if isinstance(svc, dict) else ())
        kept = {n: s for n, s in services.items() if n in selected}
    data["services"] = kept
    return active
