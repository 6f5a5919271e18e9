"""``up``: bring the engine's actual state to the project's desired state.

Steps, as Docker Compose does them: orphans (warn, or remove with ``--remove-orphans``);
networks and volumes; images (pull per policy); a plan per service (plan.py); then one
pass in dependency order, each service in its own thread as soon as its dependencies
are done: *create* (scale down highest numbers first, recreate, create missing) while
waiting for each dependency's condition, then *start*. Docker Compose creates every
container before it starts the first; here a service starts as soon as it can, so
creates overlap other services' starts and health waits (``--no-start``: creates only).
Errors name the service or container that failed, never a dependent that merely
waited for it.
"""
from __future__ import annotations

import threading
TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs every command ~4 ms to import: annotations only
    from typing import Any

from pystack.compose import labels as L
from pystack.compose.client import EngineError
from pystack.compose.convert import build_spec, compose_labels, container_name, network_name
from pystack.compose.hash import service_hash
from pystack.compose.ordering import closure, run_ordered
from pystack.compose.plan import ServicePlan, make_plan, desired_scale
from pystack.compose.progress import Progress
from pystack.compose.state import Container, by_service, list_containers, project_graph
from pystack.compose.stopping import effective_timeout
from pystack.compose.waiting import DependencyError, wait_completed, wait_healthy
from pystack.errors import NotFound, UserError
from pystack.stack.fieldrecord import FieldRecord


class UpOptions(FieldRecord):
    """The flags of ``up`` / ``create`` that shape the plan."""

    _fields = ("services", "no_deps", "force_recreate", "no_recreate", "no_start",
               "remove_orphans", "renew_anon_volumes", "scale", "pull", "timeout", "dry_run")

    def __init__(self, services: list[str] | None = None, no_deps: bool = False,
                 force_recreate: bool = False, no_recreate: bool = False, no_start: bool = False,
                 remove_orphans: bool = False, renew_anon_volumes: bool = False,
                 scale: dict[str, int] | None = None, pull: str | None = None,
                 timeout: int | None = None, dry_run: bool = False) -> None:
        self.services = services if services is not None else []
        self.no_deps = no_deps
        self.force_recreate = force_recreate
        self.no_recreate = no_recreate
        self.no_start = no_start
        self.remove_orphans = remove_orphans
        self.renew_anon_volumes = renew_anon_volumes
        self.scale = scale if scale is not None else {}
        self.pull = pull
        self.timeout = timeout
        self.dry_run = dry_run


class DependencySkipped(Exception):
    """A service not started because a required dependency failed (not a root cause)."""


