"""Profiles: which services a load keeps (compose-go ``WithProfiles``/``WithServicesEnabled``).

A service without ``profiles`` is always enabled; one with profiles only when one of them
is active (``--profile``, else ``COMPOSE_PROFILES``; ``*`` activates all). Naming a disabled
service on the command line activates its profiles (not its dependencies': a required one
still disabled is "no such service", an optional one is dropped); naming services keeps
only them and the enabled services they depend on.
"""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs every command ~4 ms to import: annotations only
    from typing import Any, Iterable

from .errors import ComposeError


def _enabled(service: Any, profiles: list[str]) -> bool:
    own = service.get("profiles") if isinstance(service, dict) else None
    if not own:
        return True
    if not isinstance(own, list):
        own = [own]
    return "*" in profiles or any(p in own for p in profiles)


def _dependency_path(name: str, svc: dict[str, Any], dep: str) -> tuple:
    """Where the dependency ``dep`` is most likely written (normalization makes
    dependencies of links, ``volumes_from`` and ``service:`` references)."""
    at = ("services", name)
    for i, link in enumerate(svc.get("links") or ()):
        if str(link).split(":", 1)[0] == dep:
            return at + ("links", i)
    for i, source in enumerate(svc.get("volumes_from") or ()):
        if str(source).split(":", 1)[0] == dep:
            return at + ("volumes_from", i)
    for key in ("network_mode", "ipc", "pid", "uts", "cgroup"):
        if svc.get(key) == f"service:{dep}":
            return at + (key,)
    return at + ("depends_on", dep)


def check_dependencies(services: dict[str, Any], enabled: dict[str, Any]) -> None:
    """compose-go's consistency check of dependencies, on the services the profiles
    enable (before services named on the command line are enabled and selected): each
    must be enabled, or be ``required: false`` and defined (disabled by a profile)."""
    for name, svc in enabled.items():
        depends = svc.get("depends_on") if isinstance(svc, dict) else None
        for dep, how in (depends.items() if isinstance(depends, dict) else ()):
            if dep in enabled:
                continue
            if dep in services and isinstance(how, dict) and how.get("required") is False:
                continue
            raise ComposeError(f'service "{name}" depends on undefined service "{dep}"',
                               path=_dependency_path(name, svc, dep))


def apply_profiles(data: dict[str, Any], profiles: Iterable[str], names: Iterable[str] = (),
                   check: bool = False) -> list[str]:
    """Filter ``data['services']`` in place; returns the active profiles. ``check``:
    the dependencies of the services the profiles enable are checked first."""
    services: dict[str, Any] = data.get("services") or {}
    active = [p for p in profiles if p]
    if check:
        check_dependencies(services, {n: s for n, s in services.items() if _enabled(s, active)})
    names = list(names)
    enabled_by_name = set()
    for name in names:
        if name not in services:
            raise ComposeError(f"no such service: {name}")
        if not _enabled(services[name], active):
            enabled_by_name.add(name)
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
            depends = (svc.get("depends_on") or {}) if isinstance(svc, dict) else {}
            for dep, how in (list(depends.items()) if isinstance(depends, dict) else ()):
                if dep in kept:
                    todo.append(dep)
                elif dep not in services:
                    continue  # undefined: the consistency check says so
                elif isinstance(how, dict) and how.get("required") is False:
                    # an optional dependency left out: gone from the selection's model
                    svc = selected[name] = {**svc, "depends_on": {
                        k: v for k, v in svc["depends_on"].items() if k != dep}}
                    if not svc["depends_on"]:
                        del svc["depends_on"]
                elif name not in enabled_by_name:
                    continue  # the consistency check says it is undefined
                else:
                    # Compose enables a disabled service named on the command line, not
                    # its dependencies: a required one left disabled is an error
                    raise ComposeError(f"no such service: {dep}",
                                       path=("services", name, "depends_on", dep))
        kept = {n: selected[n] for n in services if n in selected}
    data["services"] = kept
    return active
