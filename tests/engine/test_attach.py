"""Attach through the Engine API: the hijacked stream (101 UPGRADED), attach before start,
stdin into the container, client half-close, docker CLI ``run`` (attached) and ``logs -f``."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess

import pytest

from tests.engine.test_logs import demux, joined

DOCKER = shutil.which("docker")
# set to name the network explicitly when NetworkMode "default" (what the docker CLI sends)
# is not the engine's business being tested
NETWORK_DEFAULT_BROKEN = False


def hijacked(engine, path: str, body: bytes = b"", upgrade: bool = True) -> tuple[socket.socket, bytes, bytes]:
    """POST ``path`` asking for an upgrade; returns (socket, response head, bytes after it)."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(60)
    s.connect(str(engine.socket))
    head = f"POST {path} HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\n" \
           f"Content-Length: {len(body)}\r\n"
    if upgrade:
        head += "Connection: Upgrade\r\nUpgrade: tcp\r\n"
    s.sendall(head.encode() + b"\r\n" + body)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        assert chunk, data
        data += chunk
    resp, _, rest = data.partition(b"\r\n\r\n")
    return s, resp, rest


def read_all(s: socket.socket, rest: bytes = b"") -> bytes:
    data = rest
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk


def test_attach_before_start_loses_nothing_and_ends_at_exit(api, busybox_engine, unique_name) -> None:
    cid = api.create(["sh", "-c", "echo first; echo second >&2; echo third"], name=unique_name)
    s, head, rest = hijacked(busybox_engine, f"/containers/{cid}/attach?stream=1&stdout=1&stderr=1")
    assert head.startswith(b"HTTP/1.1 101 ")
    assert b"Upgrade: tcp" in head and b"application/vnd.docker.multiplexed-stream" in head
    s.shutdown(socket.SHUT_WR)  # what the docker CLI does when it has no stdin to send
    assert api.post(f"/containers/{cid}/start")[0] == 204
    raw = read_all(s, rest)
    s.close()
    assert joined(raw, 1) == b"first\nthird\n" and joined(raw, 2) == b"second\n"


def test_attach_without_upgrade_and_logs_replay(api, busybox_engine, unique_name) -> None:
    cid = api.run(["sh", "-c", "echo before; sleep 0.5; echo after"], name=unique_name)
    import time
    time.sleep(0.25)
    s, head, rest = hijacked(busybox_engine, f"/containers/{cid}/attach?stream=1&logs=1&stdout=1",
                             upgrade=False)
    assert head.startswith(b"HTTP/1.1 200 ")
    raw = read_all(s, rest)
    s.close()
    assert joined(raw) == b"before\nafter\n"


def test_attach_stdin_reaches_the_container(api, busybox_engine, unique_name) -> None:
    cid = api.create(["sh", "-c", "read line; echo got:$line; read two; echo two:$two"], name=unique_name,
                     OpenStdin=True, AttachStdin=True)
    s, head, rest = hijacked(busybox_engine, f"/containers/{cid}/attach?stream=1&stdin=1&stdout=1&stderr=1")
    assert head.startswith(b"HTTP/1.1 101 ")
    assert api.post(f"/containers/{cid}/start")[0] == 204
    s.sendall(b"hello\n")
    s.sendall(b"world\n")
    raw = read_all(s, rest)
    s.close()
    assert joined(raw, 1) == b"got:hello\ntwo:world\n"
    assert api.wait(cid)["StatusCode"] == 0


def test_interactive_prompt_without_newline_arrives(api, busybox_engine, unique_name) -> None:
    cid = api.create(["sh", "-c", "printf 'name? '; read n; echo hi $n"], name=unique_name,
                     OpenStdin=True, StdinOnce=True, AttachStdin=True)
    s, head, rest = hijacked(busybox_engine, f"/containers/{cid}/attach?stream=1&stdin=1&stdout=1")
    api.post(f"/containers/{cid}/start")
    data = rest
    while b"name? " not in data:  # before any input: the prompt alone
        chunk = s.recv(4096)
        assert chunk, data
        data += chunk
    s.sendall(b"bob\n")
    s.shutdown(socket.SHUT_WR)
    data = read_all(s, data)
    s.close()
    assert joined(data, 1) == b"name? hi bob\n"


