"""End to end: run options, wait, attached up ending by itself, pull/push via a local registry."""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request

import pytest


def test_run_options(stack, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "in.txt").write_text("from host\n")
    stack.write("""
services:
  web:
    image: busybox
    command: ["httpd", "-f", "-p", "8080", "-h", "/var/www"]
    ports: ["127.0.0.1::8080"]
""")
    out = stack.run("run", "--rm", "-T", "--entrypoint", "cat", "-v", f"{shared}:/shared:ro",
                    "web", "/shared/in.txt").stdout
    assert out == "from host\n"
    # a detached one-off with its own name, its service's ports (-P), and a label
    stack.run("run", "-d", "-P", "--name", f"{stack.name}-custom", "-l", "team=qa", "web")
    info = stack.inspect(f"{stack.name}-custom")
    assert info["Config"]["Labels"]["team"] == "qa"
    assert info["Config"]["Labels"]["com.docker.compose.oneoff"] == "True"
    assert info["HostConfig"]["RestartPolicy"]["Name"] in ("", "no")
    binding = info["NetworkSettings"]["Ports"]["8080/tcp"][0]
    assert binding["HostIp"] == "127.0.0.1"
    body = urllib.request.urlopen(f"http://127.0.0.1:{binding['HostPort']}/index.html", timeout=10).read()
    assert body == b"hello from busybox\n"
    # without -P a one-off publishes nothing
    stack.run("run", "-d", "--name", f"{stack.name}-quiet", "web")
    assert not stack.inspect(f"{stack.name}-quiet")["HostConfig"]["PortBindings"]


def test_wait_returns_the_exit_code(stack):
    stack.write("""
services:
  job:
    image: busybox
    command: ["sh", "-c", "sleep 1; exit 6"]
""")
    stack.run("up", "-d")
    proc = stack.run("wait", "job", check=False)
    assert proc.returncode == 6


def test_attached_up_ends_when_its_containers_end(stack):
    stack.write("""
services:
  a:
    image: busybox
    command: ["sh", "-c", "echo one; echo two >&2"]
  b:
    image: busybox
    command: ["sh", "-c", "sleep 0.5; echo three"]
""")
    proc = stack.run("up", "--no-color", "--no-attach", "b")
    lines = proc.stdout.splitlines()
    assert "a-1  | one" in lines and "a-1  | two" in lines
    assert not any(line.startswith("b-1") for line in lines)
    assert proc.returncode == 0
    states = {c["Names"][0].lstrip("/"): c["State"] for c in stack.containers()}
    assert set(states.values()) == {"exited"}


def test_abort_on_container_failure(stack):
    stack.write("""
services:
  bad:
    image: busybox
    command: ["sh", "-c", "sleep 0.5; exit 2"]
  server:
    image: busybox
    command: ["sleep", "300"]
""")
    # the failing service is not even attached: its exit still aborts the stack
    proc = stack.run("up", "--abort-on-container-failure", "--no-attach", "bad", "--no-color", "-t", "1",
                     check=False)
    assert proc.returncode == 2
    assert stack.by_name()[f"{stack.name}-server-1"]["State"] == "exited"


def test_missing_image_with_pull_never_is_one_line(stack):
    stack.write("""
services:
  web:
    image: no-such-image:1
    command: ["true"]
""")
    proc = stack.run("up", "-d", "--pull", "never", check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == \
        "service 'web': image no-such-image:1 not found and pull policy is never"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def registry(tmp_path):
    """Debian's docker-registry on 127.0.0.1 (no Docker Hub here); stopped by PID."""
    exe = shutil.which("docker-registry")
    if exe is None:
        pytest.skip("docker-registry is not installed")
    port = _free_port()
    cfg = tmp_path / "registry.yml"
    cfg.write_text(json.dumps({"version": 0.1, "log": {"level": "error"},
                               "storage": {"filesystem": {"rootdirectory": str(tmp_path / "reg")}},
                               "http": {"addr": f"127.0.0.1:{port}"}}))
    proc = subprocess.Popen([exe, "serve", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2)
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.skip("docker-registry did not start")
            time.sleep(0.1)
    yield f"127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)


def test_push_then_pull_through_a_local_registry(stack, registry):
    ref = f"{registry}/{stack.name}/bb:1"
    client = stack.client()
    client.request("POST", "/images/busybox:latest/tag", params={"repo": ref.rsplit(":", 1)[0], "tag": "1"})
    stack.write(f"""
services:
  web:
    image: {ref}
    command: ["sleep", "300"]
""")
    try:
        stack.run("push")
        tags = json.loads(urllib.request.urlopen(f"http://{registry}/v2/{stack.name}/bb/tags/list").read())
        assert tags["tags"] == ["1"]
        client.image_remove(ref)
        stack.run("pull")
        assert ref in client.image_inspect(ref)["RepoTags"]
        client.image_remove(ref)
        stack.run("up", "-d")  # pulls what is missing
        assert stack.inspect(f"{stack.name}-web-1")["State"]["Running"]
    finally:
        stack.run("down", check=False)
        try:
            client.image_remove(ref)
        except Exception:
            pass


def test_secrets_and_configs_without_swarm(stack):
    (stack.dir / "pw.txt").write_text("s3cret\n")
    stack.write("""
services:
  app:
    image: busybox
    command: ["sleep", "300"]
    secrets: [pw, {source: tok, target: /opt/new/tok, mode: 0400, uid: "1000"}]
    configs: [cfg, {source: inline, target: /etc/inline.conf}]
secrets:
  pw: {file: ./pw.txt}
  tok: {environment: H8_TOKEN}
configs:
  cfg: {file: ./pw.txt}
  inline: {content: "hello"}
""")
    stack.env["H8_TOKEN"] = "abc"
    stack.run("up", "-d")
    out = stack.run("exec", "-T", "app", "sh", "-c",
                    "cat /run/secrets/pw /opt/new/tok /cfg /etc/inline.conf; echo; "
                    "stat -c '%a %u' /opt/new/tok /etc/inline.conf").stdout
    assert out == "s3cret\nabcs3cret\nhello\n400 1000\n444 0\n"
    # a file secret is a read-only bind mount
    assert stack.run("exec", "-T", "app", "sh", "-c", "echo x > /run/secrets/pw", check=False).returncode != 0


def test_post_start_and_pre_stop_hooks(stack):
    out = stack.dir / "out"
    out.mkdir()
    stack.write(f"""
services:
  app:
    image: busybox
    command: ["sleep", "300"]
    volumes: ["{out}:/out"]
    post_start:
      - command: ["sh", "-c", "echo started-as-$(id -u) > /tmp/hook"]
        user: app
    pre_stop:
      - command: ["sh", "-c", "echo stopping-$$X >> /out/log"]
        environment: {{X: "1"}}
""")
    stack.run("up", "-d")
    assert stack.run("exec", "-T", "app", "cat", "/tmp/hook").stdout == "started-as-1000\n"
    stack.run("stop")
    assert (out / "log").read_text() == "stopping-1\n"
    stack.run("start")
    stack.run("down")
    assert (out / "log").read_text() == "stopping-1\nstopping-1\n"


def test_failing_post_start_hook_fails_up(stack):
    stack.write("""
services:
  app:
    image: busybox
    command: ["sleep", "300"]
    post_start:
      - command: ["sh", "-c", "echo nope >&2; exit 3"]
""")
    proc = stack.run("up", "-d", check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        f"container {stack.name}-app-1: post_start hook 'sh -c echo nope >&2; exit 3' exited with code 3: nope")
