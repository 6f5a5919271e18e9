"""Container lifecycle through the Engine API of a private pystackd: real containers."""
from __future__ import annotations

import json
import os
import time

import pytest


def test_create_start_wait_logs_inspect_remove(api, busybox_engine, unique_name) -> None:
    cid = api.run(["sh", "-c", "echo hello; echo oops >&2; exit 3"], name=unique_name,
                  Labels={"com.example.t": unique_name})
    assert api.wait(cid) == {"StatusCode": 3, "Error": None}
    ins = api.inspect(unique_name)
    assert ins["Id"] == cid and ins["Name"] == "/" + unique_name
    assert ins["State"]["Status"] == "exited" and ins["State"]["ExitCode"] == 3
    assert ins["State"]["Running"] is False and ins["State"]["FinishedAt"] > ins["State"]["StartedAt"]
    assert ins["Config"]["Labels"] == {"com.example.t": unique_name}
    assert ins["Path"] == "sh" and ins["Args"][0] == "-c"
    assert ins["Image"].startswith("sha256:")
    lines = [json.loads(line) for line in open(ins["LogPath"])]
    assert [(e["stream"], e["log"]) for e in lines] == [("stdout", "hello\n"), ("stderr", "oops\n")] or \
        sorted((e["stream"], e["log"]) for e in lines) == [("stderr", "oops\n"), ("stdout", "hello\n")]
    status, items = api.get("/containers/json?all=1&filters=" + json.dumps({"label": [f"com.example.t={unique_name}"]}))
    assert status == 200 and [c["Id"] for c in items] == [cid]
    assert items[0]["Names"] == ["/" + unique_name] and items[0]["State"] == "exited"
    assert items[0]["Status"].startswith("Exited (3) ")
    status, items = api.get("/containers/json")  # running only
    assert cid not in [c["Id"] for c in items]
    assert api.delete(f"/containers/{cid}")[0] == 204
    status, body = api.get(f"/containers/{cid}/json")
    assert status == 404 and body["message"] == f"No such container: {cid}"
    assert busybox_engine.leaks() == {}


def test_user_errors_are_clear(api, unique_name) -> None:
    status, body = api.post("/containers/create", {"Image": "nosuchimage:1", "Cmd": ["true"]})
    assert (status, body["message"]) == (404, "No such image: nosuchimage:1")
    cid = api.create(["true"], name=unique_name)
    status, body = api.post(f"/containers/create?name={unique_name}", {"Image": "busybox", "Cmd": ["true"]})
    assert status == 409 and f'"/{unique_name}" is already in use' in body["message"]
    status, body = api.post("/containers/create?name=bad/name", {"Image": "busybox", "Cmd": ["true"]})
    assert status == 400 and "Invalid container name" in body["message"]
    status, body = api.post("/containers/create", {"Image": "busybox", "Cmd": ["true"],
                                                    "HostConfig": {"RestartPolicy": {"Name": "sometimes"}}})
    assert status == 400 and "RestartPolicy" in body["message"]
    status, body = api.request("POST", "/containers/create", b"{not json", {"Content-Type": "application/json"})
    assert status == 400 and "message" in body
    for path in ("/containers/..%2F..%2Fetc/json", "/containers/nope/json"):
        status, body = api.get(path)
        assert status == 404 and "No such container" in body["message"]
    status, body = api.post(f"/containers/{cid}/kill")
    assert status == 409 and "is not running" in body["message"]
    status, body = api.post(f"/containers/{cid}/wait?condition=sometime")
    assert status == 400
    status, body = api.get("/containers/json?filters=" + json.dumps({"colour": ["red"]}))
    assert status == 400 and "invalid filter" in body["message"]


