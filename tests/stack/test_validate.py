"""Schema validation (fast checker vs jsonschema, error wording and position) and the
semantic checks of stack.validate, on real corpus files and hand-written mistakes."""
from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest
import yaml

from pystack.stack.errors import ComposeError, Mark
from pystack.stack.schema import is_valid, load_schema
from pystack.stack.validate import (check_config, parse_bytes, parse_duration,
                                    schema_errors, validate_file)

CORPUS = Path(os.environ.get("PYSTACK_CORPUS", "/work/shared/corpus"))
needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason="corpus not present")


class DictLocator:
    """A Locator stand-in with stack.yamlpos's contract: nearest known ancestor's Mark."""

    def __init__(self, file: str, marks: dict[tuple, tuple[int, int]]) -> None:
        self.file = file
        self.marks = marks

    def mark(self, path):
        path = tuple(path)
        while True:
            if path in self.marks:
                return Mark(self.file, *self.marks[path])
            if not path:
                return None
            path = path[:-1]


def _yaml_files() -> list[Path]:
    return sorted(p for p in CORPUS.glob("*/*/*.y*ml"))


def _safe_load(path: Path):
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    return yaml.load(path.read_text(), Loader=Loader)


def _jsonschema():
    import jsonschema

    return jsonschema.Draft7Validator(load_schema())


# ---------------------------------------------------------------- schema

def test_schema_is_the_compose_spec_with_licence_note():
    schema = load_schema()
    assert schema["$schema"].startswith("https://json-schema.org/draft-07")
    assert "Apache" in schema["$comment"]
    assert {"service", "network", "volume", "secret", "config"} <= set(schema["definitions"])
    assert (Path(__file__).parents[2] / "stack" / "schema" / "NOTICE").is_file()


@needs_corpus
def test_fast_checker_agrees_with_jsonschema_on_corpus_files():
    validator = _jsonschema()
    checked = 0
    for path in _yaml_files():
        try:
            data = _safe_load(path)
        except yaml.YAMLError:
            continue
        assert is_valid(data) == validator.is_valid(data), path
        checked += 1
    assert checked > 100


MUTATIONS = [
    ("services.web.ports", [{"target": "x"}]),
    ("services.web.ports", ["80:80", 80, {"target": 80, "published": 8080}]),
    ("services.web.ports", [True]),
    ("services.web.restart", 5),
    ("services.web.cap_add", ["A", "A"]),
    ("services.web.depends_on", {"db": {"condition": "nope"}}),
    ("services.web.depends_on", ["db", "db"]),
    ("services.web.healthcheck", {"retries": 1.5}),
    ("services.web.healthcheck", {"retries": 2.0}),
    ("services.web.deploy", {"replicas": "2"}),
    ("services.web.environment", {"A": None, "B": 1, "C": True}),
    ("services.web.environment", {"A": [1]}),
    ("services.web.x-anything", {"deep": [1]}),
    ("services.web.wrongField", 1),
    ("services.web.networks", {"front": {"aliases": "notalist"}}),
    ("services.web.build", {"context": ".", "args": ["A=1"]}),
    ("services.web.build", 12),
    ("services.web.ulimits", {"nofile": {"soft": 1}}),
    ("networks.front", {"driver": "bridge", "ipam": {"config": [{"subnet": 5}]}}),
    ("networks.front", None),
    ("volumes", {"bad name!": {}}),
    ("x-top", {"anything": True}),
    ("version", 3),
    ("name", "UPPER"),
]


@pytest.mark.parametrize("dotted,value", MUTATIONS, ids=[f"{d}={v!r}"[:60] for d, v in MUTATIONS])
def test_fast_checker_agrees_with_jsonschema_on_mutations(dotted, value):
    data = {"services": {"web": {"image": "nginx"}, "db": {"image": "postgres"}}}
    node = data
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    assert is_valid(data) == _jsonschema().is_valid(data)


def test_unknown_service_key_is_one_line_with_position():
    data = {"services": {"simple": {"image": "alpine", "wrongField": 1}}}
    loc = DictLocator("compose.yaml", {("services",): (1, 1), ("services", "simple"): (2, 3),
                                       ("services", "simple", "wrongField"): (4, 5)})
    with pytest.raises(ComposeError) as info:
        validate_file(data, loc, "compose.yaml")
    text = str(info.value)
    assert text == "compose.yaml:4:5: services.simple: additional property 'wrongField' not allowed"
    assert "\n" not in text


def test_type_error_names_the_key_path():
    data = {"services": {"web": {"image": "x", "ports": [{"target": 80, "protocol": 7}]}}}
    loc = DictLocator("c.yaml", {("services", "web", "ports", 0): (7, 9)})
    with pytest.raises(ComposeError) as info:
        validate_file(data, loc, "c.yaml")
    assert str(info.value).startswith("c.yaml:7:9: services.web.ports[0]")


