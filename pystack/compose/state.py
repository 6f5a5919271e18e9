"""The actual state: a project's containers, networks and volumes, found by their labels.

Never a private list: whatever the engine reports with ``com.docker.compose.project=<p>``
is the project, so ``down`` works after a crash, from another shell, or without the file.
"""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs every command ~4 ms to import: annotations only
    from typing import Any

from pystack.compose import labels as L


class Container:
    """A container summary (``GET /containers/json`` item) with Compose's label accessors."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw

    def __repr__(self) -> str:
        return f"Container(raw={self.raw!r})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self.raw == other.raw  # type: ignore[attr-defined]

    @property
    def id(self) -> str:
        return self.raw["Id"]

    @property
    def labels(self) -> dict[str, str]:
        return self.raw.get("Labels") or {}

    @property
    def name(self) -> str:
        names = self.raw.get("Names") or [""]
        return names[0].lstrip("/")

    @property
    def service(self) -> str:
        return self.labels.get(L.SERVICE, "")

    @property
    def number(self) -> int:
        try:
            return int(self.labels.get(L.NUMBER, "0"))
        except ValueError:
            return 0

    @property
    def oneoff(self) -> bool:
        return self.labels.get(L.ONEOFF) == "True"

    @property
    def state(self) -> str:
        return self.raw.get("State") or ""

    @property
    def running(self) -> bool:
        return self.state in ("running", "restarting", "paused")

    @property
    def config_hash(self) -> str:
        return self.labels.get(L.CONFIG_HASH, "")

    @property
    def image_label(self) -> str:
        return self.labels.get(L.IMAGE, "")

    @property
    def depends_on(self) -> set[str]:
        """Service names from the ``depends_on`` label (``svc:condition:restart,...``)."""
        value = self.labels.get(L.DEPENDS_ON, "")
        return {part.split(":", 1)[0] for part in value.split(",") if part}

    @property
    def short_name(self) -> str:
        """``web-1`` (or the one-off's name without the project): the log prefix Compose prints."""
        project = self.labels.get(L.PROJECT, "")
        name = self.name
        if project and name.startswith(project + "-"):
            return name[len(project) + 1:]
        return name


def list_containers(client: Any, project: str, *, all: bool = True, oneoff: bool | None = False,
                    services: list[str] | tuple[str, ...] = ()) -> list[Container]:
    """The project's containers (sorted by service, then number); one-offs per ``oneoff``."""
    label_filters = [L.project_filter(project)]
    if oneoff is not None:
        label_filters.append(f"{L.ONEOFF}={'True' if oneoff else 'False'}")
    if len(services) == 1:
        label_filters.append(L.service_filter(services[0]))
    raw = client.containers(all=all, labels=label_filters)
    out = [Container(c) for c in raw]
    if services:
        out = [c for c in out if c.service in services]
    return sorted(out, key=lambda c: (c.service, c.oneoff, c.number, c.name))


def by_service(containers: list[Container]) -> dict[str, list[Container]]:
    out: dict[str, list[Container]] = {}
    for c in containers:
        out.setdefault(c.service, []).append(c)
    return out


def label_graph(containers: list[Container]) -> dict[str, set[str]]:
    """The dependency graph as the containers' ``depends_on`` labels record it."""
    graph: dict[str, set[str]] = {}
    for c in containers:
        graph.setdefault(c.service, set()).update(c.depends_on)
    return graph


def project_graph(project: Any) -> dict[str, set[str]]:
    """The dependency graph of the project's services (explicit and implicit depends_on)."""
    return {name: set((svc.get("depends_on") or {}).keys()) for name, svc in project.services.items()}
