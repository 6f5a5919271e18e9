"""Exec through the Engine API: create/start/inspect/resize, exit codes, env, user, workdir,
stdin, tty (with resize), detach; docker-py's exec_run and ``docker exec -it`` on a pty."""
from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import time

import pytest

from tests.engine.test_attach import DOCKER, hijacked, read_all
from tests.engine.test_logs import joined


def _sleeper(api, name: str, **config) -> str:
    return api.run(["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"], name=name, **config)


def _exec(engine, api, cid: str, cmd, *, stdin: bytes | None = None, tty: bool = False, **cfg) -> tuple[bytes, dict]:
    status, out = api.post(f"/containers/{cid}/exec", {"Cmd": cmd, "AttachStdout": True, "AttachStderr": True,
                                                        "AttachStdin": stdin is not None, "Tty": tty, **cfg})
    assert status == 201, out
    eid = out["Id"]
    s, head, rest = hijacked(engine, f"/exec/{eid}/start", json.dumps({"Detach": False, "Tty": tty}).encode())
    assert head.startswith(b"HTTP/1.1 101 "), head
    if stdin is not None:
        s.sendall(stdin)
    s.shutdown(1)
    raw = read_all(s, rest)
    s.close()
    status, info = api.get(f"/exec/{eid}/json")
    assert status == 200
    return raw, info


def test_exec_output_exit_code_env_user_workdir(api, busybox_engine, unique_name) -> None:
    cid = _sleeper(api, unique_name, Env=["FROM_CONTAINER=c", "OVERRIDE=old"])
    raw, info = _exec(busybox_engine, api, cid, ["sh", "-c", "echo out; echo err >&2; exit 5"])
    assert joined(raw, 1) == b"out\n" and joined(raw, 2) == b"err\n"
    assert info["ExitCode"] == 5 and info["Running"] is False and info["ContainerID"] == cid
    assert info["ProcessConfig"]["entrypoint"] == "sh" and info["ProcessConfig"]["arguments"][0] == "-c"
    raw, _ = _exec(busybox_engine, api, cid, ["sh", "-c", "echo $FROM_CONTAINER $OVERRIDE $EXTRA"],
                   Env=["OVERRIDE=new", "EXTRA=x"])
    assert joined(raw, 1) == b"c new x\n"
    raw, info = _exec(busybox_engine, api, cid, ["id"], User="app")
    assert joined(raw, 1).startswith(b"uid=1000(app) gid=1000(app)") and info["ExitCode"] == 0
    raw, _ = _exec(busybox_engine, api, cid, ["id", "-u"], User="33:100")
    assert joined(raw, 1) == b"33\n"
    raw, _ = _exec(busybox_engine, api, cid, ["pwd"], WorkingDir="/tmp")
    assert joined(raw, 1) == b"/tmp\n"
    raw, _ = _exec(busybox_engine, api, cid, ["sh", "-c", "read a; echo got $a; cat"], stdin=b"one\ntwo\n")
    assert joined(raw, 1) == b"got one\ntwo\n"


def test_exec_missing_or_unexecutable_program(api, busybox_engine, unique_name) -> None:
    cid = _sleeper(api, unique_name)
    raw, info = _exec(busybox_engine, api, cid, ["no-such-program"])
    assert info["ExitCode"] == 126 and info["Running"] is False
    text = joined(raw).decode()
    assert text.startswith("OCI runtime exec failed") and "no-such-program" in text
    raw, info = _exec(busybox_engine, api, cid, ["/etc/passwd"])
    assert info["ExitCode"] == 126


