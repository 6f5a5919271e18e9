"""End to end: run, exec, logs -f, attached up with Ctrl-C, down, and the day-to-day commands."""
from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import subprocess
import termios
import time

from pystack.compose.stopping import effective_timeout

SLEEPER = """
services:
  web:
    image: busybox
    command: ["sleep", "300"]
"""


def read_until(fd: int, needle: bytes, timeout: float = 30.0) -> bytes:
    """Read from ``fd`` until ``needle`` shows up (a functional deadline, not a timing assert)."""
    buf = b""
    deadline = time.monotonic() + timeout
    while needle not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{needle!r} not seen; got {buf[-2000:]!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                raise AssertionError(f"stream closed before {needle!r}; got {buf[-2000:]!r}")
            buf += chunk
    return buf


def test_run_rm_one_off(stack):
    stack.write("""
services:
  db: {image: busybox, command: ["sleep", "300"]}
  tool:
    image: busybox
    command: ["echo", "default"]
    environment: {GREETING: hello}
    depends_on: [db]
""")
    proc = stack.run("run", "--rm", "-T", "tool", "sh", "-c", 'echo "$GREETING $EXTRA"; exit 7',
                     "-e", "EXTRA=x", check=False)
    # flags after the command belong to the command, like Docker Compose
    assert proc.returncode == 7
    assert proc.stdout == "hello \n"
    proc = stack.run("run", "--rm", "-T", "-e", "EXTRA=there", "tool", "sh", "-c", 'echo "$GREETING $EXTRA"')
    assert proc.stdout == "hello there\n"
    names = stack.by_name()
    # the dependency was started; no one-off container is left
    assert list(names) == [f"{stack.name}-db-1"]
    assert names[f"{stack.name}-db-1"]["State"] == "running"
    # without --rm the one-off stays, labelled as one
    stack.run("run", "-T", "--no-deps", "tool")
    oneoffs = [c for c in stack.containers() if c["Labels"]["com.docker.compose.oneoff"] == "True"]
    assert len(oneoffs) == 1
    assert oneoffs[0]["Names"][0].startswith(f"/{stack.name}-tool-run-")
    assert oneoffs[0]["Labels"]["com.docker.compose.slug"]


def test_exec_exit_codes_env_user_workdir(stack):
    stack.write(SLEEPER)
    stack.run("up", "-d")
    assert stack.run("exec", "-T", "web", "true").returncode == 0
    assert stack.run("exec", "-T", "web", "sh", "-c", "exit 42", check=False).returncode == 42
    out = stack.run("exec", "-T", "-e", "A=1", "-u", "app", "-w", "/tmp", "web",
                    "sh", "-c", 'echo "$A $(id -u) $(pwd)"').stdout
    assert out == "1 1000 /tmp\n"
    assert stack.run("exec", "-T", "web", "cat", input="via stdin\n").stdout == "via stdin\n"
    assert stack.run("run", "--rm", "-T", "web", "sh", "-c", "cat; exit 9", input="piped\n",
                     check=False).stdout == "piped\n"
    err = stack.run("exec", "-T", "web", "sh", "-c", "echo oops >&2; exit 1", check=False)
    assert err.returncode == 1 and "oops" in err.stderr
    missing = stack.run("exec", "-T", "web", "no-such-binary", check=False)
    assert missing.returncode != 0
    stack.run("stop", "web")
    stopped = stack.run("exec", "-T", "web", "true", check=False)
    assert stopped.returncode == 1
    assert stopped.stderr.strip() == 'service "web" is not running'


def test_logs_follow_across_a_restart(stack):
    stack.write("""
services:
  talker:
    image: busybox
    command: ["sh", "-c", "echo boot-$(cat /proc/uptime | cut -d' ' -f1); exec sleep 300"]
""")
    stack.run("up", "-d")
    master, slave = pty.openpty()
    follower = stack.popen("logs", "-f", "--no-color", stdout=slave, stderr=subprocess.STDOUT,
                           stdin=subprocess.DEVNULL)
    os.close(slave)
    try:
        first = read_until(master, b"boot-")
        assert b"talker-1  | boot-" in first
        stack.run("restart", "-t", "1", "talker")
        second = read_until(master, b"boot-", 30)
        assert b"talker-1  | boot-" in second
        assert follower.poll() is None  # still following after the restart
    finally:
        follower.terminate()
        follower.wait(timeout=10)
        os.close(master)
    logs = stack.run("logs", "--no-log-prefix", "talker").stdout.split()
    assert len([line for line in logs if line.startswith("boot-")]) == 2
    tail = stack.run("logs", "--no-log-prefix", "--tail", "1", "talker").stdout.split()
    assert tail == [logs[-1]]
    assert stack.run("logs", "--no-log-prefix", "--since", "1h", "talker").stdout.split() == logs
    assert stack.run("logs", "--no-log-prefix", "--until", "2000-01-01T00:00:00Z", "talker").stdout == ""
    stamped = stack.run("logs", "-t", "--no-color", "talker").stdout.splitlines()
    assert stamped[0].startswith("talker-1  | 20") and "Z boot-" in stamped[0]


def _spawn_in_pty(stack, *args):
    """Run pystack with a pty as its controlling terminal, so that ^C is a real SIGINT."""
    master, slave = pty.openpty()

    def ctty() -> None:
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = stack.popen(*args, stdin=slave, stdout=slave, stderr=slave, preexec_fn=ctty)
    os.close(slave)
    return proc, master


def test_attached_up_streams_logs_and_ctrl_c_stops(stack):
    stack.write("""
services:
  web:
    image: busybox
    command: ["sh", "-c", "trap 'echo bye; exit 0' TERM; echo web-ready; while :; do sleep 0.1; done"]
  worker:
    image: busybox
    command: ["sh", "-c", "echo worker-ready; exec sleep 300"]
""")
    proc, master = _spawn_in_pty(stack, "up", "--no-color")
    try:
        out = read_until(master, b"web-ready")
        out += read_until(master, b"worker-ready") if b"worker-ready" not in out else b""
        assert b"web-1     | web-ready" in out
        assert b"worker-1  | worker-ready" in out
        os.write(master, b"\x03")  # Ctrl-C through the terminal
        out = read_until(master, b"Gracefully stopping")
        code = proc.wait(timeout=60)
        rest = b""
        while True:
            r, _, _ = select.select([master], [], [], 0.2)
            if not r:
                break
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            rest += chunk
        assert code == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    states = {n: c["State"] for n, c in stack.by_name().items()}
    # stopped, not removed
    assert states == {f"{stack.name}-web-1": "exited", f"{stack.name}-worker-1": "exited"}
    assert stack.inspect(f"{stack.name}-web-1")["State"]["ExitCode"] == 0  # its trap ran


def test_attached_up_exit_code_from(stack):
    stack.write("""
services:
  job:
    image: busybox
    command: ["sh", "-c", "echo working; exit 5"]
  server:
    image: busybox
    command: ["sleep", "300"]
""")
    proc = stack.run("up", "--exit-code-from", "job", "--no-color", "-t", "1", check=False)
    assert proc.returncode == 5
    assert "job-1     | working" in proc.stdout
    assert "job-1 exited with code 5" in proc.stdout
    assert stack.by_name()[f"{stack.name}-server-1"]["State"] == "exited"


def kernel_traces(engine, container_ids: list[str], network_ids: list[str]) -> list[str]:
    """What the engine put in the kernel for these containers and networks, if still there.

    Scoped to this engine's own objects (other areas' tests run at the same time). dockerd:
    bridges ``br-<12 of network id>``, cgroups ``<controller>/docker/<id>``; pystackd
    (docs/contracts.md): bridges ``psbr-<8>``, cgroups ``<controller>/pystack/<id>``,
    netns ``<run>/netns/<id>``; both: mounts naming a container id. (dockerd's own sandbox
    netns files are garbage-collected by dockerd a minute later: not checked.)
    """
    from pathlib import Path

    pystackd = getattr(engine, "kind", "dockerd") == "pystackd"
    left = []
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    for nid in network_ids:
        bridge = f"psbr-{nid[:8]}" if pystackd else f"br-{nid[:12]}"
        if bridge in links:
            left.append(f"bridge {bridge}")
    mounts = Path("/proc/self/mounts").read_text()
    parent = os.environ.get("PYSTACK_CGROUP_PARENT", "pystack") if pystackd else "docker"
    for cid in container_ids:
        if cid in mounts:
            left.append(f"mount of {cid[:12]}")
        left += [str(cg) for cg in Path("/sys/fs/cgroup").glob(f"*/{parent}/{cid}")]
        if pystackd and (engine.root / "run" / "netns" / cid).exists():
            left.append(f"netns {cid[:12]}")
    return left


def test_down_leaves_named_volumes_and_nothing_else(stack):
    stack.write("""
services:
  web:
    image: busybox
    command: ["sh", "-c", "echo hi > /data/f; exec httpd -f -p 8080"]
    ports: ["127.0.0.1::8080"]
    volumes: [data:/data, /anon]
    networks: [front, back]
  db:
    image: busybox
    command: ["sleep", "300"]
    networks: [back]
volumes:
  data: {}
networks:
  front: {}
  back: {}
""")
    stack.run("up", "-d")
    client = stack.client()
    label = f"com.docker.compose.project={stack.name}"
    assert len(client.networks(labels=[label])) == 2
    web = stack.inspect(f"{stack.name}-web-1")
    pid = web["State"]["Pid"]
    cids = [c["Id"] for c in stack.containers()]
    nids = [n["Id"] for n in client.networks(labels=[label])]
    assert kernel_traces(stack.engine, cids, nids) != []  # the check sees them while up
    anon = [m["Name"] for m in web["Mounts"] if m["Destination"] == "/anon"][0]
    stack.run("down")
    assert stack.containers() == []
    assert client.networks(labels=[label]) == []
    assert [v["Name"] for v in client.volumes(labels=[label])] == [f"{stack.name}_data"]
    assert not os.path.exists(f"/proc/{pid}")
    assert kernel_traces(stack.engine, cids, nids) == []  # no bridge, mount, cgroup
    # like Docker Compose, a plain down keeps anonymous volumes; down -v removes them
    # with the named ones
    assert anon in [v["Name"] for v in client.volumes()]
    client.volume_remove(anon)
    stack.run("up", "-d")
    anon = [m["Name"] for m in stack.inspect(f"{stack.name}-web-1")["Mounts"] if m["Destination"] == "/anon"][0]
    cids = [c["Id"] for c in stack.containers()]
    nids = [n["Id"] for n in client.networks(labels=[label])]
    stack.run("down", "-v")
    assert client.volumes(labels=[label]) == []
    assert anon not in [v["Name"] for v in client.volumes()]
    assert kernel_traces(stack.engine, cids, nids) == []


def test_down_from_labels_without_the_file(stack):
    stack.write(SLEEPER)
    stack.run("up", "-d")
    (stack.dir / "compose.yaml").unlink()
    stack.run("down")
    assert stack.containers() == []


def test_stop_does_not_wait_for_a_pid1_without_handler(stack):
    stack.write("""
services:
  plain:
    image: busybox
    command: ["sleep", "300"]
  handler:
    image: busybox
    command: ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done"]
  custom:
    image: busybox
    command: ["sh", "-c", "trap 'exit 0' USR1; while :; do sleep 0.1; done"]
    stop_signal: SIGUSR1
""")
    stack.run("up", "-d")
    time.sleep(0.3)  # let the shells install their traps (not a timing assert)
    plain = stack.inspect(f"{stack.name}-plain-1")
    handler = stack.inspect(f"{stack.name}-handler-1")
    custom = stack.inspect(f"{stack.name}-custom-1")
    assert effective_timeout(plain, None) == 0       # sleep as PID 1 ignores SIGTERM
    assert effective_timeout(handler, None) is None  # a trap: give it its grace period
    assert effective_timeout(custom, 7) == 7         # catches its own stop signal
    stack.run("stop")
    assert stack.inspect(f"{stack.name}-handler-1")["State"]["ExitCode"] == 0  # stopped by its signal
    assert stack.inspect(f"{stack.name}-custom-1")["State"]["ExitCode"] == 0
    assert stack.inspect(f"{stack.name}-plain-1")["State"]["ExitCode"] == 137


def test_start_stop_restart_kill_pause_rm(stack):
    stack.write(SLEEPER)
    stack.run("up", "-d")
    name = f"{stack.name}-web-1"
    stack.run("pause")
    assert stack.inspect(name)["State"]["Paused"]
    stack.run("unpause")
    assert not stack.inspect(name)["State"]["Paused"]
    stack.run("kill", "-s", "SIGKILL")
    assert stack.inspect(name)["State"]["ExitCode"] == 137
    stack.run("start")
    assert stack.inspect(name)["State"]["Running"]
    started = stack.inspect(name)["State"]["StartedAt"]
    stack.run("restart")
    assert stack.inspect(name)["State"]["StartedAt"] != started
    stack.run("stop")
    stack.run("rm", "-f")
    assert stack.containers() == []


def test_top_images_ls_cp_events(stack, tmp_path):
    stack.write(SLEEPER)
    stack.run("up", "-d")
    top = stack.run("top").stdout.splitlines()
    assert top[0].split()[:2] == ["SERVICE", "#"]
    assert any(line.split()[:2] == ["web", "1"] and "sleep 300" in line for line in top[1:])
    images = json.loads(stack.run("images", "--format", "json").stdout)
    assert [(i["ContainerName"], i["Repository"], i["Tag"]) for i in images] == \
        [(f"{stack.name}-web-1", "busybox", "latest")]
    projects = json.loads(stack.run("ls", "--format", "json").stdout)
    mine = [p for p in projects if p["Name"] == stack.name]
    assert mine == [{"Name": stack.name, "Status": "running(1)",
                     "ConfigFiles": str(stack.dir / "compose.yaml")}]
    src = tmp_path / "payload.txt"
    src.write_text("copied in\n")
    stack.run("cp", str(src), "web:/tmp/")
    assert stack.run("exec", "-T", "web", "cat", "/tmp/payload.txt").stdout == "copied in\n"
    back = tmp_path / "back.txt"
    stack.run("cp", "web:/tmp/payload.txt", str(back))
    assert back.read_text() == "copied in\n"
    before = time.time() - 1
    stack.run("kill", "-s", "SIGKILL")
    # --since replays the kill: no race with the subscription
    events = stack.popen("events", "--json", "--since", f"{before:.3f}", stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    try:
        out = read_until(events.stdout.fileno(), b'"action": "kill"')
        line = [ln for ln in out.splitlines() if b'"action": "kill"' in ln][0]
        ev = json.loads(line)
        assert ev["action"] == "kill" and ev["service"] == "web" and ev["type"] == "container"
        assert ev["attributes"]["name"] == f"{stack.name}-web-1"
        assert ev["attributes"]["signal"] == "9"
    finally:
        events.terminate()
        events.wait(timeout=10)


def test_attached_up_second_ctrl_c_kills(stack):
    stack.write("""
services:
  stubborn:
    image: busybox
    command: ["sh", "-c", "trap 'echo not-yet' TERM; echo up-now; while :; do sleep 0.1; done"]
    stop_grace_period: 60s
""")
    proc, master = _spawn_in_pty(stack, "up", "--no-color")
    try:
        read_until(master, b"up-now")
        os.write(master, b"\x03")
        read_until(master, b"Gracefully stopping")
        read_until(master, b"not-yet")  # the container got SIGTERM and ignored it
        os.write(master, b"\x03")       # second Ctrl-C: kill instead of waiting 60 s
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    assert code == 2
    state = stack.inspect(f"{stack.name}-stubborn-1")["State"]
    assert state["Status"] == "exited" and state["ExitCode"] == 137


def test_restart_also_restarts_dependents_that_asked(stack):
    stack.write("""
services:
  db: {image: busybox, command: ["sleep", "300"]}
  app:
    image: busybox
    command: ["sleep", "300"]
    depends_on: {db: {condition: service_started, restart: true}}
  other:
    image: busybox
    command: ["sleep", "300"]
    depends_on: [db]
""")
    stack.run("up", "-d")
    before = {n: stack.inspect(f"{stack.name}-{n}-1")["State"]["StartedAt"] for n in ("db", "app", "other")}
    stack.run("restart", "db")
    after = {n: stack.inspect(f"{stack.name}-{n}-1")["State"]["StartedAt"] for n in ("db", "app", "other")}
    assert after["db"] != before["db"] and after["app"] != before["app"]
    assert after["other"] == before["other"]
    stack.run("restart", "--no-deps", "db")
    assert stack.inspect(f"{stack.name}-app-1")["State"]["StartedAt"] == after["app"]