def test_error_inside_the_form_that_fits_is_named_precisely():
    data = {"services": {"web": {"image": "x", "depends_on": {"db": {"condition": 5}}}}}
    loc = DictLocator("c.yaml", {("services", "web", "depends_on", "db", "condition"): (6, 20)})
    with pytest.raises(ComposeError) as info:
        validate_file(data, loc, "c.yaml")
    assert str(info.value) == ("c.yaml:6:20: services.web.depends_on.db.condition: "
                               "must be a string, not 5")


STRUCTURE = [  # each rejected by docker-compose v2.40.3, whether used or not
    ({"secrets": {"s": {"name": "x"}}}, "secrets.s: one of file|environment must be set"),
    ({"secrets": {"s": {"file": "./x", "environment": "X"}}},
     "secrets.s: file|environment attributes are mutually exclusive"),
    ({"configs": {"c": {}}}, "configs.c: one of file|environment|content must be set"),
    ({"configs": {"c": {"file": "./x", "content": "y"}}},
     "configs.c: file|environment|content attributes are mutually exclusive"),
    ({"volumes": {"v": {"external": True, "driver": "local"}}},
     'volumes.v.driver: conflicting parameters "external" and "driver" specified'),
    ({"services": {"a": {"image": "x", "develop": {"watch": [{"path": "", "action": "rebuild"}]}}}},
     "services.a.develop.watch[0].path: value can't be blank"),
    ({"services": {"a": {"image": "x", "gpus": [{"count": 1, "device_ids": ["0"]}]}}},
     'services.a.gpus[0]: "count" and "device_ids" attributes are exclusive'),
]


@pytest.mark.parametrize("data,message", STRUCTURE, ids=[m.split(":")[0] for _d, m in STRUCTURE])
def test_structure_checks_after_the_schema(data, message):
    data = {"services": {"a": {"image": "x"}}, **data}
    with pytest.raises(ComposeError) as info:
        validate_file(data, None, "f.yaml")
    assert str(info.value) == f"f.yaml: {message}"


def test_structure_accepts_what_compose_accepts():
    validate_file({"services": {"a": {"image": "x"}},
                   "secrets": {"e": {"external": True}, "d": {"driver": "vault"}},
                   "volumes": {"v": {"external": True, "name": "real", "x-note": 1}},
                   "networks": {"n": {"external": True, "driver": "bridge"}}}, None, "f.yaml")


def test_service_that_is_not_a_mapping():
    with pytest.raises(ComposeError, match=r"services\.nil: must be a mapping"):
        validate_file({"services": {"nil": None}}, None, "base.yaml")


def test_empty_and_non_mapping_files():
    with pytest.raises(ComposeError, match="base.yaml: empty compose file"):
        validate_file(None, None, "base.yaml")
    with pytest.raises(ComposeError, match="must be a mapping"):
        validate_file(["a"], None, "x.yaml")