def test_running_container_network_stop_restart_kill(api, busybox_engine, unique_name) -> None:
    cid = api.run(["sh", "-c", "trap 'exit 7' TERM; echo trapped; while true; do sleep 0.1; done"],
                  name=unique_name)
    _wait_for_log_line(api, cid, "trapped\n")  # a SIGTERM before the trap is dropped (PID 1)
    ins = api.inspect(cid)
    assert ins["State"]["Running"] is True and ins["State"]["Pid"] > 0
    net = ins["NetworkSettings"]["Networks"]["bridge"]
    import ipaddress
    subnets = [ipaddress.ip_network(s) for s in busybox_engine.bridge_subnet.split(",")]
    assert any(ipaddress.ip_address(net["IPAddress"]) in s and ipaddress.ip_address(net["Gateway"]) in s
               for s in subnets)
    assert ins["NetworkSettings"]["IPAddress"] == net["IPAddress"]
    assert api.post(f"/containers/{cid}/start")[0] == 304
    status, running = api.get("/containers/json")
    assert cid in [c["Id"] for c in running]
    assert running[[c["Id"] for c in running].index(cid)]["Status"].startswith("Up ")
    # stop: the trap answers SIGTERM with exit 7
    assert api.post(f"/containers/{cid}/stop?t=20")[0] == 204
    ins = api.inspect(cid)
    assert ins["State"]["Status"] == "exited" and ins["State"]["ExitCode"] == 7
    assert ins["NetworkSettings"]["Networks"]["bridge"]["IPAddress"] == ""
    assert api.post(f"/containers/{cid}/stop")[0] == 304
    assert api.post(f"/containers/{cid}/restart?t=5")[0] == 204
    assert api.inspect(cid)["State"]["Running"] is True
    assert api.post(f"/containers/{cid}/kill?signal=SIGKILL")[0] == 204
    ins = api.inspect(cid)
    assert ins["State"]["Status"] == "exited" and ins["State"]["ExitCode"] == 137
    assert api.delete(f"/containers/{cid}")[0] == 204
    assert busybox_engine.leaks() == {}


def test_stop_signal_and_sigkill_after_grace(api, unique_name) -> None:
    # PID 1 with no handler for SIGTERM: the kernel drops it; SIGKILL after t seconds
    cid = api.run(["sleep", "1000"], name=unique_name)
    assert api.post(f"/containers/{cid}/stop?t=1")[0] == 204
    assert api.inspect(cid)["State"]["ExitCode"] == 137
    # a configured stop signal that the program handles: stopped only once `sh` has set
    # its trap (it prints "trapped" then; a signal before that is a default-action kill)
    cid2 = api.run(["sh", "-c", "trap 'exit 5' USR1; echo trapped; while true; do sleep 0.1; done"],
                   name=unique_name + "b", StopSignal="SIGUSR1")
    _wait_for_log_line(api, cid2, "trapped\n")
    assert api.post(f"/containers/{cid2}/stop?t=20")[0] == 204
    assert api.inspect(cid2)["State"]["ExitCode"] == 5


