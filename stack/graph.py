"""The dependency graph of a project's services: what starts before what.

Edges point from a service to what it needs (``web -> db``), collected from
``depends_on`` (with ``condition``, ``required`` and ``restart`` as edge attributes),
``links``, ``network_mode``/``ipc``/``pid``/``uts``/``cgroup: service:x`` and
``volumes_from``, as compose-go does. The edge extraction and cycle search are plain
Python so that ``pystack config`` can reject a cycle without importing networkx
(~0.3 s); the DiGraph helpers import it when the reconciler asks for a graph.
"""
from __future__ import annotations

from collections.abc import Mapping
TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs every command ~4 ms to import: annotations only
    from typing import Any, Iterable

from .errors import ComposeError

if TYPE_CHECKING:  # pragma: no cover
    import networkx as nx

__all__ = ["dependency_edges", "find_cycle", "build_graph", "start_levels", "start_order",
           "stop_levels", "stop_order", "subgraph", "dependents_of"]

Edge = tuple[str, str, "dict[str, Any]"]

# implicit dependencies get what compose-go's normalize gives them
_IMPLICIT = {"condition": "service_started", "required": True, "restart": True}
_NAMESPACE_KEYS = ("network_mode", "ipc", "pid", "uts", "cgroup")


def _services(project: Any) -> Mapping[str, Any]:
    """Services as dicts, from a config dict or a model.Project."""
    if isinstance(project, Mapping):
        return project.get("services") or {}
    to_dict = getattr(project, "to_config_dict", None)
    if to_dict is not None:
        return to_dict().get("services") or {}
    raise TypeError(f"not a project: {type(project).__name__}")


def dependency_edges(project: Any) -> list[Edge]:
    """Every (service, dependency, attributes) edge, ``depends_on`` entries first.

    An implicit edge (links, ``service:`` namespaces, ``volumes_from``) that duplicates
    a ``depends_on`` entry is dropped: the explicit one carries the user's condition.
    """
    edges: list[Edge] = []
    for name, svc in _services(project).items():
        if not isinstance(svc, Mapping):
            continue
        seen: set[str] = set()
        deps = svc.get("depends_on") or {}
        if isinstance(deps, list):  # short syntax (raw, unnormalized input)
            deps = {d: {} for d in deps}
        for dep, attrs in deps.items() if isinstance(deps, Mapping) else ():
            attrs = attrs if isinstance(attrs, Mapping) else {}
            edges.append((name, str(dep), {
                "condition": attrs.get("condition", "service_started"),
                "required": attrs.get("required", True),
                "restart": attrs.get("restart", False),
                "kind": "depends_on"}))
            seen.add(str(dep))
        implicit: list[tuple[str, str]] = []
        for link in svc.get("links") or []:
            implicit.append((str(link).split(":", 1)[0], "links"))
        for key in _NAMESPACE_KEYS:
            value = svc.get(key)
            if isinstance(value, str) and value.startswith("service:"):
                implicit.append((value[len("service:"):], key))
        for source in svc.get("volumes_from") or []:
            text = str(source)
            if text.startswith("container:"):
                continue
            parts = text.split(":")
            implicit.append((parts[1] if parts[0] == "service" and len(parts) > 1 else parts[0],
                             "volumes_from"))
        for dep, kind in implicit:
            if dep not in seen:
                seen.add(dep)
                edges.append((name, dep, {**_IMPLICIT, "kind": kind}))
    return edges


def find_cycle(edges: Iterable[Edge | tuple[str, str]]) -> list[str] | None:
    """The first dependency cycle as ``[a, b, c, a]`` (services visited in name order),
    or None. A self-dependency is ``[a, a]``."""
    adjacency: dict[str, list[str]] = {}
    for edge in edges:
        adjacency.setdefault(edge[0], []).append(edge[1])
        adjacency.setdefault(edge[1], [])
    WHITE, GREY, BLACK = 0, 1, 2
    color = {node: WHITE for node in adjacency}
    for root in sorted(adjacency):
        if color[root] != WHITE:
            continue
        stack: list[tuple[str, Iterable[str]]] = [(root, iter(sorted(adjacency[root])))]
        path = [root]
        color[root] = GREY
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                path.pop()
                color[node] = BLACK
                continue
            if color[child] == GREY:
                return path[path.index(child):] + [child]
            if color[child] == WHITE:
                color[child] = GREY
                path.append(child)
                stack.append((child, iter(sorted(adjacency[child]))))
    return None


def build_graph(project: Any, *, check: bool = True) -> "nx.DiGraph":
    """A DiGraph with one node per service and an edge ``service -> dependency``.

    Edge attributes: ``condition``, ``required``, ``restart``, ``kind`` (depends_on,
    links, volumes_from, network_mode, ...). With ``check``, a dependency cycle or an
    edge to a missing service raises ComposeError.
    """
    import networkx as nx  # lazy: only commands that order services pay for it

    services = _services(project)
    graph = nx.DiGraph()
    graph.add_nodes_from(sorted(services))
    for name, dep, attrs in dependency_edges(project):
        if dep not in services:
            if attrs.get("required", True) is False:
                continue  # an optional dependency on a service that is not loaded
            if check:
                raise ComposeError(f'service "{name}" depends on undefined service "{dep}"',
                                   path=("services", name, attrs["kind"]))
            continue
        graph.add_edge(name, dep, **attrs)
    if check:
        cycle = find_cycle((a, b, {}) for a, b in graph.edges)
        if cycle:
            raise ComposeError("dependency cycle detected: " + " -> ".join(cycle),
                               path=("services", cycle[0], "depends_on"))
    return graph


def start_levels(graph: "nx.DiGraph") -> list[list[str]]:
    """Levels of services that may start in parallel, dependencies first (each sorted)."""
    import networkx as nx

    try:
        # generations of the reversed graph: services with no dependencies come first
        return [sorted(level) for level in nx.topological_generations(graph.reverse(copy=False))]
    except nx.NetworkXUnfeasible:
        cycle = find_cycle((a, b, {}) for a, b in graph.edges) or []
        raise ComposeError("dependency cycle detected: " + " -> ".join(cycle)) from None


def stop_levels(graph: "nx.DiGraph") -> list[list[str]]:
    """Start levels reversed: dependents stop before what they depend on."""
    return list(reversed(start_levels(graph)))


def start_order(graph: "nx.DiGraph") -> list[str]:
    """One start order (level by level)."""
    return [name for level in start_levels(graph) for name in level]


def stop_order(graph: "nx.DiGraph") -> list[str]:
    """One stop order: the start order reversed."""
    return [name for level in stop_levels(graph) for name in level]


def subgraph(graph: "nx.DiGraph", services: Iterable[str], *,
             with_dependencies: bool = True) -> "nx.DiGraph":
    """The graph restricted to ``services``, plus (by default) everything they need,
    transitively — what ``up web`` starts. Unknown names raise ComposeError."""
    import networkx as nx

    wanted = set()
    for name in services:
        if name not in graph:
            raise ComposeError(f"no such service: {name}")
        wanted.add(name)
        if with_dependencies:
            wanted |= nx.descendants(graph, name)
    return graph.subgraph(wanted).copy()


def dependents_of(graph: "nx.DiGraph", services: Iterable[str]) -> set[str]:
    """Every service that needs one of ``services``, transitively (what ``stop db`` must
    stop first)."""
    import networkx as nx

    out: set[str] = set()
    for name in services:
        if name in graph:
            out |= nx.ancestors(graph, name)
    return out
