"""Restart policies with Docker's back-off, AutoRemove, and what stop/kill/start do to them."""
from __future__ import annotations

import time

import pytest


def wait_for(pred, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_on_failure_with_max_retries(api, unique_name) -> None:
    cid = api.run(["sh", "-c", "exit 3"], name=unique_name,
                  HostConfig={"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3}})
    # 100 + 200 + 400 ms of back-off, then it stays exited
    wait_for(lambda: api.inspect(cid)["RestartCount"] == 3 and api.inspect(cid)["State"]["Status"] == "exited",
             what="three restarts")
    time.sleep(1.0)
    ins = api.inspect(cid)
    assert ins["RestartCount"] == 3 and ins["State"]["Status"] == "exited" and ins["State"]["ExitCode"] == 3
    assert ins["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}


def test_on_failure_does_not_restart_success(api, unique_name) -> None:
    cid = api.run(["true"], name=unique_name, HostConfig={"RestartPolicy": {"Name": "on-failure"}})
    assert api.wait(cid)["StatusCode"] == 0
    time.sleep(0.5)
    ins = api.inspect(cid)
    assert ins["RestartCount"] == 0 and ins["State"]["Status"] == "exited"


def test_always_restarts_until_stopped_and_backoff_grows(api, unique_name) -> None:
    cid = api.run(["true"], name=unique_name, HostConfig={"RestartPolicy": {"Name": "always"}})
    wait_for(lambda: api.inspect(cid)["RestartCount"] >= 4, what="four restarts")
    # the back-off doubles (100, 200, 400, 800 ms...): far fewer restarts than a busy loop
    time.sleep(1.0)
    assert api.inspect(cid)["RestartCount"] < 12
    status, _ = api.post(f"/containers/{cid}/stop?t=1")
    assert status in (204, 304)
    count = api.inspect(cid)["RestartCount"]
    time.sleep(1.5)
    ins = api.inspect(cid)
    assert ins["State"]["Status"] == "exited" and ins["RestartCount"] == count
    assert api.delete(f"/containers/{cid}?force=1")[0] == 204


def test_unless_stopped_restarts_a_crash_but_not_a_kill(api, unique_name) -> None:
    cid = api.run(["sh", "-c", "sleep 0.2; exit 1"], name=unique_name,
                  HostConfig={"RestartPolicy": {"Name": "unless-stopped"}})
    wait_for(lambda: api.inspect(cid)["RestartCount"] >= 1, what="a restart")
    wait_for(lambda: api.inspect(cid)["State"]["Running"], what="running again")
    api.post(f"/containers/{cid}/kill")  # SIGKILL: counts as a manual stop (moby)
    time.sleep(1.0)
    assert api.inspect(cid)["State"]["Status"] == "exited"
    assert api.delete(f"/containers/{cid}?force=1")[0] == 204


def test_auto_remove(api, unique_name) -> None:
    status, body = api.post("/containers/create", {"Image": "busybox", "Cmd": ["true"], "HostConfig": {
        "AutoRemove": True, "RestartPolicy": {"Name": "always"}}})
    assert status == 400 and "AutoRemove" in body["message"]
    cid = api.create(["sh", "-c", "exit 2"], name=unique_name, HostConfig={"AutoRemove": True})
    import threading
    result = {}
    t = threading.Thread(target=lambda: result.update(api.wait(cid, "removed")))
    t.start()
    time.sleep(0.1)
    assert api.post(f"/containers/{cid}/start")[0] == 204
    t.join(30)
    assert result["StatusCode"] == 2
    assert api.get(f"/containers/{cid}/json")[0] == 404
