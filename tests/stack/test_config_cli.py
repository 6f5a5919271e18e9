"""The real ``pystack config`` command, run as a process: every flag, and user mistakes
that must give one line naming file:line and key, a non-zero exit and no traceback."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

PYSTACK = str(Path(sys.executable).parent / "pystack")

COMPOSE = """\
services:
  web:
    image: nginx:1.25
    depends_on: [api]
    ports: ["8080:80"]
    environment:
      PRICE: "$$5"
  api:
    build: ./api
    depends_on:
      db: {condition: service_healthy}
    volumes: [data:/var/lib/api]
  db:
    image: "postgres:${PG_TAG:-16}"
    profiles: [db]
    healthcheck: {test: pg_isready, interval: 5s}
  tool:
    image: busybox
    profiles: [tools]
volumes:
  data: {}
"""


def run(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(cwd)}
    return subprocess.run([PYSTACK, *args], cwd=cwd, env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "compose.yaml").write_text(COMPOSE)
    return tmp_path


def ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.stdout


def test_default_is_yaml_and_equals_json(project):
    as_yaml = yaml.safe_load(ok(run(project, "--profile", "db", "config")))
    as_json = json.loads(ok(run(project, "--profile", "db", "config", "--format", "json")))
    assert as_yaml["name"] == as_json["name"] == project.name.lower()
    assert set(as_json["services"]) == {"web", "api", "db"}
    assert as_yaml["services"]["db"]["image"] == as_json["services"]["db"]["image"] == "postgres:16"
    assert as_json["services"]["web"]["environment"]["PRICE"] == "$$5"  # escaped, as Compose
    assert as_json["services"]["api"]["build"]["context"] == str(project / "api")


def test_listing_flags(project):
    assert ok(run(project, "--profile", "db", "config", "--services")).split() == ["db", "api", "web"]
    assert ok(run(project, "--profile", "db", "config", "--volumes")).split() == ["data"]
    assert ok(run(project, "--profile", "db", "config", "--networks")).split() == ["default"]
    # every service's profiles, enabled or not
    assert ok(run(project, "--profile", "db", "config", "--profiles")).split() == ["db", "tools"]
    # without the db profile, api needs a disabled service: an error, as in Compose
    assert run(project, "config", "--profiles").returncode != 0
    images = ok(run(project, "-p", "shop", "--profile", "db", "config", "--images")).split()
    assert sorted(images) == ["nginx:1.25", "postgres:16", "shop-api"]


def test_hash_flag(project):
    lines = ok(run(project, "--profile", "db", "config", "--hash", "*")).splitlines()
    assert [line.split()[0] for line in lines] == ["api", "db", "web"]
    assert all(len(line.split()[1]) == 64 for line in lines)
    one = ok(run(project, "--profile", "db", "config", "--hash", "web")).splitlines()
    assert one == [lines[2]]
    missing = run(project, "--profile", "db", "config", "--hash", "nope")
    assert missing.returncode != 0 and "no such service: nope" in missing.stderr


def test_services_as_arguments_pull_their_dependencies(project):
    cfg = json.loads(ok(run(project, "--profile", "db", "config", "--format", "json", "api")))
    assert set(cfg["services"]) == {"api", "db"}
    # as Compose 2.40: naming api does not enable the db profile it depends on
    proc = run(project, "config", "--format", "json", "api")
    assert proc.returncode == 1 and 'depends on undefined service "db"' in proc.stderr


def test_quiet_and_output(project):
    assert ok(run(project, "--profile", "db", "config", "-q")) == ""
    assert run(project, "config", "-q").returncode != 0  # api needs the disabled db
    out = project / "out.json"
    assert ok(run(project, "--profile", "db", "config", "--format", "json", "-o", str(out))) == ""
    assert json.loads(out.read_text())["services"]["web"]["image"] == "nginx:1.25"


def test_no_interpolate_keeps_variables(project):
    cfg = yaml.safe_load(ok(run(project, "--profile", "db", "config", "--no-interpolate")))
    assert cfg["services"]["db"]["image"] == "postgres:${PG_TAG:-16}"


def test_no_normalize_prints_long_syntax_without_implicit_defaults(project):
    """As Compose: --no-normalize still prints the canonical (long) syntax, but adds no
    default network and no resource names, and its YAML keeps an empty ``data: {}``."""
    cfg = json.loads(ok(run(project, "--profile", "db", "config", "--no-normalize",
                            "--format", "json")))
    web = cfg["services"]["web"]
    assert web["depends_on"] == {"api": {"condition": "service_started", "required": True}}
    assert web["ports"] == [{"mode": "ingress", "target": 80, "published": "8080",
                             "protocol": "tcp"}]
    assert "networks" not in web and "networks" not in cfg  # no default network added
    assert cfg["volumes"] == {"data": {}}  # no name: data -> <project>_data
    text = ok(run(project, "--profile", "db", "config", "--no-normalize"))
    assert text.endswith("volumes:\n  data: {}\n")


def test_no_interpolate_prints_the_map_sorted(project):
    """Without interpolation Compose prints its model as a Go map: keys sorted at every
    level, empty values kept, ``$`` as written."""
    text = ok(run(project, "--profile", "db", "config", "--no-interpolate"))
    data = yaml.safe_load(text)
    assert list(data) == sorted(data)
    assert list(data["services"]["api"]) == sorted(data["services"]["api"])
    assert data["services"]["db"]["image"] == "postgres:${PG_TAG:-16}"


def test_global_flags_env_file_and_project_directory(project, tmp_path):
    (project / "alt.env").write_text("PG_TAG=15\n")
    cfg = json.loads(ok(run(project, "--env-file", "alt.env", "--profile", "db", "config",
                            "--format", "json")))
    assert cfg["services"]["db"]["image"] == "postgres:15"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cfg = json.loads(ok(run(elsewhere, "-f", str(project / "compose.yaml"), "-p", "custom",
                            "--profile", "db", "config", "--format", "json")))
    assert cfg["name"] == "custom"
    assert cfg["volumes"]["data"]["name"] == "custom_data"


# ---------------------------------------------------------------- mistakes

MISTAKES = {
    "unknown key": ("""\
        services:
          web:
            image: nginx
            wrongField: 1
        """, "compose.yaml:4:5", "services.web", "wrongField"),
    "bad type": ("""\
        services:
          web:
            image: nginx
            ports:
              - target: 80
                protocol: 6
        """, "compose.yaml:6:9", "services.web.ports[0].protocol", "string"),
    "service not a mapping": ("""\
        services:
          web:
        """, "compose.yaml:2:3", "services.web", "mapping"),
    "undefined volume": ("""\
        services:
          web:
            image: nginx
            volumes: ["data:/d"]
        """, "compose.yaml:4", "services.web.volumes[0]", "undefined volume data"),
    "cycle": ("""\
        services:
          a: {image: x, depends_on: [b]}
          b: {image: x, depends_on: [a]}
        """, "compose.yaml:2", "services.a.depends_on", "dependency cycle detected: a -> b -> a"),
    "bad duration": ("""\
        services:
          web:
            image: nginx
            stop_grace_period: soon
        """, "compose.yaml:4", "services.web.stop_grace_period", "soon"),
    "container_name and replicas": ("""\
        services:
          web:
            image: nginx
            container_name: web
            scale: 2
        """, "compose.yaml:4", "services.web.container_name", "container_name"),
    "no image": ("""\
        services:
          web:
            environment: {A: "1"}
        """, "compose.yaml:2", "services.web", "neither an image nor a build context"),
}


@pytest.mark.parametrize("name", sorted(MISTAKES))
def test_mistake_is_one_line_with_position(name, tmp_path):
    text, where, key, words = MISTAKES[name]
    (tmp_path / "compose.yaml").write_text(textwrap.dedent(text))
    proc = run(tmp_path, "config")
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    assert where in line and key in line and words in line, line


def test_missing_file_and_bad_format(tmp_path):
    proc = run(tmp_path, "-f", "nope.yaml", "config")
    assert proc.returncode != 0 and "nope.yaml" in proc.stderr and "Traceback" not in proc.stderr
    (tmp_path / "compose.yaml").write_text("services: {a: {image: x}}\n")
    proc = run(tmp_path, "config", "--format", "toml")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr


def test_config_path_imports_no_heavy_library(project):
    """The speed goal depends on it: pydantic, networkx and jsonschema (~0.35 s of
    imports together) stay out of a valid `config` run."""
    code = ("import sys, runpy\n"
            "sys.argv = ['pystack', '--profile', 'db', 'config', '--format', 'json', '--hash', '*']\n"
            "from pystack.cli import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('HEAVY', sorted(m for m in ('pydantic', 'networkx', 'jsonschema')"
            " if m in sys.modules), file=sys.stderr)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=project, capture_output=True,
                          text=True, timeout=60,
                          env={"PATH": os.environ.get("PATH", ""), "HOME": str(project)})
    assert "HEAVY []" in proc.stderr, proc.stderr
