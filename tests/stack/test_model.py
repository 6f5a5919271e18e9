"""The pydantic model: exact round trip of canonical configs, typed access, helpers,
and the config hash against values Docker Compose v2.40.3 printed."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pystack.errors import NotFound, UserError
from pystack.stack.hash import service_hash
from pystack.stack.model import Healthcheck, Port, Project

CORPUS = Path(os.environ.get("PYSTACK_CORPUS", "/work/shared/corpus"))


def _valid_configs():
    for expected in sorted(CORPUS.glob("*/*/expected.json")):
        if (expected.parent / "expected.rc").read_text().strip() == "0":
            yield expected


@pytest.mark.skipif(not CORPUS.is_dir(), reason="corpus not present")
def test_every_corpus_config_round_trips_exactly():
    count = 0
    for expected in _valid_configs():
        config = json.loads(expected.read_text())
        project = Project.from_config(config, working_dir="/w", environment={"A": "1"},
                                      config_files=["/w/compose.yaml"])
        assert project.to_config_dict() == config, expected
        count += 1
    assert count > 100


SAMPLE = {
    "name": "shop",
    "services": {
        "web": {
            "image": "nginx:1.25",
            "command": ["nginx", "-g", "daemon off;"],
            "entrypoint": None,
            "ports": [{"mode": "ingress", "target": 80, "published": "8080-8081", "protocol": "tcp"},
                      {"mode": "ingress", "target": 443, "protocol": "tcp"}],
            "volumes": [{"type": "tmpfs", "target": "/cache", "tmpfs": {"size": "10485760"}}],
            "depends_on": {"db": {"condition": "service_healthy", "required": True}},
            "deploy": {"replicas": 3, "placement": {}},
            "stop_grace_period": "1m30s",
            "mem_limit": "1073741824",
            "networks": {"default": None},
            "x-note": {"kept": True},
        },
        "db": {
            "build": {"context": "/src/db", "dockerfile": "Dockerfile"},
            "healthcheck": {"test": ["CMD-SHELL", "pg_isready"], "interval": "1.5s",
                            "timeout": "500ms", "retries": 5},
            "scale": 2,
            "networks": {"default": None},
        },
    },
    "networks": {"default": {"name": "shop_default", "ipam": {}}},
    "x-top": 1,
}


def test_typed_access_and_helpers():
    project = Project.from_config(SAMPLE, working_dir="/src")
    web = project.service("web")
    db = project.services["db"]
    assert web.name == "web" and db.name == "db"
    assert isinstance(web.ports[0], Port)
    assert web.ports[0].published_range() == (8080, 8081)
    assert web.ports[1].published_range() is None
    with pytest.raises(UserError, match='invalid published port "99999"'):
        Port(target=80, published="99999").published_range()
    assert web.replicas == 3 and db.replicas == 2
    assert web.image_name(project.name) == "nginx:1.25"
    assert db.image_name(project.name) == "shop-db"
    assert web.stop_grace_seconds == 90.0 and db.stop_grace_seconds == 10.0
    assert web.mem_limit_bytes == 1 << 30
    assert web.volumes[0].tmpfs_size_bytes() == 10 << 20
    assert web.depends_on["db"].condition == "service_healthy"
    assert db.healthcheck.interval_seconds == 1.5
    assert db.healthcheck.timeout_seconds == 0.5
    assert db.healthcheck.start_period_seconds == 0.0
    assert db.healthcheck.effective_retries == 5
    assert web.model_extra["x-note"] == {"kept": True}
    assert project.working_dir == "/src"
    with pytest.raises(NotFound, match="no such service: nope"):
        project.service("nope")


def test_round_trip_keeps_nulls_extras_and_leaves_out_load_context():
    project = Project.from_config(SAMPLE, working_dir="/src", environment={"X": "1"},
                                  config_files=["/src/compose.yaml"])
    out = project.to_config_dict()
    assert out == SAMPLE
    assert "working_dir" not in out and "environment" not in out
    assert out["services"]["web"]["entrypoint"] is None


def test_healthcheck_defaults_and_disable():
    assert Healthcheck().interval_seconds == 30.0
    assert Healthcheck(test=["NONE"]).disabled
    assert Healthcheck(disable=True).disabled
    assert not Healthcheck(test=["CMD", "true"]).disabled


# Printed by `docker-compose -p t config --hash '*'` (v2.40.3) for the services below;
# the key order given here is scrambled on purpose: the hash must not depend on it.
HASHED = {
    "another": ({"image": "alpine", "networks": {"default": None}, "entrypoint": None,
                 "command": ["top"]},
                "1899a2dadaa698e8c322234bdccce56c5be186ae302446f7c8152de856f90abf"),
    "b": ({"pull_policy": "always", "profiles": ["p"], "image": "y",
           "ports": [{"protocol": "tcp", "target": 5000, "mode": "ingress"}],
           "networks": {"default": None}, "entrypoint": None, "command": None,
           "build": {"dockerfile": "Dockerfile", "context": "/tmp/h2t"}},
          "15256f2533abfee57d05194bbd672a33d65716600831fe11ce5bf1a2acd08670"),
}


@pytest.mark.parametrize("name", sorted(HASHED))
def test_config_hash_matches_docker_compose(name):
    service, expected = HASHED[name]
    assert service_hash(service) == expected


def test_config_hash_ignores_what_compose_ignores():
    base = {"image": "x", "command": None, "entrypoint": None, "networks": {"default": None}}
    noisy = dict(base, build={"context": "/x"}, pull_policy="always", scale=3, profiles=["a"],
                 depends_on={"db": {"condition": "service_started", "required": True}})
    assert service_hash(base) == service_hash(noisy)
    assert service_hash(dict(base, deploy={"replicas": 2})) == service_hash(
        dict(base, deploy={"replicas": 5}))
    assert service_hash(base) != service_hash(dict(base, image="y"))