class Reconciler:
    """Drives one project through an engine client; reports to a Progress."""

    def __init__(self, client: Any, project: Any, progress: Progress, parallel: int = -1) -> None:
        self.client = client
        self.project = project
        self.progress = progress
        self.sem = threading.BoundedSemaphore(parallel if parallel and parallel > 0 else 64)
        self.ids: dict[str, str] = {}              # service -> first container id (service:x refs)
        self.recreated: set[str] = set()
        self.to_start: dict[str, list[tuple[str, str]]] = {}   # service -> [(name, id)]
        self.started: dict[str, list[tuple[str, str]]] = {}
        self._failed: set[str] = set()                  # services whose start failed
        self._root_errors: dict[str, BaseException] = {}  # the causes, by service

    # -- public -----------------------------------------------------------------------
    def selected(self, opts: UpOptions) -> list[str]:
        """Targets plus their dependencies (unless --no-deps), in the file's order."""
        self.project.check_services(opts.services)
        graph = project_graph(self.project)
        if not opts.services:
            chosen = set(self.project.services)
        elif opts.no_deps:
            chosen = set(opts.services)
        else:
            chosen = closure(opts.services, graph)
        return [s for s in self.project.services if s in chosen]

    def up(self, opts: UpOptions) -> list[tuple[str, str, str]]:
        """Create and start; returns (service, name, id) of every container of the selection."""
        services = self.selected(opts)
        actual = list_containers(self.client, self.project.name, oneoff=False)
        self._orphans(actual, opts)
        if not opts.dry_run:
            self.ensure_networks(services)
            self.ensure_volumes(services)
        images = self.ensure_images(services, opts.pull, dry_run=opts.dry_run)
        current = by_service(actual)
        plans = make_plan(self.project, services, current, images, opts)
        if opts.dry_run:
            self._describe_resources(services)
            for s in services:
                for line in plans[s].describe(self.project.name):
                    self.progress.event("Container", line[0], line[1])
            return []
        graph = project_graph(self.project)
        chosen = set(services)

        def converges(s: str) -> bool:
            return bool(plans[s].create or plans[s].recreate or plans[s].remove)

        if opts.no_start:
            errors = run_ordered(services, graph, lambda s: self._converge(s, plans[s], images[s], opts),
                                 quick=lambda s: not converges(s))
        else:
            # One pass: each service is started as soon as it is created and its
            # dependencies are started (and meet their conditions), instead of a start
            # pass behind a barrier after every create: creates overlap starts and
            # health waits (a health-gated chain creates its links while it waits).
            errors = run_ordered(services, graph, lambda s: self._converge_and_start(s, plans[s], images[s],
                                                                                      opts, chosen),
                                 quick=lambda s: not converges(s) and not plans[s].start
                                 and not plans[s].restart and not self._waits(s, chosen))
        self._raise_first(errors, services)
        return [(c.service, c.name, c.id) for c in list_containers(self.client, self.project.name)
                if c.service in chosen]

    # -- resources --------------------------------------------------------------------
    def _orphans(self, actual: list[Container], opts: UpOptions) -> None:
        known = set(self.project.services)
        orphans = [c for c in actual if c.service not in known]
        if not orphans:
            return
        if opts.remove_orphans:
            for c in orphans:
                if not opts.dry_run:
                    self.stop_container(c.id, c.name, opts.timeout)
                    self.remove_container(c.id, c.name)
                else:
                    self.progress.event("Container", c.name, "Remove")
        else:
            import os

            if not os.environ.get("COMPOSE_IGNORE_ORPHANS"):
                names = ", ".join(sorted(c.name for c in orphans))
                self.progress.warn(f"Found orphan containers ([{names}]) for this project. If you "
                                   "removed or renamed this service in your compose file, you can run "
                                   "this command with the --remove-orphans flag to clean it up.")

    def _describe_resources(self, services: list[str]) -> None:
        """--dry-run: the networks and volumes that ``up`` would create."""
        for key in self.used_networks(services):
            name = network_name(self.project.config, key)
            if not any(n.get("Name") == name for n in self.client.networks(names=[name])):
                self.progress.event("Network", name, "Create")
        for key, spec in self.project.volumes.items():
            name = (spec or {}).get("name") or f"{self.project.name}_{key}"
            try:
                self.client.volume_inspect(name)
            except NotFound:
                self.progress.event("Volume", name, "Create")

    def used_networks(self, services: list[str]) -> list[str]:
        keys: list[str] = []
        for s in services:
            svc = self.project.service(s)
            if svc.get("network_mode"):
                continue
            for k in (svc.get("networks") or {"default": None}):
                if k not in keys:
                    keys.append(k)
        return keys

    def ensure_networks(self, services: list[str]) -> None:
        cfg = self.project.config
        for key in self.used_networks(services):
            spec = self.project.networks.get(key) or {}
            name = network_name(cfg, key)
            existing = self.client.networks(names=[name])
            if any(n.get("Name") == name for n in existing):
                continue
            if spec.get("external"):
                raise NotFound(f"network {name} declared as external, but could not be found")
            ipam = spec.get("ipam") or {}
            body = {
                "Name": name, "CheckDuplicate": True, "Driver": spec.get("driver") or "bridge",
                "Internal": bool(spec.get("internal")), "Attachable": bool(spec.get("attachable")),
                "EnableIPv6": bool(spec.get("enable_ipv6")), "Options": spec.get("driver_opts") or {},
                "Labels": {**(spec.get("labels") or {}), L.PROJECT: self.project.name,
                           L.NETWORK: key, L.VERSION: L.COMPOSE_VERSION},
                "IPAM": {"Driver": ipam.get("driver") or "default",
                         "Config": [{k2: v for k2, v in {"Subnet": c.get("subnet"), "Gateway": c.get("gateway"),
                                                         "IPRange": c.get("ip_range")}.items() if v}
                                    for c in ipam.get("config") or []],
                         "Options": ipam.get("options") or {}},
            }
            self.progress.event("Network", name, "Creating")
            with self.sem:
                self.client.network_create(body)
            self.progress.event("Network", name, "Created")

    def ensure_volumes(self, services: list[str]) -> None:
        used: list[str] = []
        for s in services:
            for v in self.project.service(s).get("volumes") or []:
                if v.get("type") == "volume" and v.get("source") and v["source"] in self.project.volumes:
                    if v["source"] not in used:
                        used.append(v["source"])
        for key in used:
            spec = self.project.volumes.get(key) or {}
            name = spec.get("name") or f"{self.project.name}_{key}"
            try:
                self.client.volume_inspect(name)
                continue
            except NotFound:
                pass
            if spec.get("external"):
                raise NotFound(f"external volume {name!r} not found")
            self.progress.event("Volume", name, "Creating")
            self.client.volume_create({"Name": name, "Driver": spec.get("driver") or "local",
                                       "DriverOpts": spec.get("driver_opts") or {},
                                       "Labels": {**(spec.get("labels") or {}), L.PROJECT: self.project.name,
                                                  L.VOLUME: key, L.VERSION: L.COMPOSE_VERSION}})
            self.progress.event("Volume", name, "Created")

    def ensure_images(self, services: list[str], pull: str | None, dry_run: bool = False) -> dict[str, str]:
        """service -> image id, pulling per ``--pull`` or the service's ``pull_policy``."""
        out: dict[str, str] = {}
        cache: dict[str, str] = {}
        for s in services:
            svc = self.project.service(s)
            ref = svc.get("image")
            if not ref:
                if svc.get("build"):
                    raise UserError(f"service {s!r}: building images is not supported yet; give it an image")
                raise UserError(f"service {s!r} has neither an image nor a build context specified")
            if ref in cache:
                out[s] = cache[ref]
                continue
            policy = pull or svc.get("pull_policy") or "missing"
            image_id = None
            if policy not in ("always",):
                try:
                    image_id = self.client.image_inspect(ref)["Id"]
                except NotFound:
                    image_id = None
            if image_id is None or policy == "always":
                if policy == "never":
                    raise NotFound(f"service {s!r}: image {ref} not found and pull policy is never")
                if dry_run:
                    self.progress.event("Image", ref, "Pull")
                    out[s] = cache[ref] = ""
                    continue
                self.pull_image(ref, s)
                image_id = self.client.image_inspect(ref)["Id"]
            out[s] = cache[ref] = image_id
        return out

    def pull_image(self, ref: str, service: str) -> None:
        self.progress.event("Image", ref, "Pulling")
        try:
            for msg in self.client.pull(ref):
                if msg.get("error"):
                    raise UserError(f"service {service!r}: pull {ref}: {msg['error']}")
        except UserError as exc:
            self.progress.event("Image", ref, "Error", error=True)
            if str(exc).startswith("service "):
                raise
            raise UserError(f"service {service!r}: pull {ref}: {exc}") from None
        self.progress.event("Image", ref, "Pulled")

    # -- containers -------------------------------------------------------------------
    def create_container(self, service: str, number: int | None, image_id: str, *, name: str,
                         oneoff: bool = False, slug: str | None = None, use_aliases: bool = True,
                         publish: bool = True, overrides: dict | None = None,
                         inherit_from: str | None = None, final_name: str | None = None) -> str:
        svc = self.project.service(service)
        digest = service_hash(svc, self.ids)
        lbls = compose_labels(self.project, service, number, digest, image_id, svc, oneoff, slug)
        if overrides and overrides.get("Labels"):
            lbls.update(overrides.pop("Labels"))
        spec = build_spec(self.project, service, svc, name=final_name or name, labels=lbls,
                          containers=self.ids, image=svc["image"], use_aliases=use_aliases,
                          publish=publish, overrides=overrides)
        if inherit_from:
            self._inherit_anonymous_volumes(spec.body, inherit_from, svc)
        shown = final_name or name
        self.progress.event("Container", shown, "Creating")
        with self.sem:
            try:
                cid = self.client.create(name, spec.body)
            except EngineError as exc:
                self.progress.event("Container", shown, "Error", error=True)
                raise UserError(f"service {service!r}: {exc}") from None
            for net, ep in spec.extra_networks:
                self.client.network_connect(net, cid, ep)
            if spec.files:
                self.client.put_archive(cid, "/", _tar_files(spec.files))
        self.progress.event("Container", shown, "Created")
        return cid

    def _inherit_anonymous_volumes(self, body: dict, old_id: str, svc: dict) -> None:
        """Keep a recreated container's anonymous volumes (Compose does, unless -V)."""
        anon = {v["target"] for v in svc.get("volumes") or [] if v.get("type") == "volume" and not v.get("source")}
        if not anon:
            return
        try:
            old = self.client.inspect(old_id)
        except NotFound:
            return
        for m in old.get("Mounts") or []:
            if m.get("Type") == "volume" and m.get("Destination") in anon:
                for mount in body.setdefault("HostConfig", {}).setdefault("Mounts", []):
                    if mount.get("Target") == m["Destination"] and not mount.get("Source"):
                        mount["Source"] = m["Name"]

    def stop_container(self, cid: str, name: str, timeout: int | None, svc: dict | None = None) -> None:
        try:
            info = self.client.inspect(cid)
        except NotFound:
            return
        if not (info.get("State") or {}).get("Running"):
            return
        self.progress.event("Container", name, "Stopping")
        if svc and svc.get("pre_stop"):
            from pystack.compose.hooks import pre_stop

            pre_stop(self.client, cid, name, svc, self.progress)
        with self.sem:
            self.client.stop(cid, effective_timeout(info, timeout))
        self.progress.event("Container", name, "Stopped")

    def remove_container(self, cid: str, name: str, volumes: bool = False) -> None:
        self.progress.event("Container", name, "Removing")
        with self.sem:
            try:
                self.client.remove(cid, force=True, volumes=volumes)
            except NotFound:
                pass
        self.progress.event("Container", name, "Removed")

    def start_container(self, cid: str, name: str, svc: dict | None = None) -> None:
        self.progress.event("Container", name, "Starting")
        with self.sem:
            self.client.start(cid)
        if svc and svc.get("post_start"):
            from pystack.compose.hooks import post_start

            post_start(self.client, cid, name, svc, self.progress)
        self.progress.event("Container", name, "Started")

    # -- the two passes ---------------------------------------------------------------
    def _converge(self, service: str, plan: ServicePlan, image_id: str, opts: UpOptions) -> None:
        svc = self.project.service(service)
        for c in sorted(plan.remove, key=lambda c: -c.number):
            self.stop_container(c.id, c.name, opts.timeout, svc)
            self.remove_container(c.id, c.name)
        starts: list[tuple[str, str]] = []
        for c in plan.recreate:
            tmp = f"{c.id[:12]}_{c.name}"
            self.progress.event("Container", c.name, "Recreate")
            new = self.create_container(service, c.number, image_id, name=tmp, final_name=c.name,
                                        inherit_from=None if opts.renew_anon_volumes else c.id)
            self.stop_container(c.id, c.name, opts.timeout, svc)
            with self.sem:
                self.client.remove(c.id, force=True)
                self.client.rename(new, c.name)
            self.progress.event("Container", c.name, "Recreated")
            starts.append((c.name, new))
            self.recreated.add(service)
        for c in plan.keep:
            self.progress.event("Container", c.name, "Running")
        for c in plan.start:
            starts.append((c.name, c.id))
        for c in plan.restart:
            starts.append((c.name, c.id))
        names = [container_name(self.project.name, service, n, svc) for n in plan.create]
        created = _each_parallel(lambda nn: self.create_container(service, nn[0], image_id, name=nn[1]),
                                 list(zip(plan.create, names)))
        starts += list(zip(names, created))
        # the first container by number answers service:x references
        numbered = sorted(plan.keep + plan.start + plan.restart, key=lambda c: c.number)
        ids = [c.id for c in numbered] + [cid for _, cid in starts]
        if ids:
            self.ids[service] = ids[0]
        self.to_start[service] = starts

    def _converge_and_start(self, service: str, plan: ServicePlan, image_id: str, opts: UpOptions,
                            selection: set[str]) -> None:
        """Create (converge) a service, then start it; a failed create is a root cause
        that its dependents are skipped for, as a failed start is."""
        if self._waits(service, selection):
            # a dependency's condition is waited for while the containers are created
            import threading

            waited: list[BaseException] = []

            def wait() -> None:
                try:
                    self.wait_dependencies(service, self.project.service(service), selection)
                except BaseException as exc:  # noqa: BLE001 - re-raised below
                    waited.append(exc)

            waiter = threading.Thread(target=wait, daemon=True)
            waiter.start()
        else:
            waiter = None
        try:
            self._converge(service, plan, image_id, opts)
        except BaseException as exc:
            self._failed.add(service)
            self._root_errors.setdefault(service, exc)
            if waiter is not None:
                waiter.join()
            raise
        if waiter is not None:
            waiter.join()
            if waited:
                exc = waited[0]
                self._failed.add(service)
                if not isinstance(exc, DependencySkipped):
                    self._root_errors.setdefault(service, exc)
                raise exc
        self._start(service, plan, opts, selection, waited=waiter is not None)

    def _start(self, service: str, plan: ServicePlan, opts: UpOptions, selection: set[str],
               waited: bool = False) -> None:
        try:
            self._start_service(service, plan, opts, selection, waited)
        except DependencySkipped:
            self._failed.add(service)
            raise
        except BaseException as exc:
            self._failed.add(service)
            self._root_errors.setdefault(service, exc)
            raise

    def _start_service(self, service: str, plan: ServicePlan, opts: UpOptions, selection: set[str],
                       waited: bool = False) -> None:
        svc = self.project.service(service)
        if not waited:
            self.wait_dependencies(service, svc, selection)
        restart = {c.id for c in plan.restart}

        def start_one(item: tuple[str, str]) -> None:
            name, cid = item
            # a container kept running is restarted when a restart:true dependency was recreated
            if cid in restart:
                self.stop_container(cid, name, opts.timeout, svc)
            self.start_container(cid, name, svc)

        _each_parallel(start_one, self.to_start.get(service, []))  # a service's replicas at once
        self.started[service] = self.to_start.get(service, [])

    def _waits(self, service: str, selection: set[str]) -> bool:
        """Whether starting ``service`` waits on a dependency's condition (or may fail on one)."""
        for dep, cond in (self.project.service(service).get("depends_on") or {}).items():
            if dep in selection and ((cond.get("condition") or "service_started") != "service_started"
                                     or dep in self._failed):
                return True
        return False

    def wait_dependencies(self, service: str, svc: dict, selection: set[str]) -> None:
        """Block until each dependency in ``selection`` meets its depends_on condition."""
        for dep, cond in (svc.get("depends_on") or {}).items():
            required = cond.get("required", True)
            if dep not in selection:
                continue
            if dep in self._failed:
                if required:
                    raise DependencySkipped(dep)
                self.progress.warn(f"optional dependency {dep!r} failed: starting {service} anyway")
                continue
            try:
                self._wait_condition(dep, cond.get("condition") or "service_started")
            except DependencyError as exc:
                if required:
                    self._failed.add(dep)
                    self._root_errors.setdefault(dep, exc)
                    raise DependencySkipped(dep) from None
                self.progress.warn(f"optional dependency {dep!r}: {exc}")

    def _wait_condition(self, dep: str, condition: str) -> None:
        if condition not in ("service_healthy", "service_completed_successfully"):
            return  # service_started: ordering only, as in Compose (a dependency that
            # started and then exited does not stop its dependents)
        containers = [(c.name, c.id) for c in list_containers(self.client, self.project.name, services=[dep])]
        if desired_scale(self.project.service(dep), {}) == 0 and not containers:
            return
        for name, cid in containers:
            if condition == "service_healthy":
                self.progress.event("Container", name, "Waiting")
                wait_healthy(self.client, cid, name)
                self.progress.event("Container", name, "Healthy")
            else:
                self.progress.event("Container", name, "Waiting")
                wait_completed(self.client, cid, dep)
                self.progress.event("Container", name, "Exited")

    def _raise_first(self, errors: dict[str, BaseException], order: list[str]) -> None:
        for s, exc in errors.items():
            if not isinstance(exc, DependencySkipped):
                self._failed.add(s)
                self._root_errors.setdefault(s, exc)
        roots = self._root_errors
        if not errors and not roots:
            return
        for s in order:
            exc = roots.get(s)
            if exc is not None:
                if isinstance(exc, UserError):
                    raise exc
                raise UserError(f"service {s!r}: {exc}") from exc
        if errors:
            raise next(iter(errors.values()))


def _each_parallel(fn: Any, items: list) -> list:
    """``[fn(x) for x in items]`` with one thread per item; the first error is raised."""
    if len(items) <= 1:
        return [fn(x) for x in items]
    results: list = [None] * len(items)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            results[i] = fn(items[i])
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(items))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def _tar_files(files: list[tuple[str, bytes, int, int, int]]) -> bytes:
    """A tar of absolute-path files, for the archive API."""
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        # no directory entries: the engine creates missing parents (0755) and must not
        # change the mode of existing ones (/tmp)
        for path, data, mode, uid, gid in files:
            info = tarfile.TarInfo(path.strip("/"))
            info.size, info.mode, info.uid, info.gid = len(data), mode, uid, gid
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()
