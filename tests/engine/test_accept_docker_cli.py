"""Issue 7's acceptance with the docker CLI (Debian ``docker.io``, client only, written by nobody
here) pointed at a private pystackd with ``DOCKER_HOST=unix://<socket>``: ps -a, run --rm (output,
exit codes), run -d, logs -f (ends with the container), exec -it driven by a pty, inspect,
network ls, volume ls, cp both ways.

Run: /opt/pystack/venv/bin/python -m pytest tests/engine/test_accept_docker_cli.py -q
"""
from __future__ import annotations

import json
import os
import pty
import select
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from resource_helpers import assert_engine_clean

DOCKER = shutil.which("docker")


@pytest.fixture
def cli(busybox_engine, tmp_path: Path):
    """``cli(*args)`` runs the docker CLI against the private engine; ``cli.env`` its environment."""
    if DOCKER is None:
        pytest.skip("the docker CLI is not installed (Debian package docker.io; .ci/run installs it)")
    conf = tmp_path / "docker-config"
    conf.mkdir()
    env = {**os.environ, "DOCKER_HOST": busybox_engine.url, "DOCKER_CONFIG": str(conf)}
    env.pop("DOCKER_CONTEXT", None)

    def run(*args: str, timeout: float = 60, input: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([DOCKER, *args], env=env, capture_output=True, text=True, timeout=timeout,
                              input=input)
    run.env = env
    return run


def test_run_rm_output_and_exit_codes(cli, busybox_engine) -> None:
    out = cli("run", "--rm", "busybox", "echo", "hi")
    assert (out.returncode, out.stdout) == (0, "hi\n"), out.stderr
    out = cli("run", "--rm", "busybox", "sh", "-c", "exit 3")
    assert out.returncode == 3, out.stderr
    out = cli("run", "--rm", "busybox", "sh", "-c", "echo to-err >&2; exit 0")
    assert (out.returncode, out.stdout, out.stderr) == (0, "", "to-err\n")
    out = cli("run", "--rm", "-i", "busybox", "tr", "a-z", "A-Z", input="piped\n")
    assert (out.returncode, out.stdout) == (0, "PIPED\n"), out.stderr
    # --rm removed them all; a user mistake is one clear message, not a traceback
    out = cli("ps", "-a", "-q")
    assert (out.returncode, out.stdout) == (0, "")
    out = cli("run", "--rm", "busybox", "/no/such/binary")
    assert out.returncode == 127 and "Traceback" not in out.stderr
    # the CLI parsed the error body (exact Content-Type application/json): no raw JSON shown
    assert "Error response from daemon: " in out.stderr and '{"message"' not in out.stderr, out.stderr
    out = cli("inspect", "no-such-thing")
    assert out.returncode == 1 and "No such object: no-such-thing" in out.stderr
    assert cli("ps", "-a", "-q").stdout == ""


def test_run_d_ps_inspect_logs_f_network_volume_ls(cli, busybox_engine, unique_name) -> None:
    out = cli("run", "-d", "--name", unique_name, "--label", "acc=1", "busybox", "sh", "-c",
              "for i in 1 2 3; do echo line$i; sleep 0.2; done; echo done >&2; "
              "while [ ! -e /tmp/go ]; do sleep 0.05; done; exit 6")
    assert out.returncode == 0, out.stderr
    cid = out.stdout.strip()
    assert len(cid) == 64 and all(ch in "0123456789abcdef" for ch in cid)
    # logs -f follows (stdout and stderr to their own streams) and ends when the container ends
    follow = subprocess.Popen([DOCKER, "logs", "-f", unique_name], env=cli.env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    out = cli("ps", "-a", "--no-trunc", "--format", "{{.ID}}|{{.Names}}|{{.Image}}|{{.Status}}|{{.Labels}}")
    rows = [line.split("|") for line in out.stdout.splitlines()]
    assert [r[:3] for r in rows] == [[cid, unique_name, "busybox"]] and rows[0][3].startswith("Up ")
    assert rows[0][4] == "acc=1"
    doc = json.loads(cli("inspect", unique_name).stdout)[0]
    assert doc["Id"] == cid and doc["Name"] == "/" + unique_name and doc["State"]["Status"] == "running"
    assert doc["Config"]["Labels"] == {"acc": "1"} and doc["Config"]["Image"] == "busybox"
    assert doc["NetworkSettings"]["Networks"]["bridge"]["IPAddress"].startswith("10.211.")
    out = cli("inspect", "--format", "{{.State.Pid}} {{.HostConfig.NetworkMode}}", cid[:12])
    pid, mode = out.stdout.split()
    assert int(pid) > 1 and mode in ("default", "bridge")
    assert follow.poll() is None  # still following
    assert cli("exec", unique_name, "touch", "/tmp/go").returncode == 0  # now the container ends
    stdout, stderr = follow.communicate(timeout=60)
    assert follow.returncode == 0
    assert stdout == "line1\nline2\nline3\n" and stderr == "done\n"
    assert cli("wait", unique_name).stdout.strip() == "6"
    out = cli("ps", "-a", "--filter", f"name={unique_name}", "--format", "{{.Status}}")
    assert out.stdout.startswith("Exited (6)")
    assert cli("ps", "-q").stdout == ""  # not running any more
    # networks and volumes as the CLI lists them
    out = cli("network", "ls", "--format", "{{.Name}} {{.Driver}} {{.Scope}}")
    assert {"bridge bridge local", "host host local", "none null local"} <= set(out.stdout.splitlines())
    assert cli("volume", "create", unique_name + "-v").returncode == 0
    out = cli("volume", "ls")
    assert out.returncode == 0 and out.stdout.splitlines()[0].split() == ["DRIVER", "VOLUME", "NAME"]
    assert f"local     {unique_name}-v" in out.stdout
    assert cli("volume", "ls", "-q").stdout.split() == [unique_name + "-v"]
    assert cli("volume", "rm", unique_name + "-v").returncode == 0
    assert cli("rm", unique_name).returncode == 0
    out = cli("rm", unique_name)
    assert out.returncode == 1 and f"Error response from daemon: No such container: {unique_name}" in out.stderr
    assert_engine_clean(busybox_engine, container_ids=[cid])


def test_exec_it_driven_by_a_pty(cli, busybox_engine, unique_name) -> None:
    out = cli("run", "-d", "--name", unique_name, "busybox", "sleep", "1000")
    assert out.returncode == 0, out.stderr
    master, slave = pty.openpty()
    proc = subprocess.Popen([DOCKER, "exec", "-it", "-e", "ACC=yes", unique_name, "sh"], env=cli.env,
                            stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    seen = b""

    def expect(token: bytes, timeout: float = 30) -> None:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while token not in seen:
            ready, _, _ = select.select([master], [], [], max(0.0, deadline - time.monotonic()))
            assert ready, f"timed out waiting for {token!r}: {seen!r}"
            try:
                chunk = os.read(master, 4096)
            except OSError:
                chunk = b""
            assert chunk, f"EOF waiting for {token!r}: {seen!r}"
            seen += chunk
    try:
        expect(b"# ")  # the prompt (no newline) arrives
        os.write(master, b"echo $ACC-$((6*7)); tty; [ -t 0 ] && echo is-a-tty\r")
        expect(b"yes-42")
        expect(b"/dev/pts/")
        expect(b"is-a-tty")
        os.write(master, b"exit 5\r")
        assert proc.wait(timeout=30) == 5
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    # without -t: plain output and the exit code
    out = cli("exec", unique_name, "sh", "-c", "echo plain; exit 2")
    assert (out.returncode, out.stdout) == (2, "plain\n")
    assert cli("rm", "-f", unique_name).returncode == 0


def test_cp_both_ways(cli, busybox_engine, unique_name, tmp_path: Path) -> None:
    out = cli("run", "-d", "--name", unique_name, "busybox", "sh", "-c",
              "mkdir -p /srv/d && echo inside > /srv/d/a.txt && ln -s a.txt /srv/d/link && sleep 1000")
    assert out.returncode == 0, out.stderr
    deadline = time.monotonic() + 30
    while cli("exec", unique_name, "test", "-e", "/srv/d/link").returncode != 0:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    # container -> host: a directory, then a file to a new name
    out = cli("cp", f"{unique_name}:/srv/d", str(tmp_path / "copied"))
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "copied" / "a.txt").read_text() == "inside\n"
    assert os.readlink(tmp_path / "copied" / "link") == "a.txt"
    assert cli("cp", f"{unique_name}:/srv/d/a.txt", str(tmp_path / "single.txt")).returncode == 0
    assert (tmp_path / "single.txt").read_text() == "inside\n"
    # host -> container: a file and a directory
    src = tmp_path / "up"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "b.txt").write_text("from host\n")
    (src / "top.txt").write_text("top\n")
    os.chmod(src / "top.txt", 0o751)
    assert cli("cp", str(src / "top.txt"), f"{unique_name}:/srv/").returncode == 0
    assert cli("cp", str(src), f"{unique_name}:/srv/up").returncode == 0
    out = cli("exec", unique_name, "sh", "-c", "cat /srv/top.txt /srv/up/sub/b.txt; stat -c %a /srv/top.txt")
    assert out.stdout == "top\nfrom host\n751\n"
    # a tar on stdin (docker cp - CONTAINER:DIR) and out on stdout
    with tarfile.open(tmp_path / "in.tar", "w") as tar:
        tar.add(str(src / "top.txt"), arcname="fromtar.txt")
    with open(tmp_path / "in.tar", "rb") as f:
        p = subprocess.run([DOCKER, "cp", "-", f"{unique_name}:/srv"], env=cli.env, stdin=f, capture_output=True,
                           timeout=60)
    assert p.returncode == 0, p.stderr
    p = subprocess.run([DOCKER, "cp", f"{unique_name}:/srv/fromtar.txt", "-"], env=cli.env, capture_output=True,
                       timeout=60)
    assert p.returncode == 0
    (tmp_path / "out.tar").write_bytes(p.stdout)
    with tarfile.open(tmp_path / "out.tar") as tar:
        member = tar.getmember("fromtar.txt")
        assert tar.extractfile(member).read() == b"top\n"
    # errors: a missing path, a missing container
    out = cli("cp", f"{unique_name}:/nope", str(tmp_path / "x"))
    assert out.returncode == 1 and "Could not find the file /nope" in out.stderr
    out = cli("cp", "no-such-container:/srv", str(tmp_path / "y"))
    assert out.returncode == 1 and "No such container" in out.stderr
    # a stopped container is copied from and to as well
    assert cli("stop", "-t", "1", unique_name).returncode == 0
    assert cli("cp", str(src / "sub" / "b.txt"), f"{unique_name}:/srv/after-stop.txt").returncode == 0
    assert cli("cp", f"{unique_name}:/srv/after-stop.txt", str(tmp_path / "back.txt")).returncode == 0
    assert (tmp_path / "back.txt").read_text() == "from host\n"
    assert cli("rm", unique_name).returncode == 0