def test_valid_file_passes_without_importing_jsonschema():
    import subprocess
    import sys

    code = ("import sys; from pystack.stack.validate import validate_file;"
            "validate_file({'services': {'a': {'image': 'x', 'ports': ['80:80']}}}, None, 'f');"
            "print('jsonschema' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_schema_errors_lists_every_violation():
    errors = schema_errors({"services": {"a": {"image": 1, "bogus": 2}}})
    paths = {p for _m, p in errors}
    assert ("services", "a", "image") in paths
    assert ("services", "a", "bogus") in paths
    assert schema_errors({"services": {"a": {"image": "x"}}}) == []


# ------------------------------------------------------------ value parsers

@pytest.mark.parametrize("text,seconds", [
    ("1m30s", 90.0), ("1.5s", 1.5), ("500ms", 0.5), ("2h", 7200.0), ("-1s", -1.0),
    (5, 5.0), ("1h1m1s", 3661.0), ("100us", 0.0001), ("0", 0.0)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["", "abc", "1x", "s", "1m30", True, None, "1 m", "10", "1.5"])
def test_parse_duration_rejects(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


@pytest.mark.parametrize("text,size", [
    ("1g", 1 << 30), ("512m", 512 << 20), ("64k", 65536), ("1073741824", 1 << 30),
    (2048, 2048), ("1.5GB", int(1.5 * (1 << 30))), ("10b", 10), ("1MiB", 1 << 20), ("-1", -1)])
def test_parse_bytes(text, size):
    assert parse_bytes(text) == size


@pytest.mark.parametrize("bad", ["", "lots", "1q", "-5m", True, [1]])
def test_parse_bytes_rejects(bad):
    with pytest.raises(ValueError):
        parse_bytes(bad)


# ------------------------------------------------------------ semantic checks

def _project(**services) -> dict:
    return {"name": "p", "services": services,
            "networks": {"default": {"name": "p_default", "ipam": {}}}}


def _svc(**kw) -> dict:
    return {"image": "x", "networks": {"default": None}, **kw}


@needs_corpus
def test_every_valid_corpus_config_passes_the_checks():
    count = 0
    for expected in sorted(CORPUS.glob("*/*/expected.json")):
        if (expected.parent / "expected.rc").read_text().strip() != "0":
            continue
        check_config(json.loads(expected.read_text()))
        count += 1
    assert count > 100


BROKEN = [
    # (case, mutation of a good project, expected message fragment, key path)
    ("no image", lambda p: p["services"]["web"].pop("image"),
     'has neither an image nor a build context', "services.web"),
    ("undefined network", lambda p: p["services"]["web"]["networks"].update(back=None),
     "undefined network back", "services.web.networks.back"),
    ("undefined volume", lambda p: p["services"]["web"].update(
        volumes=[{"type": "volume", "source": "data", "target": "/d"}]),
     "undefined volume data", "services.web.volumes[0]"),
    ("undefined secret", lambda p: p["services"]["web"].update(secrets=[{"source": "s"}]),
     "undefined secret s", "services.web.secrets[0]"),
    ("undefined config", lambda p: p["services"]["web"].update(configs=[{"source": "c"}]),
     "undefined config c", "services.web.configs[0]"),
    ("missing depends_on", lambda p: p["services"]["web"].update(
        depends_on={"nope": {"condition": "service_started", "required": True}}),
     'depends on undefined service "nope"', "services.web.depends_on.nope"),
    ("missing link", lambda p: p["services"]["web"].update(links=["nope:alias"]),
     'links to undefined service "nope"', "services.web.links[0]"),
    ("missing network_mode service", lambda p: p["services"]["web"].update(
        network_mode="service:nope", networks=None),
     'undefined service "nope"', "services.web.network_mode"),
    ("missing volumes_from", lambda p: p["services"]["web"].update(volumes_from=["nope:ro"]),
     'volumes from undefined service "nope"', "services.web.volumes_from[0]"),
    ("self dependency", lambda p: p["services"]["web"].update(
        depends_on={"web": {"condition": "service_started", "required": True}}),
     "dependency cycle detected: web -> web", None),
    ("network_mode with networks", lambda p: p["services"]["web"].update(network_mode="host"),
     "`network_mode` and `networks` are mutually exclusive", "services.web.network_mode"),
    ("container_name with replicas", lambda p: p["services"]["web"].update(
        container_name="c", deploy={"replicas": 2}),
     "can't set container_name and deploy.replicas", "services.web.container_name"),
    ("container_name with scale", lambda p: p["services"]["web"].update(
        container_name="c", scale=3),
     "can't set container_name and scale", "services.web.container_name"),
    ("duplicate container_name", lambda p: (p["services"]["web"].update(container_name="c"),
                                            p["services"]["db"].update(container_name="c")),
     'container name "c" is already in use', None),
    ("platform not in build.platforms", lambda p: p["services"]["web"].update(
        platform="linux/riscv64", build={"context": "/x", "platforms": ["linux/amd64"]}),
     'must include service.platform "linux/riscv64"', "services.web.platform"),
    ("bad duration", lambda p: p["services"]["web"].update(
        healthcheck={"test": ["CMD", "true"], "interval": "often"}),
     'invalid duration "often"', "services.web.healthcheck.interval"),
    ("bad stop_grace_period", lambda p: p["services"]["web"].update(stop_grace_period="1y"),
     "invalid duration", "services.web.stop_grace_period"),
    ("bad size", lambda p: p["services"]["web"].update(mem_limit="lots"),
     'invalid size "lots"', "services.web.mem_limit"),
    ("bad tmpfs size", lambda p: p["services"]["web"].update(
        volumes=[{"type": "tmpfs", "target": "/t", "tmpfs": {"size": "big"}}]),
     "invalid size", "services.web.volumes[0].tmpfs.size"),
    ("bad host ip", lambda p: p["services"]["web"].update(
        ports=[{"target": 80, "published": "80", "host_ip": "80", "protocol": "tcp"}]),
     'invalid IP address "80"', "services.web.ports[0].host_ip"),
    ("bad volume type", lambda p: p["services"]["web"].update(
        volumes=[{"type": "nfs", "target": "/x"}]),
     'invalid volume type "nfs"', "services.web.volumes[0].type"),
    ("double mount", lambda p: p["services"]["web"].update(
        tmpfs=["/t"], volumes=[{"type": "tmpfs", "target": "/t"}]),
     "target /t already mounted as services.web.tmpfs[0]", "services.web.volumes[0]"),
    ("scale vs replicas", lambda p: p["services"]["web"].update(scale=2, deploy={"replicas": 3}),
     "distinct values on 'scale' and 'deploy.replicas'", "services.web"),
    ("mem_limit vs deploy", lambda p: p["services"]["web"].update(
        mem_limit="1073741824", deploy={"resources": {"limits": {"memory": "5"}}}),
     "distinct values on 'mem_limit'", "services.web"),
    ("healthcheck test", lambda p: p["services"]["web"].update(healthcheck={"test": ["RUN", "x"]}),
     'must start either by "CMD"', "services.web.healthcheck.test"),
    ("watch without target", lambda p: p["services"]["web"].update(
        develop={"watch": [{"path": "/src", "action": "sync"}]}),
     "target is required", "services.web.develop.watch[0]"),
]


@pytest.mark.parametrize("name,mutate,fragment,path", BROKEN, ids=[b[0] for b in BROKEN])
def test_semantic_check_rejects(name, mutate, fragment, path):
    project = _project(web=_svc(), db=_svc())
    check_config(copy.deepcopy(project))  # the unbroken project is fine
    mutate(project)
    with pytest.raises(ComposeError) as info:
        check_config(project)
    text = str(info.value)
    assert fragment in text
    if path:
        assert text.startswith(path + ": ") or f": {path}: " in text
    assert "\n" not in text


def test_what_compose_accepts_passes():
    """Docker Compose v2.40.3 prints these without complaint (checked with its binary);
    they fail later, when a container is created, not at `config` time."""
    check_config(_project(web=_svc(ports=[{"target": 70000, "published": "99999",
                                            "protocol": "icmp"}],
                                   volumes=[{"type": "volume", "target": "."}])))

@pytest.mark.parametrize("key,value,accepted", [
    # each checked against docker-compose v2.40.3: it de-duplicates the first group
    ("cap_add", ["A", "A"], True), ("ports", ["80:80", "80:80"], True),
    ("volumes", ["/x", "/x"], True), ("profiles", ["p", "p"], True),
    ("dns", ["a", "a"], True), ("environment", ["A=1", "A=1"], True),
    ("volumes_from", ["b", "b"], False), ("depends_on", ["b", "b"], False),
    ("group_add", ["a", "a"], False), ("security_opt", ["a", "a"], False),
    ("networks", ["default", "default"], False), ("device_cgroup_rules", ["a", "a"], False),
])
def test_duplicates_rejected_where_compose_rejects_them(key, value, accepted):
    assert is_valid({"services": {"b": {"image": "x"}, "a": {"image": "x", key: value}}}) is accepted


def test_cycle_is_named_in_order():
    deps = lambda d: {d: {"condition": "service_started", "required": True}}  # noqa: E731
    project = _project(service1=_svc(depends_on=deps("service2")),
                       service2=_svc(depends_on=deps("service3")),
                       service3=_svc(depends_on=deps("service1")))
    with pytest.raises(ComposeError, match="service1 -> service2 -> service3 -> service1"):
        check_config(project)


def test_optional_dependency_on_a_disabled_service_is_allowed():
    project = _project(web=_svc(depends_on={"gone": {"condition": "service_started",
                                                     "required": False}}))
    check_config(project)  # unknown whether "gone" exists: let it through
    check_config(project, all_services=["web", "gone"])  # disabled by a profile: fine
    with pytest.raises(ComposeError, match='depends on undefined service "gone"'):
        check_config(project, all_services=["web"])  # exists nowhere: Compose rejects


def test_semantic_error_is_positioned_with_the_locator_of_the_right_file():
    project = _project(web=_svc(mem_limit="lots"))
    base = DictLocator("base.yaml", {("services", "web"): (2, 3)})
    override = DictLocator("override.yaml", {("services", "web", "mem_limit"): (5, 16)})
    with pytest.raises(ComposeError) as info:
        check_config(project, [base, override])
    assert str(info.value).startswith("override.yaml:5:16: services.web.mem_limit: ")


def test_scale_is_copied_into_deploy_as_compose_does():
    project = _project(web=_svc(scale=2, deploy={"mode": "replicated", "resources": {}}),
                       db=_svc(scale=3))
    check_config(project)
    assert list(project["services"]["web"]["deploy"].items())[:2] == [("mode", "replicated"),
                                                                      ("replicas", 2)]
    assert "deploy" not in project["services"]["db"]


def test_no_consistency_keeps_only_decoding_errors():
    from pystack.stack.validate import consistency_checks

    cyclic = _project(web=_svc(depends_on={"db": {"condition": "service_started"}},
                               networks={"nowhere": None}),
                      db=_svc(depends_on={"web": {"condition": "service_started"}}))
    with consistency_checks(False):
        check_config(copy.deepcopy(cyclic))
        with pytest.raises(ComposeError, match="invalid duration"):
            check_config(_project(web=_svc(stop_grace_period="1y")))
    with pytest.raises(ComposeError):
        check_config(cyclic)  # the switch does not outlive its block