def test_attach_tty_is_raw(api, busybox_engine, unique_name) -> None:
    cid = api.create(["sh", "-c", "echo tty-out"], name=unique_name, Tty=True)
    s, head, rest = hijacked(busybox_engine, f"/containers/{cid}/attach?stream=1&stdout=1&stderr=1")
    assert b"application/vnd.docker.raw-stream" in head
    api.post(f"/containers/{cid}/start")
    raw = read_all(s, rest)
    s.close()
    assert raw.replace(b"\r\n", b"\n") == b"tty-out\n"


def test_attach_errors(api, unique_name) -> None:
    assert api.post("/containers/nope/attach?stream=1&stdout=1")[0] == 404
    cid = api.create(["true"], name=unique_name)
    status, body = api.post(f"/containers/{cid}/attach?stdout=1")
    assert status == 400 and "stream or logs" in body["message"]


def test_docker_py_attach_socket(busybox_engine, unique_name) -> None:
    client = busybox_engine.client()
    c = client.containers.create("busybox", ["sh", "-c", "echo via-docker-py"], name=unique_name)
    stream = c.attach(stdout=True, stderr=True, stream=True)
    c.start()
    assert b"".join(stream) == b"via-docker-py\n"
    assert c.wait()["StatusCode"] == 0
    assert c.attach(stdout=True, stderr=True, logs=True, stream=False) == b"via-docker-py\n"
    sock = c.attach_socket(params={"stdout": 1, "logs": 1})
    raw = b""
    while True:
        chunk = sock._sock.recv(4096)
        if not chunk:
            break
        raw += chunk
    sock.close()
    assert joined(raw, 1) == b"via-docker-py\n"
    c.remove()
    client.close()


