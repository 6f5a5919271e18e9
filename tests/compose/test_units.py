"""Unit tests of the compose front's pure parts: durations, create bodies, plans, framing."""
from __future__ import annotations

import io
import struct
from types import SimpleNamespace

import pytest

from pystack.compose.client import demux, split_ref
from pystack.compose.convert import build_spec, compose_labels, restart_policy
from pystack.compose.durations import nanos, seconds
from pystack.compose.hash import service_hash
from pystack.compose.logs import LogPrinter, parse_ts
from pystack.compose.plan import make_plan
from pystack.compose.project import ComposeProject
from pystack.compose.reconcile import UpOptions
from pystack.compose.state import Container
from pystack.compose.stopping import signal_number
from pystack.errors import UserError


def test_durations():
    assert seconds("1m30s") == 90
    assert seconds("500ms") == 0.5
    assert seconds("1h2m3.5s") == 3723.5
    assert seconds("10") == 10
    assert seconds(None, 7) == 7
    assert nanos("1s") == 1_000_000_000
    with pytest.raises(UserError):
        seconds("10 parsecs")


def test_signal_numbers():
    assert signal_number(None) == 15
    assert signal_number("SIGUSR1") == 10
    assert signal_number("KILL") == 9
    assert signal_number("2") == 2


def project(services: dict, **top) -> ComposeProject:
    cfg = {"name": "p", "services": services, **top}
    return ComposeProject(name="p", working_dir="/w", config_files=["/w/compose.yaml"], config=cfg)


RICH = {
    "image": "busybox", "command": ["sleep", "1"], "entrypoint": None,
    "environment": {"A": "1", "UNSET": None}, "user": "app", "working_dir": "/srv",
    "ports": [{"mode": "ingress", "host_ip": "127.0.0.1", "target": 80, "published": "8080",
               "protocol": "tcp"}],
    "expose": ["3000", "4000/udp"],
    "volumes": [
        {"type": "bind", "source": "/tmp/x", "target": "/x", "read_only": True, "bind": {"create_host_path": True}},
        {"type": "volume", "source": "data", "target": "/data", "volume": {}},
        {"type": "volume", "target": "/anon", "volume": {}},
        {"type": "tmpfs", "target": "/t", "tmpfs": {"size": "1000"}},
    ],
    "tmpfs": ["/run"],
    "healthcheck": {"test": ["CMD", "true"], "interval": "1s", "retries": 2},
    "restart": "on-failure:3", "stop_signal": "SIGUSR1", "stop_grace_period": "3s",
    "mem_limit": "67108864", "cpus": 0.25, "extra_hosts": ["h1=1.2.3.4"],
    "ulimits": {"nofile": {"soft": 100, "hard": 200}, "nproc": 50},
    "networks": {"back": None, "front": {"aliases": ["x1"], "ipv4_address": "10.212.3.5", "priority": 10}},
}


