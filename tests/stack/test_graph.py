"""The service dependency graph: edges and their attributes, start levels, stop order,
sub-graphs and cycles."""
from __future__ import annotations

import pytest

from pystack.stack.errors import ComposeError
from pystack.stack.graph import (build_graph, dependency_edges, dependents_of, find_cycle,
                                 start_levels, start_order, stop_levels, stop_order, subgraph)


def dep(condition="service_started", required=True, restart=False):
    return {"condition": condition, "required": required, "restart": restart}


def project(**services):
    return {"name": "p", "services": {n: {"image": "x", **s} for n, s in services.items()}}


WEB_STACK = project(
    db={},
    cache={},
    migrate={"depends_on": {"db": dep("service_healthy", restart=True)}},
    api={"depends_on": {"migrate": dep("service_completed_successfully"),
                        "cache": dep(required=False)}},
    web={"links": ["api:backend"], "volumes_from": ["api:ro"]},
    sidecar={"network_mode": "service:web"},
)


def test_edges_carry_condition_required_restart_and_kind():
    graph = build_graph(WEB_STACK)
    assert graph.edges["migrate", "db"] == {"condition": "service_healthy", "required": True,
                                            "restart": True, "kind": "depends_on"}
    assert graph.edges["api", "cache"]["required"] is False
    assert graph.edges["web", "api"]["kind"] == "links"  # links first, volumes_from merged
    assert graph.edges["sidecar", "web"] == {"condition": "service_started", "required": True,
                                             "restart": True, "kind": "network_mode"}
    assert set(graph.nodes) == {"db", "cache", "migrate", "api", "web", "sidecar"}


def test_start_levels_are_topological_generations():
    levels = start_levels(build_graph(WEB_STACK))
    assert levels == [["cache", "db"], ["migrate"], ["api"], ["web"], ["sidecar"]]
    assert stop_levels(build_graph(WEB_STACK)) == list(reversed(levels))


def test_start_and_stop_orders_respect_every_edge():
    graph = build_graph(WEB_STACK)
    start = start_order(graph)
    stop = stop_order(graph)
    for service, dependency in graph.edges:
        assert start.index(dependency) < start.index(service)
        assert stop.index(service) < stop.index(dependency)


def test_independent_services_share_one_level():
    assert start_levels(build_graph(project(a={}, b={}, c={}))) == [["a", "b", "c"]]


def test_subgraph_with_and_without_dependencies():
    graph = build_graph(WEB_STACK)
    assert set(subgraph(graph, ["api"]).nodes) == {"api", "migrate", "db", "cache"}
    only = subgraph(graph, ["api", "web"], with_dependencies=False)
    assert set(only.nodes) == {"api", "web"}
    assert list(only.edges) == [("web", "api")]
    with pytest.raises(ComposeError, match="no such service: nope"):
        subgraph(graph, ["nope"])


def test_dependents_are_what_must_stop_first():
    graph = build_graph(WEB_STACK)
    assert dependents_of(graph, ["db"]) == {"migrate", "api", "web", "sidecar"}
    assert dependents_of(graph, ["sidecar"]) == set()


def test_cycle_is_named():
    cyclic = project(a={"depends_on": {"b": dep()}}, b={"depends_on": {"c": dep()}},
                     c={"volumes_from": ["a"]})
    assert find_cycle(dependency_edges(cyclic)) == ["a", "b", "c", "a"]
    with pytest.raises(ComposeError, match="dependency cycle detected: a -> b -> c -> a"):
        build_graph(cyclic)


def test_self_dependency_is_a_cycle():
    with pytest.raises(ComposeError, match="a -> a"):
        build_graph(project(a={"depends_on": ["a"]}))


def test_missing_dependency_raises_unless_optional():
    with pytest.raises(ComposeError, match='depends on undefined service "ghost"'):
        build_graph(project(a={"depends_on": {"ghost": dep()}}))
    graph = build_graph(project(a={"depends_on": {"ghost": dep(required=False)}}))
    assert list(graph.edges) == []


def test_short_syntax_and_container_volumes_from():
    edges = dependency_edges(project(a={"depends_on": ["b"], "volumes_from": ["container:xyz"]},
                                     b={"ipc": "service:a"}))
    assert [(a, b) for a, b, _ in edges] == [("a", "b"), ("b", "a")]


def test_graph_from_a_model_project():
    from pystack.stack.model import Project

    proj = Project.from_config(WEB_STACK)
    assert start_levels(proj.graph())[0] == ["cache", "db"]


def test_levels_of_a_loaded_project(tmp_path):
    """End to end: compose file -> load_project -> graph, implicit edges included."""
    from pystack.stack.load import load_project
    from pystack.stack.options import LoadOptions

    (tmp_path / "compose.yaml").write_text(
        "services:\n"
        "  proxy: {image: nginx, links: [web]}\n"
        "  web: {image: app, depends_on: {db: {condition: service_healthy}}}\n"
        "  db: {image: postgres, healthcheck: {test: pg_isready}}\n"
        "  metrics: {image: exporter, network_mode: 'service:db'}\n")
    project = load_project(LoadOptions(files=[str(tmp_path / "compose.yaml")],
                                       project_name="g", environ={}, warn=False))
    graph = project.graph()
    assert start_levels(graph) == [["db"], ["metrics", "web"], ["proxy"]]
    assert graph.edges["web", "db"]["condition"] == "service_healthy"
    assert graph.edges["metrics", "db"]["restart"] is True
    assert project.service("web").replicas == 1