@pytest.fixture
def docker_cli(busybox_engine):
    if DOCKER is None:
        pytest.skip("the docker CLI is not installed (apt-get install docker.io; .ci/run installs it)")
    env = {**os.environ, "DOCKER_HOST": busybox_engine.url, "DOCKER_CONFIG": str(busybox_engine.base / "dockercfg")}
    env.pop("DOCKER_CONTEXT", None)

    def run(*args: str, input: bytes | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        if args[0] in ("run", "create") and NETWORK_DEFAULT_BROKEN:
            args = (args[0], "--network", "bridge", *args[1:])
        return subprocess.run([DOCKER, *args], env=env, input=input, capture_output=True, timeout=timeout)
    return run


def test_docker_cli_run_attached_and_logs_follow(docker_cli, unique_name) -> None:
    out = docker_cli("run", "--rm", "busybox", "echo", "hi")
    assert out.returncode == 0, out.stderr
    assert out.stdout == b"hi\n"
    out = docker_cli("run", "--name", unique_name, "busybox", "sh", "-c", "echo o; echo e >&2; exit 3")
    assert out.returncode == 3 and out.stdout == b"o\n" and out.stderr == b"e\n"
    out = docker_cli("run", "-d", "--name", unique_name + "f", "busybox", "sh", "-c",
                     "for i in 1 2 3; do echo f$i; sleep 0.2; done")
    assert out.returncode == 0, out.stderr
    out = docker_cli("logs", "-f", unique_name + "f")
    assert out.returncode == 0 and out.stdout == b"f1\nf2\nf3\n"
    out = docker_cli("logs", "--tail", "1", unique_name + "f")
    assert out.stdout == b"f3\n"
    out = docker_cli("run", "-i", "--rm", "busybox", "sh", "-c", "read x; echo in:$x", input=b"piped\n")
    assert out.returncode == 0, out.stderr
    assert out.stdout == b"in:piped\n"
    assert json.loads(docker_cli("inspect", unique_name).stdout)[0]["State"]["ExitCode"] == 3


def test_attach_tty_stdin_and_resize(api, busybox_engine, unique_name) -> None:
    cid = api.create(["sh", "-c", "read x; echo got:$x; sleep 0.6; stty size"], name=unique_name,
                     Tty=True, OpenStdin=True, AttachStdin=True)
    s, head, rest = hijacked(busybox_engine, f"/containers/{cid}/attach?stream=1&stdin=1&stdout=1&stderr=1")
    assert head.startswith(b"HTTP/1.1 101 ")
    assert api.post(f"/containers/{cid}/start")[0] == 204
    s.sendall(b"typed\r")
    import time
    data = rest
    while b"got:typed" not in data:
        chunk = s.recv(4096)
        assert chunk, data
        data += chunk
    assert api.post(f"/containers/{cid}/resize?h=41&w=123")[0] == 200
    data = read_all(s, data)
    s.close()
    assert b"41 123" in data
    assert api.post(f"/containers/{cid}/resize?h=1&w=1")[0] == 409  # exited
    assert api.post(f"/containers/{cid}/resize?h=a&w=1")[0] == 400


def test_docker_cli_run_it_on_a_pty(docker_cli, busybox_engine, unique_name) -> None:
    import pty
    import select
    import time
    env = {**os.environ, "DOCKER_HOST": busybox_engine.url, "DOCKER_CONFIG": str(busybox_engine.base / "dockercfg")}
    args = [DOCKER, "run", "-it", "--rm", "--name", unique_name]
    if NETWORK_DEFAULT_BROKEN:
        args += ["--network", "bridge"]
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(DOCKER, args + ["busybox", "sh"], env)
    out = b""

    def expect(token: bytes, timeout: float = 30) -> None:
        nonlocal out
        deadline = time.monotonic() + timeout
        while token not in out:
            r, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            assert r, f"timed out waiting for {token!r}: {out!r}"
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                chunk = b""
            assert chunk, f"EOF waiting for {token!r}: {out!r}"
            out += chunk
    try:
        expect(b"# ")
        os.write(fd, b"echo $((6*7))\r")
        expect(b"42")
        os.write(fd, b"exit 3\r")
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 3
    finally:
        try:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(fd)


def test_stdin_once_gives_the_container_eof(api, busybox_engine, unique_name) -> None:
    cid = api.create(["sh", "-c", "cat; echo END"], name=unique_name, OpenStdin=True, StdinOnce=True,
                     AttachStdin=True)
    s, head, rest = hijacked(busybox_engine, f"/containers/{cid}/attach?stream=1&stdin=1&stdout=1")
    assert api.post(f"/containers/{cid}/start")[0] == 204
    s.sendall(b"piped data\n")
    s.shutdown(socket.SHUT_WR)  # end of the client's stdin: cat must see EOF
    raw = read_all(s, rest)
    s.close()
    assert joined(raw, 1) == b"piped data\nEND\n"
    assert api.wait(cid)["StatusCode"] == 0


def test_docker_cli_run_i_with_piped_input(docker_cli, unique_name) -> None:
    out = docker_cli("run", "-i", "--rm", "busybox", "sh", "-c", "wc -l; echo done", input=b"a\nb\nc\n")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [b"3", b"done"]


def test_detach_keys(api, busybox_engine, unique_name) -> None:
    from pystack.engine import hijack
    assert hijack.parse_detach_keys("ctrl-p,ctrl-q") == b"\x10\x11"
    assert hijack.parse_detach_keys("a,ctrl-[") == b"a\x1b"
    with pytest.raises(ValueError):
        hijack.parse_detach_keys("ctrl-1")
    sc = hijack.DetachScanner(b"\x10\x11")
    assert sc.feed(b"ab\x10") == (b"ab", False) and sc.feed(b"x") == (b"\x10x", False)
    assert sc.feed(b"\x10") == (b"", False) and sc.feed(b"\x11rest") == (b"", True)
    cid = api.run(["sh"], name=unique_name, Tty=True, OpenStdin=True, AttachStdin=True)
    s, head, rest = hijacked(busybox_engine, f"/containers/{cid}/attach?stream=1&stdin=1&stdout=1")
    s.sendall(b"echo $((40+2))\r")
    data = rest
    while b"42" not in data:
        chunk = s.recv(4096)
        assert chunk, data
        data += chunk
    s.sendall(b"\x10\x11")  # ctrl-p ctrl-q: the engine ends the session, the shell goes on
    read_all(s)
    s.close()
    assert api.inspect(cid)["State"]["Running"] is True
    status, body = api.post(f"/containers/{cid}/attach?stream=1&stdin=1&detachKeys=ctrl-1")
    assert status == 400 and "Invalid detach keys" in body["message"]
    api.post(f"/containers/{cid}/kill")
