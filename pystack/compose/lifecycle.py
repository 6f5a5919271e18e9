"""Stop, start, restart, kill, remove and ``down``, in (reverse) dependency order.

All of it works from labels: with the Compose file the dependency graph comes from the
project, without it from the containers' ``depends_on`` labels, so ``pystack -p x down``
cleans up a project whose file is gone.
"""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs every command ~4 ms to import: annotations only
    from typing import Any

from pystack.compose import labels as L
from pystack.compose.convert import network_name
from pystack.compose.ordering import run_ordered
from pystack.compose.progress import Progress
from pystack.compose.state import Container, by_service, label_graph, list_containers, project_graph
from pystack.compose.stopping import effective_timeout
from pystack.errors import NotFound, UserError


class Lifecycle:
    """Container operations over a project's labelled containers."""

    def __init__(self, client: Any, name: str, project: Any | None, progress: Progress,
                 parallel: int = -1) -> None:
        import threading

        self.client = client
        self.name = name
        self.project = project
        self.progress = progress
        self.sem = threading.BoundedSemaphore(parallel if parallel and parallel > 0 else 64)

    def containers(self, services: list[str] | tuple[str, ...] = (), all: bool = True,
                   oneoff: bool | None = False) -> list[Container]:
        if self.project is not None:
            self.project.check_services(services)
        return list_containers(self.client, self.name, all=all, oneoff=oneoff, services=services)

    def _svc(self, c: Container) -> dict | None:
        """The service's config, for its hooks (None without the Compose file)."""
        return self.project.services.get(c.service) if self.project is not None else None

    def _pre_stop(self, c: Container) -> None:
        svc = self._svc(c)
        if svc and svc.get("pre_stop"):
            from pystack.compose.hooks import pre_stop

            pre_stop(self.client, c.id, c.name, svc, self.progress)

    def _post_start(self, c: Container) -> None:
        svc = self._svc(c)
        if svc and svc.get("post_start"):
            from pystack.compose.hooks import post_start

            post_start(self.client, c.id, c.name, svc, self.progress)

    def graph(self, containers: list[Container]) -> dict[str, set[str]]:
        graph = label_graph(containers)
        if self.project is not None:
            for s, deps in project_graph(self.project).items():
                graph.setdefault(s, set()).update(deps)
        return graph

    def _each(self, containers: list[Container], fn: Any, reverse: bool) -> None:
        groups = by_service(containers)

        def per_service(s: str) -> None:
            import threading

            errors: list[BaseException] = []

            def one(c: Container) -> None:
                try:
                    with self.sem:
                        fn(c)
                except BaseException as exc:  # noqa: BLE001
                    errors.append(exc)

            threads = [threading.Thread(target=one, args=(c,)) for c in groups[s]]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            if errors:
                raise errors[0]

        errors = run_ordered(list(groups), self.graph(containers), per_service, reverse=reverse)
        if errors:
            raise next(iter(errors.values()))

    # -- operations -------------------------------------------------------------------
    def stop(self, containers: list[Container], timeout: int | None) -> None:
        def stop_one(c: Container) -> None:
            try:
                info = self.client.inspect(c.id)
            except NotFound:
                return
            if not (info.get("State") or {}).get("Running"):
                return
            self.progress.event("Container", c.name, "Stopping")
            self._pre_stop(c)
            self.client.stop(c.id, effective_timeout(info, timeout))
            self.progress.event("Container", c.name, "Stopped")
        self._each(containers, stop_one, reverse=True)

    def start(self, containers: list[Container]) -> None:
        def start_one(c: Container) -> None:
            if c.state == "running":
                return
            self.progress.event("Container", c.name, "Starting")
            self.client.start(c.id)
            self._post_start(c)
            self.progress.event("Container", c.name, "Started")
        self._each(containers, start_one, reverse=False)

    def restart(self, containers: list[Container], timeout: int | None) -> None:
        def restart_one(c: Container) -> None:
            self.progress.event("Container", c.name, "Restarting")
            info = self.client.inspect(c.id)
            if (info.get("State") or {}).get("Running"):
                self._pre_stop(c)
            self.client.restart(c.id, effective_timeout(info, timeout))
            self._post_start(c)
            self.progress.event("Container", c.name, "Started")
        self._each(containers, restart_one, reverse=False)

    def kill(self, containers: list[Container], signal: str) -> None:
        running = [c for c in containers if c.running]
        if not running:
            raise UserError("no container to kill")
        def kill_one(c: Container) -> None:
            self.progress.event("Container", c.name, "Killing")
            self.client.kill(c.id, signal)
            self.progress.event("Container", c.name, "Killed")
        self._each(running, kill_one, reverse=True)

    def remove(self, containers: list[Container], volumes: bool = False) -> None:
        def rm_one(c: Container) -> None:
            self.progress.event("Container", c.name, "Removing")
            try:
                self.client.remove(c.id, force=True, volumes=volumes)
            except NotFound:
                pass
            self.progress.event("Container", c.name, "Removed")
        self._each(containers, rm_one, reverse=True)

    def pause(self, containers: list[Container], unpause: bool = False) -> None:
        def one(c: Container) -> None:
            if unpause:
                self.client.unpause(c.id)
                self.progress.event("Container", c.name, "Unpaused")
            else:
                self.client.pause(c.id)
                self.progress.event("Container", c.name, "Paused")
        self._each(containers, one, reverse=unpause is False)

    def down(self, *, remove_orphans: bool = False, volumes: bool = False, rmi: str | None = None,
             timeout: int | None = None) -> None:
        """Stop and remove the project's containers, then its networks (and volumes with -v)."""
        everything = list_containers(self.client, self.name, oneoff=None)
        known = set(self.project.services) if self.project is not None else None
        targets = [c for c in everything
                   if known is None or c.service in known or remove_orphans]
        left = [c for c in everything if c not in targets]
        if left:
            names = ", ".join(sorted(c.name for c in left))
            self.progress.warn(f"Found orphan containers ([{names}]) for this project. If you removed or "
                               "renamed this service in your compose file, you can run this command "
                               "with the --remove-orphans flag to clean it up.")
        images = {c.raw.get("Image") for c in targets}

        def stop_and_remove(c: Container) -> None:
            try:
                info = self.client.inspect(c.id)
            except NotFound:
                return
            if (info.get("State") or {}).get("Running"):
                self.progress.event("Container", c.name, "Stopping")
                self._pre_stop(c)
                if effective_timeout(info, timeout) == 0 and not (info.get("State") or {}).get("Paused"):
                    # its stop signal could not reach PID 1 anyway: the forced removal's
                    # SIGKILL is what stop would send, one engine round trip sooner
                    self.client.remove(c.id, force=True, volumes=volumes)
                    self.progress.event("Container", c.name, "Stopped")
                    self.progress.event("Container", c.name, "Removed")
                    return
                self.client.stop(c.id, effective_timeout(info, timeout))
                self.progress.event("Container", c.name, "Stopped")
            self.progress.event("Container", c.name, "Removing")
            try:
                self.client.remove(c.id, force=True, volumes=volumes)
            except NotFound:
                pass
            self.progress.event("Container", c.name, "Removed")

        self._each(targets, stop_and_remove, reverse=True)
        self._remove_networks()
        if volumes:
            self._remove_volumes()
        if rmi:
            self._remove_images(rmi, images)

    def _remove_networks(self) -> None:
        nets = self.client.networks(labels=[L.project_filter(self.name)])
        allowed = None
        if self.project is not None:
            allowed = {network_name(self.project.config, k) for k, spec in self.project.networks.items()
                       if not (spec or {}).get("external")}
        for n in nets:
            if allowed is not None and n["Name"] not in allowed:
                continue
            self.progress.event("Network", n["Name"], "Removing")
            self._remove_network(n["Id"])
            self.progress.event("Network", n["Name"], "Removed")

    def _remove_network(self, net_id: str) -> None:
        """Remove a network whose containers were just removed.

        dockerd (20.10) now and then still holds an endpoint of a container it has just
        removed (seen after forced removals of running containers in parallel: "network
        ... has active endpoints", and the endpoint never goes). Then, after a short wait,
        endpoints whose container no longer exists are force-disconnected (the fix
        ``docker network disconnect -f`` is for) and the removal is tried again; an
        endpoint of a container that still exists keeps the error, as with Compose.
        """
        import time

        for attempt in range(12):
            try:
                self.client.network_remove(net_id)
                return
            except NotFound:
                return
            except UserError as exc:  # 403 on dockerd, 409 on pystackd
                if "active endpoints" not in str(exc) or attempt == 11:
                    raise
            time.sleep(0.1 if attempt < 5 else 0.25)
            if attempt >= 2:
                self._drop_stale_endpoints(net_id)

    def _drop_stale_endpoints(self, net_id: str) -> None:
        try:
            info = self.client.network_inspect(net_id)
        except NotFound:
            return
        for cid in (info.get("Containers") or {}):
            try:
                self.client.inspect(cid)
                continue  # a live container: its endpoint is real
            except NotFound:
                pass
            try:
                self.client.network_disconnect(net_id, cid, force=True)
            except (NotFound, UserError):
                pass

    def _remove_volumes(self) -> None:
        vols = self.client.volumes(labels=[L.project_filter(self.name)])
        allowed = None
        if self.project is not None:
            allowed = {(spec or {}).get("name") or f"{self.name}_{k}"
                       for k, spec in self.project.volumes.items() if not (spec or {}).get("external")}
        for v in vols:
            if allowed is not None and v["Name"] not in allowed:
                continue
            self.progress.event("Volume", v["Name"], "Removing")
            try:
                self.client.volume_remove(v["Name"])
            except NotFound:
                pass
            self.progress.event("Volume", v["Name"], "Removed")

    def _remove_images(self, rmi: str, images: set[str | None]) -> None:
        if rmi not in ("all", "local"):
            raise UserError(f"--rmi: invalid value {rmi!r}, expected local or all")
        refs = {i for i in images if i}
        if self.project is not None:
            refs |= {svc.get("image") for svc in self.project.services.values() if svc.get("image")}
        for ref in sorted(r for r in refs if r):
            if rmi == "local" and self.project is not None and any(
                    svc.get("image") == ref and not svc.get("build") for svc in self.project.services.values()):
                continue  # local: only images built for the project (no custom tag)
            self.progress.event("Image", ref, "Removing")
            try:
                self.client.image_remove(ref)
            except (NotFound, UserError) as exc:
                self.progress.warn(f"image {ref}: {exc}")
                continue
            self.progress.event("Image", ref, "Removed")
