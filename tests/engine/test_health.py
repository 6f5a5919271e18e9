"""Healthchecks: CMD / CMD-SHELL / NONE, status, failing streak, log, events, image HEALTHCHECK."""
from __future__ import annotations

import json
import time

MS = 1_000_000


def wait_health(api, cid: str, status: str, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        health = api.inspect(cid)["State"].get("Health") or {}
        if health.get("Status") == status:
            return health
        time.sleep(0.05)
    raise AssertionError(f"health never became {status}: {api.inspect(cid)['State']}")


def test_healthy_then_unhealthy_with_events(api, unique_name) -> None:
    since = int(time.time()) - 1
    cid = api.run(["sleep", "1000"], name=unique_name, Healthcheck={
        "Test": ["CMD-SHELL", "echo probing; test ! -e /tmp/broken"], "Interval": 100 * MS,
        "Timeout": 2000 * MS, "Retries": 2})
    assert api.inspect(cid)["State"]["Health"]["Status"] == "starting"
    health = wait_health(api, cid, "healthy")
    assert health["FailingStreak"] == 0
    entry = health["Log"][-1]
    assert entry["ExitCode"] == 0 and entry["Output"] == "probing\n" and entry["Start"] <= entry["End"]
    status, listed = api.get("/containers/json?filters=" + json.dumps({"health": ["healthy"], "id": [cid]}))
    assert [c["Id"] for c in listed] == [cid] and listed[0]["Status"].endswith("(healthy)")
    # break it through the container's own filesystem (the runtime's exec is the probe's path)
    import subprocess
    pid = api.inspect(cid)["State"]["Pid"]
    subprocess.run(["nsenter", "-t", str(pid), "-m", "touch", "/tmp/broken"], check=True)
    health = wait_health(api, cid, "unhealthy")
    assert health["FailingStreak"] >= 2 and len(health["Log"]) <= 5
    assert health["Log"][-1]["ExitCode"] == 1
    status, raw = api.get(f"/events?since={since}&until={int(time.time()) + 1}&filters="
                          + json.dumps({"container": [cid]}))
    actions = [json.loads(line)["Action"] for line in raw.decode().splitlines() if line.strip()] \
        if isinstance(raw, bytes) else [raw["Action"]]
    assert "health_status: healthy" in actions and "health_status: unhealthy" in actions
    assert api.delete(f"/containers/{cid}?force=1")[0] == 204


def test_cmd_form_timeout_and_none(api, unique_name) -> None:
    cid = api.run(["sleep", "1000"], name=unique_name, Healthcheck={
        "Test": ["CMD", "sleep", "5"], "Interval": 100 * MS, "Timeout": 200 * MS, "Retries": 1})
    health = wait_health(api, cid, "unhealthy")
    assert health["Log"][-1]["ExitCode"] == -1 and "timeout" in health["Log"][-1]["Output"]
    cid2 = api.run(["sleep", "1000"], name=unique_name + "n", Healthcheck={"Test": ["NONE"]})
    assert "Health" not in api.inspect(cid2)["State"]
    for c in (cid, cid2):
        assert api.delete(f"/containers/{c}?force=1")[0] == 204


def test_start_period_failures_do_not_count(api, unique_name) -> None:
    cid = api.run(["sh", "-c", "sleep 1; touch /tmp/ready; sleep 1000"], name=unique_name, Healthcheck={
        "Test": ["CMD-SHELL", "test -e /tmp/ready"], "Interval": 100 * MS, "Retries": 1,
        "StartPeriod": 5000 * MS, "StartInterval": 100 * MS})
    wait_health(api, cid, "healthy")
    log = api.inspect(cid)["State"]["Health"]["Log"]
    assert log[-1]["ExitCode"] == 0
    assert api.delete(f"/containers/{cid}?force=1")[0] == 204


def test_image_healthcheck_is_honoured(busybox_engine, busybox_rootfs, unique_name) -> None:
    from pystack.runtime.images import ImageStore
    api = busybox_engine.api()
    # a second image with a HEALTHCHECK, imported through the running engine's API if it can
    busybox_engine.stop()
    ImageStore(busybox_engine.root / "images").import_rootfs(
        busybox_rootfs, f"hc-{unique_name}:1",
        changes=['HEALTHCHECK --interval=1s --timeout=2s --retries=1 CMD true'])
    busybox_engine.start()
    cid = api.run(["sleep", "1000"], name=unique_name, image=f"hc-{unique_name}:1")
    ins = api.inspect(cid)
    assert ins["Config"]["Healthcheck"]["Test"] == ["CMD-SHELL", "true"]  # shell form, as Docker
    wait_health(api, cid, "healthy")
    assert api.delete(f"/containers/{cid}?force=1")[0] == 204