def test_exec_tty_and_resize(api, busybox_engine, unique_name) -> None:
    cid = _sleeper(api, unique_name)
    status, out = api.post(f"/containers/{cid}/exec", {"Cmd": ["sh", "-c", "sleep 0.5; stty size; tty"],
                                                        "AttachStdout": True, "Tty": True,
                                                        "ConsoleSize": [10, 20]})
    eid = out["Id"]
    s, head, rest = hijacked(busybox_engine, f"/exec/{eid}/start", b'{"Tty": true}')
    assert b"application/vnd.docker.raw-stream" in head
    assert api.post(f"/exec/{eid}/resize?h=33&w=101")[0] == 200
    raw = read_all(s, rest)
    s.close()
    lines = raw.replace(b"\r\n", b"\n").decode().splitlines()
    assert lines[0] == "33 101" and lines[1].startswith("/dev/pts/")
    _, info = api.get(f"/exec/{eid}/json")
    assert info["ExitCode"] == 0 and info["ProcessConfig"]["tty"] is True
    assert api.post(f"/exec/{eid}/resize?h=x&w=1")[0] == 400


def test_exec_unattached_streams_and_detached_tty(api, busybox_engine, unique_name) -> None:
    cid = _sleeper(api, unique_name)
    raw, info = _exec(busybox_engine, api, cid, ["sh", "-c", "echo o; echo e >&2"], AttachStdout=False)
    assert joined(raw, 1) == b"" and joined(raw, 2) == b"e\n" and info["ExitCode"] == 0
    # a detached exec with a terminal writing a lot must not block on a full pty
    _, out = api.post(f"/containers/{cid}/exec", {"Cmd": ["sh", "-c", "seq 1 20000; touch /tmp/done"], "Tty": True})
    assert api.post(f"/exec/{out['Id']}/start", {"Detach": True, "Tty": True})[0] == 200
    for _ in range(200):
        _, info = api.get(f"/exec/{out['Id']}/json")
        if info["ExitCode"] is not None:
            break
        time.sleep(0.05)
    assert info["ExitCode"] == 0


def test_exec_privileged_and_gone_with_its_container(api, busybox_engine, unique_name) -> None:
    cid = _sleeper(api, unique_name)
    cmd = ["sh", "-c", "grep CapEff /proc/self/status"]
    plain = int(joined(_exec(busybox_engine, api, cid, cmd)[0]).split()[1], 16)
    priv = int(joined(_exec(busybox_engine, api, cid, cmd, Privileged=True)[0]).split()[1], 16)
    CAP_SYS_ADMIN = 21
    assert not plain & (1 << CAP_SYS_ADMIN) and priv & (1 << CAP_SYS_ADMIN) and priv & plain == plain
    _, out = api.post(f"/containers/{cid}/exec", {"Cmd": ["true"]})
    assert api.delete(f"/containers/{cid}?force=1")[0] == 204
    status, body = api.get(f"/exec/{out['Id']}/json")
    assert status == 404 and "No such exec instance" in body["message"]


def test_exec_output_to_a_gone_client_ends_it(api, busybox_engine, unique_name) -> None:
    """A writer whose client dropped the connection gets SIGPIPE (as with Docker), and the
    instance records its exit."""
    cid = _sleeper(api, unique_name)
    _, out = api.post(f"/containers/{cid}/exec", {"Cmd": ["sh", "-c", "while true; do echo x; sleep 0.05; done"],
                                                   "AttachStdout": True})
    eid = out["Id"]
    s, head, rest = hijacked(busybox_engine, f"/exec/{eid}/start", b"{}")
    data = rest
    while b"x" not in data:
        data += s.recv(4096)
    s.close()
    for _ in range(200):
        _, info = api.get(f"/exec/{eid}/json")
        if not info["Running"]:
            break
        time.sleep(0.05)
    assert info["Running"] is False and info["ExitCode"] == 141  # 128 + SIGPIPE


