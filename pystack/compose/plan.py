"""The plan per service: which containers to keep, start, recreate, restart, create, remove.

Compose's rules (reconcile.go ``mustRecreate``): ``--no-recreate`` never recreates,
``--force-recreate`` always does (for the targeted services); otherwise a container is
recreated when its config hash or image differs, or when a namespace parent
(``network_mode``/``ipc``/``pid: service:x``, ``volumes_from``) is (re)created. Scale
down removes the highest numbers first. Dependents that declared ``restart: true`` on a
recreated service are restarted. ``--dry-run`` prints this plan and changes nothing.
"""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs every command ~4 ms to import: annotations only
    from typing import Any

from pystack.compose.hash import REF_KEYS, service_hash
from pystack.compose.state import Container
from pystack.errors import UserError
from pystack.stack.fieldrecord import FieldRecord


class ServicePlan(FieldRecord):
    _fields = ("service", "keep", "start", "recreate", "restart", "create", "remove")

    def __init__(self, service: str, keep: list[Container] | None = None,
                 start: list[Container] | None = None, recreate: list[Container] | None = None,
                 restart: list[Container] | None = None, create: list[int] | None = None,
                 remove: list[Container] | None = None) -> None:
        self.service = service
        self.keep = keep if keep is not None else []
        self.start = start if start is not None else []
        self.recreate = recreate if recreate is not None else []
        self.restart = restart if restart is not None else []
        self.create = create if create is not None else []
        self.remove = remove if remove is not None else []


    def describe(self, project: str) -> list[tuple[str, str]]:
        """(container name, action) lines for ``--dry-run``."""
        out = [(c.name, "Remove") for c in sorted(self.remove, key=lambda c: -c.number)]
        out += [(c.name, "Recreate") for c in self.recreate]
        out += [(c.name, "Restart") for c in self.restart]
        out += [(c.name, "Start") for c in self.start]
        out += [(c.name, "Running") for c in self.keep]
        out += [(f"{project}-{self.service}-{n}", "Create") for n in self.create]
        return out

    @property
    def changes(self) -> bool:
        return bool(self.start or self.recreate or self.restart or self.create or self.remove)


def desired_scale(svc: dict, overrides: dict[str, int], name: str | None = None) -> int:
    """``--scale`` wins, then ``scale``, then ``deploy.replicas``, else 1."""
    if name is not None and name in overrides:
        return overrides[name]
    if svc.get("scale") is not None:
        return int(svc["scale"])
    replicas = (svc.get("deploy") or {}).get("replicas")
    return int(replicas) if replicas is not None else 1


def parents(svc: dict) -> set[str]:
    """Services whose container this one shares a namespace or volumes with."""
    out = set()
    for key in REF_KEYS:
        v = svc.get(key)
        if isinstance(v, str) and v.startswith("service:"):
            out.add(v.split(":", 1)[1])
    for ref in svc.get("volumes_from") or []:
        name = ref.split(":", 1)[0]
        if name != "container":
            out.add(name)
    return out


def topo_order(services: list[str], graph: dict[str, set[str]]) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()

    def visit(s: str) -> None:
        if s in seen:
            return
        seen.add(s)
        for d in sorted(graph.get(s, ())):
            if d in services:
                visit(d)
        out.append(s)

    for s in services:
        visit(s)
    return out


def make_plan(project: Any, services: list[str], current: dict[str, list[Container]],
              images: dict[str, str], opts: Any) -> dict[str, ServicePlan]:
    graph = {n: set((s.get("depends_on") or {}).keys()) for n, s in project.services.items()}
    ids = {s: cs[0].id for s, cs in current.items() if cs}
    targets = set(opts.services) if opts.services else set(services)
    plans: dict[str, ServicePlan] = {}
    changed: set[str] = set()   # services whose first container id will change
    for name in topo_order(services, graph):
        svc = project.service(name)
        scale = desired_scale(svc, opts.scale, name)
        if scale > 1 and svc.get("container_name"):
            raise UserError(f"service {name!r}: container_name {svc['container_name']!r} cannot be "
                            f"used with scale {scale}")
        plan = ServicePlan(name)
        existing = sorted(current.get(name, []), key=lambda c: c.number)
        kept, plan.remove = existing[:scale], existing[scale:]
        digest = service_hash(svc, ids)
        parent_changed = bool(parents(svc) & changed)
        for c in kept:
            must = False
            if opts.no_recreate:
                must = False
            elif opts.force_recreate and name in targets:
                must = True
            else:
                must = (c.config_hash != digest or (images.get(name) and c.image_label != images[name])
                        or parent_changed)
            if must:
                plan.recreate.append(c)
            elif c.state in ("running",):
                plan.keep.append(c)
            elif c.state == "paused":
                plan.keep.append(c)
            else:
                plan.start.append(c)
        top = max((c.number for c in kept), default=0)
        plan.create = list(range(top + 1, top + 1 + max(0, scale - len(kept))))
        if plan.recreate or (plan.create and not kept):
            changed.add(name)
        plans[name] = plan
    # dependents with restart: true on a recreated dependency restart their kept containers
    for name in services:
        deps = project.service(name).get("depends_on") or {}
        if any(cfg.get("restart") and d in changed and d in plans for d, cfg in deps.items()):
            plan = plans[name]
            plan.restart, plan.keep = [c for c in plan.keep if c.state == "running"], \
                [c for c in plan.keep if c.state != "running"]
    return plans