def _wait_for_log_line(api, cid: str, line: str, timeout: float = 30.0) -> None:
    """Until the container's json-file log holds ``line`` (its program got that far)."""
    path = api.inspect(cid)["LogPath"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(path) as f:
                if any(json.loads(entry).get("log") == line for entry in f if entry.strip()):
                    return
        except (FileNotFoundError, ValueError):
            pass
        time.sleep(0.02)
    raise AssertionError(f"{cid}: no {line!r} in its log after {timeout} s")


def test_remove_running_needs_force_and_v_removes_anonymous_volumes(api, busybox_engine, unique_name) -> None:
    cid = api.run(["sleep", "1000"], name=unique_name, Volumes={"/data": {}})
    mounts = api.inspect(cid)["Mounts"]
    assert len(mounts) == 1 and mounts[0]["Destination"] == "/data" and mounts[0]["Type"] == "volume"
    vol = mounts[0]["Name"]
    status, body = api.delete(f"/containers/{cid}")
    assert status == 409 and "cannot remove a running container" in body["message"]
    assert api.delete(f"/containers/{cid}?force=1&v=1")[0] == 204
    status, _ = api.get(f"/volumes/{vol}")
    assert status == 404
    assert busybox_engine.leaks() == {}


def test_wait_conditions_and_slow_clients_do_not_block(api, unique_name) -> None:
    import threading
    cid = api.create(["sh", "-c", "sleep 0.5; exit 4"], name=unique_name)
    results: dict[str, dict] = {}

    def waiter(cond: str) -> None:
        results[cond] = api.wait(cid, cond)

    threads = [threading.Thread(target=waiter, args=(c,)) for c in ("next-exit", "removed")]
    for t in threads:
        t.start()
    time.sleep(0.2)
    # while two waits are in flight, others are served
    others = [api.run(["true"], name=f"{unique_name}-{i}") for i in range(3)]
    for o in others:
        api.wait(o)
        assert api.delete(f"/containers/{o}")[0] == 204
    assert api.post(f"/containers/{cid}/start")[0] == 204
    threads[0].join(30)
    assert results["next-exit"]["StatusCode"] == 4
    assert api.wait(cid)["StatusCode"] == 4  # not-running: at once
    assert "removed" not in results
    assert api.delete(f"/containers/{cid}")[0] == 204
    threads[1].join(30)
    assert results["removed"]["StatusCode"] == 4


def test_pause_unpause_rename_top_stats(api, busybox_engine, unique_name) -> None:
    cid = api.run(["sleep", "1000"], name=unique_name)
    assert api.post(f"/containers/{cid}/pause")[0] == 204
    ins = api.inspect(cid)
    assert ins["State"]["Status"] == "paused" and ins["State"]["Paused"] is True
    assert api.post(f"/containers/{cid}/pause")[0] == 409
    assert api.post(f"/containers/{cid}/unpause")[0] == 204
    assert api.inspect(cid)["State"]["Status"] == "running"
    assert api.post(f"/containers/{cid}/rename?name={unique_name}-new")[0] == 204
    assert api.inspect(f"{unique_name}-new")["Id"] == cid
    assert api.get(f"/containers/{unique_name}/json")[0] == 404
    status, top = api.get(f"/containers/{cid}/top")
    assert status == 200 and "PID" in top["Titles"]
    assert any("sleep 1000" in " ".join(p) for p in top["Processes"])
    status, st = api.get(f"/containers/{cid}/stats?stream=false")
    assert status == 200 and st["id"] == cid and st["name"] == f"/{unique_name}-new"
    assert st["memory_stats"]["usage"] > 0 and st["cpu_stats"]["cpu_usage"]["total_usage"] >= 0
    assert st["pids_stats"]["current"] >= 1
    assert "eth0" in st["networks"]
    assert api.delete(f"/containers/{cid}?force=1")[0] == 204


def test_list_filters_and_limit(api, unique_name) -> None:
    a = api.create(["true"], name=unique_name + "-a", Labels={"t": unique_name, "role": "a"})
    b = api.run(["sleep", "1000"], name=unique_name + "-b", Labels={"t": unique_name, "role": "b"})

    def ids(filters: dict, all_: bool = True) -> set[str]:
        status, items = api.get(f"/containers/json?all={int(all_)}&filters=" + json.dumps(filters))
        assert status == 200, items
        return {c["Id"] for c in items}

    assert ids({"label": [f"t={unique_name}"]}) == {a, b}
    assert ids({"label": [f"t={unique_name}", "role=b"]}) == {b}
    assert ids({"label": [f"t={unique_name}"]}, all_=False) == {b}
    assert ids({"status": ["created"], "label": [f"t={unique_name}"]}) == {a}
    assert ids({"status": ["running"], "label": [f"t={unique_name}"]}) == {b}
    assert ids({"name": [unique_name + "-a"]}) == {a}
    assert ids({"id": [b[:12]]}) == {b}
    assert ids({"ancestor": ["busybox"], "label": [f"t={unique_name}"]}) == {a, b}
    assert ids({"network": ["bridge"], "label": [f"t={unique_name}"]}) == {a, b}
    assert ids({"since": [a], "label": [f"t={unique_name}"]}) == {b}
    assert ids({"before": [b], "label": [f"t={unique_name}"]}) == {a}
    status, items = api.get("/containers/json?limit=1")
    assert [c["Id"] for c in items] == [b]
    assert api.delete(f"/containers/{b}?force=1")[0] == 204
    assert api.delete(f"/containers/{a}")[0] == 204


def test_docker_py_run_logs_wait_remove(busybox_engine, unique_name) -> None:
    import importlib.util
    client = busybox_engine.client()
    if importlib.util.find_spec("pystack.engine.stream_routes") is not None:  # logs are another area's
        out = client.containers.run("busybox", ["echo", "hi from docker-py"], name=unique_name, remove=True)
        assert out == b"hi from docker-py\n"
    c = client.containers.run("busybox", ["sh", "-c", "echo a; sleep 1000"], detach=True,
                              name=unique_name + "d", labels={"x": "y"})
    c.reload()
    assert c.status == "running" and c.labels == {"x": "y"}
    assert c.name == unique_name + "d"
    assert [x.id for x in client.containers.list(filters={"label": "x=y"})] == [c.id]
    c.stop(timeout=1)
    assert c.wait()["StatusCode"] == 137
    c.remove()
    client.close()


def test_oom_kill_is_reported(api, busybox_engine, unique_name) -> None:
    since = int(time.time()) - 1
    cid = api.run(["sh", "-c", "x=a; while true; do x=$x$x; done"], name=unique_name,
                  HostConfig={"Memory": 16 * 1024 * 1024, "MemorySwap": 16 * 1024 * 1024})
    assert api.wait(cid)["StatusCode"] == 137
    st = api.inspect(cid)["State"]
    assert st["OOMKilled"] is True and st["ExitCode"] == 137
    status, raw = api.get(f"/events?since={since}&until={int(time.time()) + 1}&filters="
                          + json.dumps({"container": [cid]}))
    actions = [json.loads(line)["Action"] for line in raw.decode().splitlines() if line.strip()]
    assert "oom" in actions and actions.index("oom") < actions.index("die")
    assert api.delete(f"/containers/{cid}")[0] == 204


def test_stats_stream_and_network_connect(busybox_engine, unique_name) -> None:
    import ipaddress
    from engine_support import engine_subnet
    client = busybox_engine.client()
    api = busybox_engine.api()
    c = client.containers.run("busybox", ["sleep", "1000"], detach=True, name=unique_name)
    stream = c.stats(stream=True, decode=True)
    first, second = next(stream), next(stream)
    assert first["id"] == c.id and second["precpu_stats"]["cpu_usage"]["total_usage"] == \
        first["cpu_stats"]["cpu_usage"]["total_usage"]
    stream.close()
    subnet = engine_subnet()
    net = client.networks.create(unique_name + "-n", ipam={"Driver": "default", "Config": [{"Subnet": subnet}]})
    try:
        net.connect(c, aliases=["db"])
        ins = api.inspect(c.id)
        ep = ins["NetworkSettings"]["Networks"][unique_name + "-n"]
        assert ipaddress.ip_address(ep["IPAddress"]) in ipaddress.ip_network(subnet)
        assert "db" in (ep["Aliases"] or []) + (ep["DNSNames"] or [])
        # the new interface is really there
        res = c.exec_run(["ip", "-4", "addr"])
        assert ep["IPAddress"].encode() in res.output
        # a created container joins at start
        d = client.containers.create("busybox", ["sleep", "1000"], name=unique_name + "-d")
        net.connect(d)
        d.start()
        ep2 = api.inspect(d.id)["NetworkSettings"]["Networks"][unique_name + "-n"]
        assert ipaddress.ip_address(ep2["IPAddress"]) in ipaddress.ip_network(subnet)
        assert c.exec_run(["ping", "-c", "1", "-W", "2", ep2["IPAddress"]]).exit_code == 0
        net.disconnect(c)
        assert unique_name + "-n" not in api.inspect(c.id)["NetworkSettings"]["Networks"]
        assert ep["IPAddress"].encode() not in c.exec_run(["ip", "-4", "addr"]).output
        d.remove(force=True)
    finally:
        c.remove(force=True)
        net.remove()
    client.close()
    assert busybox_engine.leaks() == {}


def test_network_modes_host_none_container(api, busybox_engine, unique_name) -> None:
    host = api.run(["sleep", "1000"], name=unique_name + "-h", HostConfig={"NetworkMode": "host"})
    pid = api.inspect(host)["State"]["Pid"]
    assert os.readlink(f"/proc/{pid}/ns/net") == os.readlink("/proc/self/ns/net")
    none = api.run(["sleep", "1000"], name=unique_name + "-n", HostConfig={"NetworkMode": "none"})
    ins = api.inspect(none)
    assert list(ins["NetworkSettings"]["Networks"]) == ["none"]
    npid = ins["State"]["Pid"]
    assert os.listdir(f"/proc/{npid}/root/sys/class/net") == ["lo"]
    web = api.run(["sleep", "1000"], name=unique_name + "-w")
    side = api.run(["sleep", "1000"], name=unique_name + "-s",
                   HostConfig={"NetworkMode": f"container:{unique_name}-w"})
    wpid, spid = api.inspect(web)["State"]["Pid"], api.inspect(side)["State"]["Pid"]
    assert os.readlink(f"/proc/{wpid}/ns/net") == os.readlink(f"/proc/{spid}/ns/net")
    status, body = api.post("/containers/create", {"Image": "busybox", "Cmd": ["true"],
                                                    "HostConfig": {"NetworkMode": "nosuchnet"}})
    assert status == 404 and "nosuchnet" in body["message"]
    for c in (side, web, none, host):
        assert api.delete(f"/containers/{c}?force=1")[0] == 204
    assert busybox_engine.leaks() == {}


def test_many_clients_at_once(busybox_engine, unique_name) -> None:
    """An event stream and a `logs -f` stay open while 4 clients create/start/remove 20
    containers in parallel; every operation is served and every event arrives."""
    import concurrent.futures
    import threading
    client = busybox_engine.client()
    api = busybox_engine.api()
    follower = client.containers.run("busybox", ["sh", "-c", "while true; do echo x; sleep 0.2; done"],
                                     detach=True, name=unique_name + "-f")
    log_stream = follower.logs(stream=True, follow=True)
    got_logs = []
    reader = threading.Thread(target=lambda: [got_logs.append(c) for c in log_stream], daemon=True)
    reader.start()
    since = int(time.time()) - 1

    def cycle(i: int) -> str:
        cid = api.run(["sh", "-c", f"exit {i % 3}"], name=f"{unique_name}-{i}", Labels={"t": unique_name})
        assert api.wait(cid)["StatusCode"] == i % 3
        assert api.delete(f"/containers/{cid}")[0] == 204
        return cid

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        ids = list(pool.map(cycle, range(20)))
    events = client.events(since=since, until=int(time.time()) + 1, decode=True,
                           filters={"label": f"t={unique_name}", "type": "container"})
    destroyed = {e["id"] for e in events if e["Action"] == "destroy"}
    assert destroyed == set(ids)
    assert len(got_logs) >= 2  # the follower kept streaming
    follower.remove(force=True)
    reader.join(10)
    client.close()
    assert busybox_engine.leaks() == {}


def test_operations_on_one_container_are_serialized(api, busybox_engine, unique_name) -> None:
    """Start/stop/restart/kill/pause from 6 clients at once on one container (30 operations), then a forced
    remove: every answer is a Docker status, the end state is consistent, nothing leaks."""
    import concurrent.futures
    import random
    cid = api.create(["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.05; done"], name=unique_name,
                     HostConfig={"RestartPolicy": {"Name": "on-failure"}})
    ops = [("POST", "start"), ("POST", "stop?t=2"), ("POST", "restart?t=2"), ("POST", "kill"),
           ("POST", "pause"), ("POST", "unpause")]
    rng = random.Random(unique_name)

    def client(n: int) -> set[int]:
        seen = set()
        for _ in range(5):
            method, op = rng.choice(ops)
            status, body = api.request(method, f"/containers/{cid}/{op}", b"{}")
            assert status in (204, 304, 409), (op, status, body)
            seen.add(status)
        return seen

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        list(pool.map(client, range(6)))
    ins = api.inspect(cid)
    st = ins["State"]
    assert st["Status"] in ("running", "paused", "exited", "restarting")
    assert st["Running"] == (st["Status"] in ("running", "paused"))
    if st["Running"]:
        assert os.path.exists(f"/proc/{st['Pid']}")
    assert api.delete(f"/containers/{cid}?force=1")[0] == 204
    assert busybox_engine.leaks() == {}


def test_missing_working_dir_is_created_and_user_by_name(api, unique_name) -> None:
    cid = api.run(["sh", "-c", "pwd; id -un"], name=unique_name, WorkingDir="/srv/app/sub", User="app")
    assert api.wait(cid)["StatusCode"] == 0
    lines = [json.loads(line)["log"] for line in open(api.inspect(cid)["LogPath"])]
    assert lines == ["/srv/app/sub\n", "app\n"]
    assert api.delete(f"/containers/{cid}")[0] == 204


def test_unsupported_host_config_is_a_clear_400(api, unique_name) -> None:
    for hc, field in (({"Runtime": "kata"}, "Runtime"),
                      ({"UsernsMode": "private"}, "UsernsMode"),
                      ({"PidMode": "container:x"}, "PidMode"),
                      ({"LogConfig": {"Type": "syslog"}}, "LogConfig")):
        status, body = api.post(f"/containers/create?name={unique_name}",
                                {"Image": "busybox", "Cmd": ["true"], "HostConfig": hc})
        assert status == 400 and f"HostConfig.{field}" in body["message"], (hc, status, body)
    status, _ = api.get(f"/containers/{unique_name}/json")
    assert status == 404  # nothing half-created
    # UTSMode host: the host's name, and the host's name is left alone
    hostname = os.uname().nodename
    cid = api.run(["hostname"], name=unique_name, HostConfig={"UTSMode": "host"})
    assert api.wait(cid)["StatusCode"] == 0
    assert [json.loads(line)["log"] for line in open(api.inspect(cid)["LogPath"])] == [hostname + "\n"]
    assert os.uname().nodename == hostname
    assert api.delete(f"/containers/{cid}")[0] == 204
