"""Differential test: the same container scenario against pystackd and a private dockerd
(Debian docker.io, its own socket/data root, --bridge=none, --iptables=false): status codes,
JSON shapes (keys) of inspect/list/wait, state transitions and the event sequence."""
from __future__ import annotations

import json
import time

import pytest

from engine_support import EngineAPI, engine_subnet

pytestmark = [pytest.mark.oracle, pytest.mark.slow]


@pytest.fixture
def dockerd(busybox_rootfs):
    from pystack.compose.dockerd import DockerdUnavailable, start_dockerd
    try:
        d = start_dockerd(pool="10.213.64.0/18", prefix="pystack-engine-oracle")
    except DockerdUnavailable as exc:
        pytest.skip(f"no dockerd oracle: {exc}")
    try:
        d.import_rootfs(busybox_rootfs, "busybox:latest")
        yield d
    finally:
        d.stop()


def scenario(api: EngineAPI, net: str, name: str) -> dict:
    """Run the scenario; return what must be equal on both engines."""
    out: dict = {}
    body = {"Image": "busybox", "Cmd": ["sh", "-c", "trap 'exit 5' TERM; echo hi; while true; do sleep 0.1; done"],
            "Labels": {"t": name}, "HostConfig": {"NetworkMode": net}}
    since = time.time()
    status, created = api.post(f"/containers/create?name={name}", body)
    out["create"] = (status, sorted(created))
    cid = created["Id"]
    out["create_again"] = api.post(f"/containers/create?name={name}", body)[0]
    out["no_image"] = api.post("/containers/create", {"Image": "nonexistent-image-xyz:1", "Cmd": ["true"]})[0]
    out["kill_created"] = api.post(f"/containers/{cid}/kill")[0]
    out["start"] = api.post(f"/containers/{cid}/start")[0]
    out["start_again"] = api.post(f"/containers/{cid}/start")[0]
    ins = api.inspect(cid)
    out["inspect_keys"] = sorted(ins)
    out["host_config_keys"] = sorted(ins["HostConfig"])
    out["config_keys"] = sorted(ins["Config"])
    out["state_keys"] = sorted(ins["State"])
    out["state"] = {k: ins["State"][k] for k in ("Status", "Running", "Paused", "Restarting", "OOMKilled", "Dead",
                                                 "ExitCode", "Error")}
    out["name"] = ins["Name"]
    out["network_keys"] = sorted(ins["NetworkSettings"]["Networks"][net])
    out["networks"] = sorted(ins["NetworkSettings"]["Networks"])
    out["path_args"] = (ins["Path"], ins["Args"])
    out["restart_policy"] = ins["HostConfig"]["RestartPolicy"]
    status, rows = api.get("/containers/json?filters=" + json.dumps({"label": [f"t={name}"]}))
    out["list_keys"] = sorted(rows[0])
    out["list_state"] = (rows[0]["State"], rows[0]["Names"], rows[0]["Labels"])
    status, top = api.get(f"/containers/{cid}/top")
    out["top"] = (status, top["Titles"], len(top["Processes"]))
    status, stats = api.get(f"/containers/{cid}/stats?stream=false")
    out["stats_keys"] = sorted(k for k in stats if k != "networks")
    out["rm_running"] = api.delete(f"/containers/{cid}")[0]
    out["pause"] = api.post(f"/containers/{cid}/pause")[0]
    out["paused_status"] = api.inspect(cid)["State"]["Status"]
    out["unpause"] = api.post(f"/containers/{cid}/unpause")[0]
    out["rename"] = api.post(f"/containers/{cid}/rename?name={name}-2")[0]
    out["stop"] = api.post(f"/containers/{cid}/stop?t=10")[0]
    out["stop_again"] = api.post(f"/containers/{cid}/stop")[0]
    st = api.inspect(cid)["State"]
    out["stopped"] = (st["Status"], st["ExitCode"], st["Running"])
    status, waited = api.post(f"/containers/{cid}/wait")
    out["wait"] = (status, waited)
    out["rm"] = api.delete(f"/containers/{cid}")[0]
    out["inspect_gone"] = api.get(f"/containers/{cid}/json")[0]
    status, raw = api.get(f"/events?since={since:.9f}&until={time.time() + 1:.9f}&filters="
                          + json.dumps({"container": [cid]}))
    text = raw.decode() if isinstance(raw, bytes) else json.dumps(raw)
    actions = [json.loads(line)["Action"] for line in text.splitlines() if line.strip()]
    # a restart policy that gives up: on-failure:2
    status, c2 = api.post(f"/containers/create?name={name}-r", {
        "Image": "busybox", "Cmd": ["sh", "-c", "exit 3"], "HostConfig": {
            "NetworkMode": net, "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 2}}})
    api.post(f"/containers/{c2['Id']}/start")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ins = api.inspect(c2["Id"])
        if ins["RestartCount"] == 2 and ins["State"]["Status"] == "exited":
            break
        time.sleep(0.1)
    time.sleep(1.0)
    ins = api.inspect(c2["Id"])
    out["on_failure"] = (ins["RestartCount"], ins["State"]["Status"], ins["State"]["ExitCode"])
    status, rows = api.get("/containers/json?all=1&filters=" + json.dumps({"name": [f"{name}-r"]}))
    out["exited_status"] = rows[0]["Status"].split(")")[0]
    out["bad_policy"] = api.post("/containers/create", {"Image": "busybox", "Cmd": ["true"], "HostConfig": {
        "RestartPolicy": {"Name": "always", "MaximumRetryCount": 2}}})[0]
    api.delete(f"/containers/{c2['Id']}?force=1")
    out["events"] = [a for a in actions if a in ("create", "start", "pause", "unpause", "rename", "kill", "die",
                                                 "stop", "destroy")]
    return out


def test_same_answers_as_dockerd(busybox_engine, dockerd, unique_name) -> None:
    ours = busybox_engine.api()
    theirs = EngineAPI(dockerd.socket)
    results = {}
    for kind, api, subnet in (("pystackd", ours, engine_subnet()), ("dockerd", theirs, "10.213.120.0/24")):
        status, net = api.post("/networks/create", {"Name": unique_name + "-net", "IPAM": {"Config": [{"Subnet": subnet}]}})
        assert status == 201, (kind, net)
        try:
            results[kind] = scenario(api, unique_name + "-net", unique_name)
        finally:
            api.delete(f"/networks/{net['Id']}")
    a, b = results["pystackd"], results["dockerd"]
    # every key dockerd answers with, pystackd has too (extras allowed)
    for key in ("inspect_keys", "state_keys", "network_keys", "list_keys", "stats_keys", "host_config_keys",
                "config_keys"):
        missing = set(b[key]) - set(a[key])
        assert not missing, (key, missing)
        a.pop(key), b.pop(key)
    assert a == b
