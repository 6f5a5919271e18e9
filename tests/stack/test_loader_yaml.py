"""yamlpos: go-yaml's scalar rules, positions, anchors, merge keys, tags, duplicate keys."""
from __future__ import annotations

import pytest

from pystack.stack.errors import ComposeError
from pystack.stack.yamlpos import parse_yaml, parse_yaml_documents


def test_scalars_resolve_as_go_yaml_v3() -> None:
    data, _ = parse_yaml(
        "a: [22:22, 0755, 0x1F, yes, on, 'true', true, ~, null, 1e3, 1.5, -3, +4, 08, .inf, 1_000]\n", "f")
    assert data["a"] == ["22:22", 493, 31, "yes", "on", "true", True, None, None, 1000.0, 1.5, -3, 4,
                         8.0, float("inf"), 1000]


@pytest.mark.parametrize("text,where,key", [
    ("80: a\n", "f:1:1: ", "80"), ("a:\n  true: b\n", "f:2:3: a: ", "true"),
    ("a: [{1.5: c}]\n", "f:1:6: a[0]: ", "1.5"), ("a: {~: 1}\n", "f:1:5: a: ", "null"),
    ("a: {!!int '2': 1}\n", "f:1:5: a: ", "2"), ("a: {<<: {b: {1: 2}}}\n", "f:1:14: a.b: ", "1"),
])
def test_non_string_keys_are_rejected(text: str, where: str, key: str) -> None:
    # as Compose ("non-string key in a: true"): go-yaml decodes into map[string]any
    with pytest.raises(ComposeError) as info:
        parse_yaml(text, "f")
    assert str(info.value).startswith(f"{where}non-string key {key} ")


def test_keys_of_a_merge_become_strings() -> None:
    # ...except the keys a << merge brings in, which Compose turns into text
    data, _ = parse_yaml("a:\n  <<: [{80: a}, {true: b}]\n  c: 1\n", "f")
    assert data == {"a": {"80": "a", "true": "b", "c": 1}}


def test_positions_of_keys_and_items() -> None:
    text = "services:\n  web:\n    image: x\n    ports:\n      - '80:80'\n      - 81\n"
    _, loc = parse_yaml(text, "compose.yaml")
    assert str(loc.mark(("services", "web", "image"))) == "compose.yaml:3:5"
    assert str(loc.mark(("services", "web", "ports", 1))) == "compose.yaml:6:9"
    # an unknown deeper path falls back to its nearest known ancestor
    assert str(loc.mark(("services", "web", "ports", 1, "target"))) == "compose.yaml:6:9"
    err = loc.error("bad port", ("services", "web", "ports", 0))
    assert str(err) == "compose.yaml:5:9: services.web.ports[0]: bad port"


def test_anchors_aliases_and_merge_keys() -> None:
    text = ("x: &base {image: busybox, environment: {A: '1'}}\n"
            "y: &other {restart: always, image: other}\n"
            "a:\n  <<: [*base, *other]\n  image: mine\n"
            "b: *base\n")
    data, _ = parse_yaml(text, "f")
    assert data["a"] == {"image": "mine", "environment": {"A": "1"}, "restart": "always"}
    assert data["b"] == data["x"]
    data["b"]["environment"]["A"] = "changed"  # aliases are copies, not shared objects
    assert data["x"]["environment"]["A"] == "1"


def test_reset_and_override_tags_are_recorded() -> None:
    text = "services:\n  a:\n    ports: !reset []\n    command: !reset\n    environment: !override {A: b}\n"
    data, loc = parse_yaml(text, "f")
    assert data == {"services": {"a": {"environment": {"A": "b"}}}}
    assert ("services", "a", "ports") in loc.reset_paths
    assert ("services", "a", "command") in loc.reset_paths
    assert loc.override_paths == [("services", "a", "environment")]


@pytest.mark.parametrize("text,where", [
    ("a: 1\nb: 2\na: 3\n", "f:3:1"),
    ("s:\n  x: [1\n", "f:"),
    ("a: *nope\n", "f:1:4"),
    ("a: b: c\n", "f:1:5"),
    ("a:\n  - x\n  y: z\n", "f:"),
])
def test_malformed_yaml_is_a_positioned_compose_error(text: str, where: str) -> None:
    with pytest.raises(ComposeError) as info:
        parse_yaml(text, "f")
    assert str(info.value).startswith(where)


def test_multiple_documents_and_empty_file() -> None:
    docs = parse_yaml_documents("a: 1\n---\nb: 2\n", "f")
    assert [d for d, _ in docs] == [{"a": 1}, {"b": 2}]
    assert parse_yaml("# only a comment\n", "f")[0] is None
