"""Specgen through a private pystackd: the create-body options reach the container, with
the docker CLI (Debian docker.io, a client nobody here wrote) when it is installed and
with raw Engine API bodies otherwise."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

DOCKER = shutil.which("docker")


def _logs(api, cid) -> str:
    assert api.wait(cid)["StatusCode"] == 0, open(api.inspect(cid)["LogPath"]).read()
    return "".join(json.loads(line)["log"] for line in open(api.inspect(cid)["LogPath"]))


def test_api_options_reach_the_container(api, unique_name) -> None:
    cmd = ("id; pwd; echo $FOO; touch /ro 2>/dev/null || echo ro; touch /scratch/x && echo tmpfs; "
           "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max; "
           "grep -E 'CapEff|NoNewPrivs' /proc/self/status; ulimit -n")
    cid = api.run(["sh", "-c", cmd], name=unique_name, User="app", WorkingDir="/tmp", Env=["FOO=bar"],
                  HostConfig={"ReadonlyRootfs": True, "Tmpfs": {"/scratch": ""}, "Memory": 48 << 20,
                              "CapDrop": ["ALL"], "CapAdd": ["KILL"], "SecurityOpt": ["no-new-privileges"],
                              "Ulimits": [{"Name": "nofile", "Soft": 321, "Hard": 321}]})
    lines = _logs(api, cid).splitlines()
    assert lines[0].startswith("uid=1000(app) gid=1000(app)"), lines
    assert lines[1:5] == ["/tmp", "bar", "ro", "tmpfs"], lines
    assert lines[5] == str(48 << 20), lines
    assert lines[6] == "CapEff:\t0000000000000000"   # a non-root user: no effective caps
    assert lines[7] == "NoNewPrivs:\t1" and lines[8] == "321", lines


def test_api_refusals_are_clear_400s(api, unique_name) -> None:
    for hc, words in (({"Runtime": "kata"}, "HostConfig.Runtime: not supported by pystack"),
                      ({"Memory": 1024}, "Minimum memory limit allowed is 6MB"),
                      ({"CapAdd": ["CAP_BOGUS"]}, "unknown capability"),
                      ({"Mounts": [{"Type": "nfs", "Target": "/x"}]}, "mount type unknown"),
                      ({"SecurityOpt": ["seccomp=/etc/shadow"]}, "not a file path")):
        status, body = api.post(f"/containers/create?name={unique_name}",
                                {"Image": "busybox", "Cmd": ["true"], "HostConfig": hc})
        assert status == 400 and words in body["message"], (hc, status, body)
    assert api.get(f"/containers/{unique_name}/json")[0] == 404


@pytest.fixture
def cli(busybox_engine, tmp_path: Path):
    if DOCKER is None:
        pytest.skip("the docker CLI is not installed (Debian package docker.io; .ci/run installs it)")
    conf = tmp_path / "docker-config"
    conf.mkdir()
    env = {**os.environ, "DOCKER_HOST": busybox_engine.url, "DOCKER_CONFIG": str(conf)}
    env.pop("DOCKER_CONTEXT", None)

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([DOCKER, *args], env=env, capture_output=True, text=True, timeout=60)
    return run


def test_docker_cli_run_options(cli, tmp_path) -> None:
    prof = tmp_path / "profile.json"
    prof.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW",
                                "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}))
    out = cli("run", "--rm", "--security-opt", f"seccomp={prof}", "--user", "nobody", "--cap-drop", "ALL",
              "--memory", "40m", "--pids-limit", "17", "--read-only", "--tmpfs", "/w", "--sysctl",
              "kernel.shmmax=7654321", "--entrypoint", "", "busybox", "sh", "-c",
              "id -u; mkdir /w/d 2>/dev/null || echo denied; cat /proc/sys/kernel/shmmax; "
              "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["65534", "denied", "7654321", "17"], out.stdout
    out = cli("run", "--rm", "--runtime", "kata", "busybox", "true")
    assert out.returncode != 0 and "HostConfig.Runtime" in out.stderr and "Traceback" not in out.stderr
    out = cli("run", "--rm", "--memory", "1k", "busybox", "true")
    assert out.returncode != 0 and "Minimum memory limit allowed is 6MB" in out.stderr, out.stderr