def test_exec_detached_and_errors(api, busybox_engine, unique_name) -> None:
    cid = _sleeper(api, unique_name)
    status, out = api.post(f"/containers/{cid}/exec", {"Cmd": ["sh", "-c", "echo detached > /tmp/d"]})
    eid = out["Id"]
    status, _ = api.post(f"/exec/{eid}/start", {"Detach": True})
    assert status == 200
    for _ in range(100):
        _, info = api.get(f"/exec/{eid}/json")
        if not info["Running"] and info["ExitCode"] is not None:
            break
        time.sleep(0.05)
    assert info["ExitCode"] == 0 and info["Pid"] > 0
    raw, _ = _exec(busybox_engine, api, cid, ["cat", "/tmp/d"])
    assert joined(raw) == b"detached\n"
    status, body = api.post(f"/exec/{eid}/start", {"Detach": True})
    assert status == 409 and "already" in body["message"]
    assert api.post(f"/containers/{cid}/exec", {"Cmd": []})[0] == 400
    assert api.post(f"/containers/{cid}/exec", {"Cmd": ["true"], "WorkingDir": "rel"})[0] == 400
    status, body = api.get("/exec/nosuchexec/json")
    assert status == 404 and "No such exec instance" in body["message"]
    stopped = api.create(["true"], name=unique_name + "s")
    status, body = api.post(f"/containers/{stopped}/exec", {"Cmd": ["true"]})
    assert status == 409 and "is not running" in body["message"]


def test_docker_py_exec_run(busybox_engine, unique_name) -> None:
    client = busybox_engine.client()
    c = client.containers.run("busybox", ["sleep", "300"], detach=True, name=unique_name)
    res = c.exec_run(["sh", "-c", "echo a; echo b >&2; exit 3"])
    assert res.exit_code == 3 and res.output in (b"a\nb\n", b"b\na\n")
    res = c.exec_run(["sh", "-c", "echo a; echo b >&2"], demux=True)
    assert res.output == (b"a\n", b"b\n")
    res = c.exec_run("no-such-program")
    assert res.exit_code == 126 and b"no-such-program" in res.output
    res = c.exec_run(["sh", "-c", "echo $X; id -un"], environment={"X": "y"}, user="app", workdir="/tmp")
    assert res.output == b"y\napp\n"
    res = c.exec_run(["sh", "-c", "for i in 1 2 3; do echo $i; done"], stream=True)
    assert b"".join(res.output) == b"1\n2\n3\n"
    res = c.exec_run(["tty"], tty=True)
    assert res.output.startswith(b"/dev/pts/")
    c.remove(force=True)
    client.close()


@pytest.mark.skipif(DOCKER is None, reason="the docker CLI is not installed (.ci/run installs docker.io)")
def test_docker_cli_exec_it_on_a_pty(api, busybox_engine, unique_name) -> None:
    cid = _sleeper(api, unique_name)
    env = {**os.environ, "DOCKER_HOST": busybox_engine.url, "DOCKER_CONFIG": str(busybox_engine.base / "dockercfg")}
    pid, fd = pty.fork()
    if pid == 0:
        os.execvpe(DOCKER, [DOCKER, "exec", "-it", unique_name, "sh"], env)
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
        os.write(fd, b"echo $((6*7)); tty\r")
        expect(b"42")
        expect(b"/dev/pts/")
        os.write(fd, b"exit 4\r")
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 4
    finally:
        try:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(fd)
    r = subprocess.run([DOCKER, "exec", unique_name, "sh", "-c", "echo plain; exit 2"], env=env,
                       capture_output=True, timeout=60)
    assert r.returncode == 2 and r.stdout == b"plain\n"


def test_many_execs_and_streams_at_once(busybox_engine, unique_name) -> None:
    """Concurrent exec sessions, a follower and an attach on one container: each gets its own output."""
    import threading
    client = busybox_engine.client()
    c = client.containers.run("busybox", ["sh", "-c", "while true; do echo tick; sleep 0.1; done"],
                              detach=True, name=unique_name)
    follower = c.logs(stream=True, follow=True)
    results: dict[int, tuple[int, bytes]] = {}

    def one(i: int) -> None:
        res = c.exec_run(["sh", "-c", f"for j in 1 2 3; do echo {i}-$j; sleep 0.05; done; exit {i}"])
        results[i] = (res.exit_code, res.output)
    threads = [threading.Thread(target=one, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert {i: r for i, r in results.items()} == {i: (i, f"{i}-1\n{i}-2\n{i}-3\n".encode()) for i in range(12)}
    assert next(follower).startswith(b"tick")
    c.remove(force=True)
    rest = b"".join(follower)  # returns: the follow ends once the container is gone
    assert b"tick" in rest or rest == b""
    client.close()
