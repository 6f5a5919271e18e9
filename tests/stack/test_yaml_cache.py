"""yamlpos's on-disk parse cache: same values and positions, never a stale or broken entry."""
from __future__ import annotations

import os

import pytest

from pystack.stack import yamlnodes, yamlpos
from pystack.stack.errors import ComposeError

TEXT = """services:
  web:
    image: busybox
    ports: ["80:80", 22:22]
    environment: {A: yes, B: 1.5, C: .inf, D: ~}
    healthcheck: !reset {}
x-a: &a {k: 1}
x-b:
  <<: *a
  j: !override [1]
"""


def _shape(docs):
    return [(data, loc.file, loc.start, dict(loc.marks), list(loc.reset_paths),
             list(loc.override_paths)) for data, loc in docs]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PYSTACK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("PYSTACK_NO_CACHE", raising=False)
    return tmp_path / "cache" / "yaml"


def _no_parse(monkeypatch):
    def refuse(text, filename):
        raise AssertionError("parsed again")
    monkeypatch.setattr(yamlnodes, "parse", refuse)


def test_hit_gives_the_same_values_and_positions(cache, tmp_path, monkeypatch):
    name = str(tmp_path / "compose.yaml")
    first = _shape(yamlpos.parse_yaml_documents(TEXT, name))
    assert len(os.listdir(cache)) == 1
    _no_parse(monkeypatch)
    again = yamlpos.parse_yaml_documents(TEXT, name)
    assert _shape(again) == first
    assert again[0][1].mark(("services", "web", "ports", 1)).line == 4
    # values are fresh copies: a caller may change them
    again[0][0]["services"]["web"]["image"] = "changed"
    assert _shape(yamlpos.parse_yaml_documents(TEXT, name)) == first


def test_other_text_or_name_is_a_miss(cache, tmp_path, monkeypatch):
    name = str(tmp_path / "compose.yaml")
    yamlpos.parse_yaml_documents(TEXT, name)
    data, _ = yamlpos.parse_yaml(TEXT.replace("busybox", "alpine"), name)
    assert data["services"]["web"]["image"] == "alpine"
    data, loc = yamlpos.parse_yaml(TEXT, "other.yaml")
    assert loc.file == "other.yaml" and data["services"]["web"]["image"] == "busybox"


def test_a_broken_entry_is_a_miss(cache, tmp_path):
    name = str(tmp_path / "compose.yaml")
    first = _shape(yamlpos.parse_yaml_documents(TEXT, name))
    for entry in os.listdir(cache):
        (cache / entry).write_bytes(b"\x00garbage")
    assert _shape(yamlpos.parse_yaml_documents(TEXT, name)) == first


def test_errors_are_never_cached(cache, tmp_path):
    name = str(tmp_path / "compose.yaml")
    for _ in range(2):
        with pytest.raises(ComposeError, match=r"compose.yaml:2:1: a: .*already defined"):
            yamlpos.parse_yaml_documents("a: 1\na: 2\n", name)
    assert not cache.exists() or not os.listdir(cache)


def test_no_cache_switch(tmp_path, monkeypatch):
    monkeypatch.setenv("PYSTACK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PYSTACK_NO_CACHE", "1")
    yamlpos.parse_yaml_documents(TEXT, str(tmp_path / "compose.yaml"))
    assert not (tmp_path / "cache").exists()


def test_unwritable_cache_is_ignored(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("PYSTACK_CACHE_DIR", str(blocker))  # a file, not a directory
    data, _ = yamlpos.parse_yaml(TEXT, str(tmp_path / "compose.yaml"))
    assert data["services"]["web"]["image"] == "busybox"