def test_create_body_matches_compose_shape():
    proj = project({"web": RICH}, volumes={"data": {"name": "p_data"}},
                   networks={"front": {"name": "p_front"}, "back": {"name": "p_back"}})
    labels = compose_labels(proj, "web", 1, "h", "sha256:i", RICH)
    spec = build_spec(proj, "web", RICH, name="p-web-1", labels=labels, containers={}, image="busybox")
    b, h = spec.body, spec.body["HostConfig"]
    assert b["Env"] == ["A=1"]
    assert b["Cmd"] == ["sleep", "1"] and "Entrypoint" not in b
    assert b["ExposedPorts"] == {"80/tcp": {}, "3000/tcp": {}, "4000/udp": {}}
    assert h["PortBindings"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]}
    assert h["Binds"] == ["/tmp/x:/x:ro"]
    assert h["Mounts"] == [{"Type": "volume", "Target": "/data", "ReadOnly": False, "Source": "p_data"},
                           {"Type": "volume", "Target": "/anon", "ReadOnly": False},
                           {"Type": "tmpfs", "Target": "/t", "ReadOnly": False, "TmpfsOptions": {"SizeBytes": 1000}}]
    assert h["Tmpfs"] == {"/run": ""}
    assert b["Healthcheck"] == {"Test": ["CMD", "true"], "Interval": 1_000_000_000, "Retries": 2}
    assert h["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert b["StopSignal"] == "SIGUSR1" and b["StopTimeout"] == 3
    assert h["Memory"] == 64 * 1024 * 1024 and h["NanoCpus"] == 250_000_000
    assert h["ExtraHosts"] == ["h1:1.2.3.4"]
    assert h["Ulimits"] == [{"Name": "nofile", "Soft": 100, "Hard": 200}, {"Name": "nproc", "Soft": 50, "Hard": 50}]
    # highest priority network at create time, the other connected before start
    assert h["NetworkMode"] == "p_front"
    assert b["NetworkingConfig"] == {"EndpointsConfig": {"p_front": {
        "Aliases": ["p-web-1", "web", "x1"], "IPAMConfig": {"IPv4Address": "10.212.3.5"}}}}
    assert spec.extra_networks == [("p_back", {"Aliases": ["p-web-1", "web"]})]
    assert b["Labels"]["com.docker.compose.project"] == "p"
    assert b["Labels"]["com.docker.compose.container-number"] == "1"
    assert b["Labels"]["com.docker.compose.oneoff"] == "False"


def test_one_off_publishes_nothing_and_has_only_its_name_as_alias():
    svc = dict(RICH, networks=None)
    proj = project({"web": svc})
    spec = build_spec(proj, "web", svc, name="p-web-run-1", labels={}, containers={}, image="busybox",
                      use_aliases=False, publish=False)
    assert spec.body["HostConfig"]["PortBindings"] == {}
    assert spec.body["NetworkingConfig"]["EndpointsConfig"]["p_default"]["Aliases"] == ["p-web-run-1"]


def test_service_references_resolve_to_container_ids():
    svc = {"image": "busybox", "network_mode": "service:db", "volumes_from": ["db:ro"]}
    proj = project({"app": svc})
    spec = build_spec(proj, "app", svc, name="p-app-1", labels={}, containers={"db": "abc"}, image="busybox")
    assert spec.body["HostConfig"]["NetworkMode"] == "container:abc"
    assert spec.body["HostConfig"]["VolumesFrom"] == ["abc:ro"]
    # the hash follows the parent's container id, so recreating db recreates app
    assert service_hash(svc, {"db": "abc"}) != service_hash(svc, {"db": "def"})
    assert service_hash(svc, {"db": "abc"}) == service_hash(dict(svc, depends_on={"db": {}}), {"db": "abc"})


def test_restart_policies():
    assert restart_policy({}) == {"Name": "", "MaximumRetryCount": 0}
    assert restart_policy({"restart": "unless-stopped"})["Name"] == "unless-stopped"
    assert restart_policy({"deploy": {"restart_policy": {"condition": "any"}}})["Name"] == "always"


def container(service: str, number: int, state: str = "running", digest: str = "", image: str = "i") -> Container:
    return Container({"Id": f"{service}{number}" + "0" * 60, "Names": [f"/p-{service}-{number}"], "State": state,
                      "Labels": {"com.docker.compose.service": service,
                                 "com.docker.compose.container-number": str(number),
                                 "com.docker.compose.config-hash": digest,
                                 "com.docker.compose.image": image}})


def test_plan_scale_recreate_start():
    web = {"image": "busybox", "command": ["a"]}
    db = {"image": "busybox"}
    proj = project({"web": web, "db": db})
    h_web, h_db = service_hash(web), service_hash(db)
    current = {"web": [container("web", n, digest=h_web) for n in (1, 2, 3)],
               "db": [container("db", 1, "exited", digest="stale")]}
    plans = make_plan(proj, ["db", "web"], current, {"web": "i", "db": "i"}, UpOptions(scale={"web": 1}))
    assert [c.number for c in plans["web"].remove] == [2, 3]
    assert [c.number for c in plans["web"].keep] == [1]
    assert [c.number for c in plans["db"].recreate] == [1]
    plans = make_plan(proj, ["web"], {"web": [container("web", 1, "exited", digest=h_web)]},
                      {"web": "i"}, UpOptions(scale={"web": 3}))
    assert [c.number for c in plans["web"].start] == [1]
    assert plans["web"].create == [2, 3]
    # a new image recreates; --no-recreate keeps
    cur = {"db": [container("db", 1, digest=h_db, image="old")]}
    assert plans_of(proj, cur, UpOptions())["db"].recreate
    assert not plans_of(proj, cur, UpOptions(no_recreate=True))["db"].recreate
    with pytest.raises(UserError, match="container_name"):
        make_plan(project({"x": {"image": "b", "container_name": "fixed"}}), ["x"], {}, {"x": "i"},
                  UpOptions(scale={"x": 2}))


def plans_of(proj, current, opts):
    return make_plan(proj, ["db"], current, {"db": "i"}, opts)


def test_plan_restarts_dependents_that_asked_for_it():
    db = {"image": "busybox", "environment": {"V": "2"}}
    app = {"image": "busybox", "depends_on": {"db": {"condition": "service_started", "restart": True}}}
    other = {"image": "busybox", "depends_on": {"db": {"condition": "service_started"}}}
    proj = project({"db": db, "app": app, "other": other})
    current = {"db": [container("db", 1, digest="old")],
               "app": [container("app", 1, digest=service_hash(app))],
               "other": [container("other", 1, digest=service_hash(other))]}
    plans = make_plan(proj, ["db", "app", "other"], current, {s: "i" for s in current}, UpOptions())
    assert plans["db"].recreate and [c.service for c in plans["app"].restart] == ["app"]
    assert plans["other"].restart == [] and plans["other"].keep


def test_demux_frames():
    raw = b"".join(struct.pack(">BxxxI", s, len(p)) + p for s, p in ((1, b"out\n"), (2, b"err\n"), (1, b"")))
    assert list(demux(io.BytesIO(raw).read)) == [(1, b"out\n"), (2, b"err\n"), (1, b"")]
    assert list(demux(io.BytesIO(raw[:10]).read)) == [(1, b"ou")]


def test_split_ref():
    assert split_ref("busybox") == ("busybox", "latest")
    assert split_ref("localhost:5000/a/b:1.2") == ("localhost:5000/a/b", "1.2")
    assert split_ref("localhost:5000/a") == ("localhost:5000/a", "latest")


def test_log_prefixes_and_timestamps():
    out = io.StringIO()
    printer = LogPrinter(out, color=False, width=9)
    printer.line("web-1", "hello")
    printer.line("worker-1", "hi")
    assert out.getvalue() == "web-1     | hello\nworker-1  | hi\n"
    colored = io.StringIO()
    LogPrinter(colored, color=True).line("web-1", "x")
    assert colored.getvalue().startswith("\x1b[36mweb-1  | \x1b[0m")
    assert parse_ts("1970-01-01T00:00:01.5Z") == (1, 500_000_000)
    assert parse_ts("2026-11-28T04:23:52.674493533Z") > parse_ts("2026-11-28T04:23:52.67449353Z")


def test_compose_labels_depends_on():
    svc = {"depends_on": {"db": {"condition": "service_healthy", "restart": True}, "x": {}}}
    proj = SimpleNamespace(name="p", working_dir="/w", config_files=["/w/a.yaml", "/w/b.yaml"], env_files=[])
    labels = compose_labels(proj, "web", None, "h", "i", svc, oneoff=True, slug="s")
    assert labels["com.docker.compose.depends_on"] == "db:service_healthy:true,x:service_started:false"
    assert labels["com.docker.compose.project.config_files"] == "/w/a.yaml,/w/b.yaml"
    assert "com.docker.compose.container-number" not in labels
    assert labels["com.docker.compose.oneoff"] == "True" and labels["com.docker.compose.slug"] == "s"


def _serve_once(path: str, responses: list[bytes], seen: list[bytes]) -> None:
    """A UNIX socket server answering one connection with canned HTTP responses, in order."""
    import socket
    import threading

    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)

    def run() -> None:
        conn, _ = srv.accept()
        buf = b""
        for resp in responses:
            while b"\r\n\r\n" not in buf:
                buf += conn.recv(65536)
            head, _, buf = buf.partition(b"\r\n\r\n")
            length = [int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")]
            while len(buf) < (length[0] if length else 0):
                buf += conn.recv(65536)
            buf = buf[length[0]:] if length else buf
            seen.append(head)
            conn.sendall(resp)
        conn.close()
        srv.close()

    threading.Thread(target=run, daemon=True).start()


def test_wire_keep_alive_chunked_and_errors(tmp_path):
    from pystack.compose.client import EngineClient
    from pystack.errors import NotFound

    path = str(tmp_path / "engine.sock")
    seen: list[bytes] = []
    _serve_once(path, [
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"a\": [1]}\n",
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"4\r\n{\"b\"\r\n4\r\n: 2}\r\n0\r\n\r\n",
        b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 30\r\n\r\n"
        b"{\"message\": \"no such thing x\"}",
    ], seen)
    client = EngineClient(path)
    assert client.request("GET", "/one") == {"a": [1]}
    assert client.request("POST", "/two", body={"k": "v"}) == {"b": 2}
    with pytest.raises(NotFound, match="no such thing x"):
        client.request("DELETE", "/three", params={"force": True, "filters": {"label": ["x=y"]}})
    # all three on one kept-alive connection, versioned paths, encoded parameters
    assert [h.split(b"\r\n")[0] for h in seen] == [
        b"GET /v1.41/one HTTP/1.1", b"POST /v1.41/two HTTP/1.1",
        b"DELETE /v1.41/three?force=1&filters=%7B%22label%22%3A+%5B%22x%3Dy%22%5D%7D HTTP/1.1"]


def test_wire_streams_json_lines(tmp_path):
    from pystack.compose.client import EngineClient

    path = str(tmp_path / "engine.sock")
    body = b'{"status": "a"}\n{"status": "b"}\n{"error": "c"}\n'
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 7]), body[i:i + 7]) for i in range(0, len(body), 7))
    _serve_once(path, [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"], [])
    assert [m for m in EngineClient(path).json_stream("POST", "/images/create")] == \
        [{"status": "a"}, {"status": "b"}, {"error": "c"}]


@pytest.mark.parametrize("command", [["ps"], ["up", "-d"], ["logs"], ["down"]])
def test_commands_import_only_what_they_use(tmp_path, command):
    """The CLI must stay light: no docker-py, http.client, rich, pydantic, networkx or aiohttp."""
    import subprocess
    import sys

    (tmp_path / "compose.yaml").write_text("services:\n  web:\n    image: busybox\n")
    code = (
        "import sys\n"
        "from pystack.cli import main\n"
        f"sys.argv = ['pystack', *{command!r}]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = {'docker', 'http', 'rich', 'pydantic', 'networkx', 'aiohttp', 'ssl', 'email'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n")
    env = {"PATH": "/usr/bin:/bin", "PYSTACK_HOST": f"unix://{tmp_path}/none.sock"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert "cannot reach the engine" in proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"
