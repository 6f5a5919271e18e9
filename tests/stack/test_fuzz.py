"""Fuzzing the whole loader (YAML, interpolation, schema, merge, extends, normalize,
checks) with malformed input: the only exceptions allowed out are the user-error
family (ComposeError/UserError), which the CLI prints as one line. Anything else is a
traceback a user would see."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pystack.errors import UserError
from pystack.stack.load import load_checked
from pystack.stack.options import LoadOptions

CORPUS = Path(os.environ.get("PYSTACK_CORPUS", "/work/shared/corpus"))


def fuzz(examples: int) -> settings:
    """Bounded runs (~220 examples over the three tests), no timing, no example database
    left in the working tree."""
    scale = float(os.environ.get("PYSTACK_FUZZ_SCALE", "1"))  # longer runs by hand
    return settings(max_examples=max(1, int(examples * scale)), deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))

SERVICE_KEYS = ["image", "build", "command", "entrypoint", "ports", "volumes", "depends_on",
                "networks", "network_mode", "environment", "env_file", "healthcheck", "deploy",
                "extends", "labels", "links", "volumes_from", "secrets", "configs", "profiles",
                "container_name", "scale", "ulimits", "tmpfs", "expose", "restart",
                "stop_grace_period", "mem_limit", "extra_hosts", "develop", "platform",
                "x-ext", "wrongField"]
TOP_KEYS = ["services", "networks", "volumes", "secrets", "configs", "include", "name",
            "version", "x-top", "models"]
NAMES = st.sampled_from(["web", "db", "a", "b", "default", "data", "", "x y", "1"])

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-70000, 70000), st.floats(allow_nan=True),
    st.sampled_from(["80:80", "8080-8081:80-81/udp", "127.0.0.1::90", "80:80:80", "data:/d",
                     "./src:/src:ro", "/anon", "${X}", "${X:-d}", "${X:?err}", "$$", "${",
                     "$", "1m30s", "10x", "1g", "service:web", "container:x", "web:alias",
                     "CMD-SHELL", "host", "~/x", "../up", "-", "!reset", "", "NONE"]),
    st.text(max_size=12),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.one_of(NAMES, st.sampled_from(SERVICE_KEYS)),
                                            inner, max_size=4)),
    max_leaves=12,
)
service = st.dictionaries(st.sampled_from(SERVICE_KEYS), values, max_size=6)
documents = st.fixed_dictionaries(
    {"services": st.one_of(st.dictionaries(NAMES, st.one_of(service, scalars), max_size=3),
                           values)},
    optional={k: st.one_of(st.dictionaries(NAMES, values, max_size=2), values)
              for k in TOP_KEYS if k != "services"},
)


# schema-valid but possibly wrong values: these get past the schema into transform,
# normalize and the semantic checks
port_str = st.sampled_from(["80", "80:80", "8080-8081:80-81", "127.0.0.1:5000:5000/udp",
                            "80:80:80", "99999:1", "a:b", "[::1]:80:80", "${P:-81}:81",
                            "0:0", "1-2:3", "65535:65535/sctp", ":80"])
volume_str = st.sampled_from(["data:/d", "./src:/src:ro", "/anon", "/abs:/abs:z,ro",
                              "data:rel", "nope:/x", "::", "~/h:/h", "${V}:/v", "a:/b:c:d",
                              "data:/d:nocopy"])
duration = st.sampled_from(["1s", "1m30s", "500ms", "10", "bad", "-1s", "1h1h", "", "1.5s"])
size = st.sampled_from(["1g", "512m", "10", "lots", "1.5GB", "-1", "0"])
ref = st.sampled_from(["web", "db", "cache", "missing", "web:alias", "service:db",
                       "container:zz", ""])
plausible_service = st.fixed_dictionaries(
    {"image": st.sampled_from(["nginx", "busybox:1.36", "${IMG:-x}", "UPPER/Case:tag"])},
    optional={
        "ports": st.lists(st.one_of(port_str, st.integers(-1, 70000),
                                    st.fixed_dictionaries({"target": st.integers(-1, 70000)},
                                                          optional={"published": port_str})),
                          max_size=3),
        "volumes": st.lists(st.one_of(volume_str, st.fixed_dictionaries(
            {"type": st.sampled_from(["volume", "bind", "tmpfs", "npipe", "weird"]),
             "target": st.sampled_from(["/t", "", "rel"])},
            optional={"source": st.sampled_from(["data", "./x", "missing", ""]),
                      "tmpfs": st.fixed_dictionaries({"size": st.one_of(size, st.integers())})})),
            max_size=3),
        "depends_on": st.one_of(st.lists(ref, max_size=2, unique=True), st.dictionaries(
            ref, st.fixed_dictionaries({}, optional={
                "condition": st.sampled_from(["service_started", "service_healthy"]),
                "required": st.booleans(), "restart": st.booleans()}), max_size=2)),
        "links": st.lists(ref, max_size=2),
        "volumes_from": st.lists(ref, max_size=2),
        "network_mode": ref,
        "networks": st.lists(st.sampled_from(["default", "front", "missing"]), max_size=2,
                             unique=True),
        "healthcheck": st.fixed_dictionaries({}, optional={
            "test": st.one_of(st.sampled_from(["true", "NONE"]),
                              st.lists(st.sampled_from(["CMD", "RUN", "x"]), max_size=3)),
            "interval": duration, "timeout": duration, "start_period": duration,
            "retries": st.one_of(st.integers(0, 5), st.floats(0, 10))}),
        "stop_grace_period": duration,
        "mem_limit": st.one_of(size, st.floats()), "shm_size": size,
        "pids_limit": st.one_of(st.integers(-2, 10), st.floats()),
        "container_name": st.sampled_from(["c1", "c2"]),
        "scale": st.integers(-1, 3),
        "deploy": st.fixed_dictionaries({}, optional={"replicas": st.integers(-1, 3)}),
        "environment": st.one_of(st.lists(st.sampled_from(["A=1", "B", "=x", "C=${X}"])),
                                 st.dictionaries(st.sampled_from(["A", "B"]), scalars)),
        "extends": st.one_of(ref, st.fixed_dictionaries({"service": ref})),
        "ulimits": st.dictionaries(st.sampled_from(["nofile", "nproc"]), st.one_of(
            st.integers(-1, 10), st.fixed_dictionaries({"soft": st.integers(0, 9),
                                                        "hard": st.integers(0, 9)}))),
        "profiles": st.lists(st.sampled_from(["p", "q"]), max_size=2),
        "build": st.one_of(st.just("."), st.fixed_dictionaries(
            {"context": st.just(".")}, optional={"platforms": st.just(["linux/amd64"])})),
        "platform": st.sampled_from(["linux/amd64", "linux/riscv64"]),
        "secrets": st.lists(st.sampled_from(["s", "t", "missing"]), max_size=2, unique=True),
        "configs": st.lists(st.sampled_from(["c", "missing"]), max_size=1),
    })
plausible = st.fixed_dictionaries(
    {"services": st.dictionaries(st.sampled_from(["web", "db", "cache"]), plausible_service,
                                 min_size=1, max_size=3)},
    optional={
        "volumes": st.dictionaries(st.sampled_from(["data", "other"]), st.one_of(
            st.just({}), st.none(), st.fixed_dictionaries({}, optional={
                "external": st.booleans(), "name": st.sampled_from(["n1", "${V:-v}"]),
                "driver": st.just("local")})), max_size=2),
        "networks": st.dictionaries(st.sampled_from(["front", "default", "back"]), st.one_of(
            st.just({}), st.none(), st.fixed_dictionaries({}, optional={
                "external": st.booleans(), "internal": st.booleans(),
                "name": st.sampled_from(["n1", "custom"]),
                "ipam": st.just({"config": [{"subnet": "10.212.9.0/24"}]})})), max_size=2),
        "secrets": st.dictionaries(st.sampled_from(["s", "t"]), st.one_of(
            st.just({"file": "./s.txt"}), st.just({"environment": "X"}), st.just({}),
            st.just({"external": True})), max_size=2),
        "configs": st.dictionaries(st.sampled_from(["c"]), st.one_of(
            st.just({"file": "./s.txt"}), st.just({"content": "x=${X:-1}"}), st.just({})),
            max_size=1),
    })


def load_text(text: str, tmp: Path, env: dict[str, str] | None = None) -> None:
    options = LoadOptions(files=["-"], stdin_text=text, project_name="fuzz",
                          working_dir=str(tmp), project_directory=str(tmp),
                          environ={"HOME": str(tmp), **(env or {})}, warn=False)
    try:
        load_checked(options)
    except UserError:
        pass  # a clear, one-line user error is the right answer to bad input


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@fuzz(40)
@given(text=st.text(max_size=200))
def test_arbitrary_text(text, workdir):
    load_text(text, workdir)


@fuzz(60)
@given(doc=documents, env=st.dictionaries(st.sampled_from(["X", "COMPOSE_PROFILES"]),
                                          st.text(max_size=5), max_size=2))
def test_compose_shaped_structures(doc, env, workdir):
    load_text(yaml.safe_dump(doc, allow_unicode=True), workdir, env)


def _corpus_texts() -> list[str]:
    files = sorted(CORPUS.glob("*/*/compose*.y*ml"))[:40] if CORPUS.is_dir() else []
    return [p.read_text() for p in files] or ["services:\n  web:\n    image: nginx\n"]


@fuzz(40)
@given(data=st.data())
def test_mutated_real_files(data, workdir):
    text = data.draw(st.sampled_from(_corpus_texts()))
    lines = text.splitlines()
    for _ in range(data.draw(st.integers(1, 4))):
        if not lines:
            break
        i = data.draw(st.integers(0, len(lines) - 1))
        action = data.draw(st.sampled_from(["drop", "dup", "indent", "dedent", "garble"]))
        if action == "drop":
            del lines[i]
        elif action == "dup":
            lines.insert(i, lines[i])
        elif action == "indent":
            lines[i] = "  " + lines[i]
        elif action == "dedent":
            lines[i] = lines[i][2:]
        else:
            pos = data.draw(st.integers(0, max(len(lines[i]) - 1, 0)))
            ch = data.draw(st.sampled_from(list(":-[]{}&*!|>'\"%@`#$ \t")))
            lines[i] = lines[i][:pos] + ch + lines[i][pos + 1:]
    load_text("\n".join(lines) + "\n", workdir)


@fuzz(70)
# found by this test: an empty duration once raised IndexError in normalize
@example(doc={"services": {"web": {"image": "nginx", "stop_grace_period": ""}}}, env={})
@example(doc={"services": {"web": {"image": "nginx", "healthcheck": {"interval": ""}}}}, env={})
# found by the differential test: an infinite number in environment (YAML .inf)
@example(doc={"services": {"web": {"image": "nginx", "environment": {"A": float("inf")}}}},
         env={})
@given(doc=plausible, env=st.dictionaries(st.sampled_from(["X", "P", "IMG", "COMPOSE_PROFILES"]),
                                          st.sampled_from(["", "1", "p", "${X}", "a b"]),
                                          max_size=2))
def test_plausible_but_wrong_projects(doc, env, workdir):
    load_text(yaml.safe_dump(doc), workdir, env)
