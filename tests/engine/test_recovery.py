"""The engine dies (SIGKILL) and a new one takes over: containers, networks, volumes and
addresses as before, interrupted creates/removes finished or rolled back, nothing leaked."""
from __future__ import annotations

import json
import os
import random
import threading
import time
from pathlib import Path

import pytest


def wait_for(pred, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def engine_processes(engine) -> list[int]:
    """Pids of processes that carry this engine's root in their environment (the daemon,
    its fork server, shims)."""
    marker = f"PYSTACK_ROOT={engine.root}".encode()
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            if marker in (p / "environ").read_bytes().split(b"\0"):
                out.append(int(p.name))
        except OSError:
            continue
    return out


def test_running_containers_survive_sigkill_and_are_adopted(busybox_engine, unique_name) -> None:
    engine = busybox_engine
    api = engine.api()
    keep = api.run(["sh", "-c", "trap 'exit 9' TERM; while true; do sleep 0.1; done"], name=unique_name + "-keep")
    dies = api.run(["sh", "-c", "sleep 1; exit 3"], name=unique_name + "-dies")
    retry = api.run(["sh", "-c", "sleep 1; exit 4"], name=unique_name + "-retry",
                    HostConfig={"RestartPolicy": {"Name": "on-failure"}})
    manual = api.run(["sleep", "1000"], name=unique_name + "-manual",
                     HostConfig={"RestartPolicy": {"Name": "unless-stopped"}})
    always = api.run(["sleep", "1000"], name=unique_name + "-always",
                     HostConfig={"RestartPolicy": {"Name": "always"}})
    for c in (manual, always):
        assert api.post(f"/containers/{c}/stop?t=0")[0] == 204
    before = api.inspect(keep)
    engine.kill9()
    time.sleep(1.5)  # "dies" and "retry" exit while no engine runs
    engine.start()
    after = api.inspect(keep)
    assert after["State"]["Running"] and after["State"]["Pid"] == before["State"]["Pid"]
    assert after["NetworkSettings"]["Networks"]["bridge"]["IPAddress"] == \
        before["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
    ins = api.inspect(dies)
    assert ins["State"]["Status"] == "exited" and ins["State"]["ExitCode"] == 3
    wait_for(lambda: api.inspect(retry)["RestartCount"] >= 1, what="on-failure restart after recovery")
    assert api.inspect(manual)["State"]["Status"] == "exited"  # unless-stopped, stopped by hand
    assert api.inspect(always)["State"]["Running"]             # always: started with the engine
    # the adopted container is managed: its exit is noticed and stop works
    assert api.post(f"/containers/{keep}/stop?t=20")[0] == 204
    assert api.inspect(keep)["State"]["ExitCode"] == 9
    # SIGTERM of the engine with clients still streaming (a wait, an event stream): it
    # exits by itself (status 0), and the containers keep running
    waiter = threading.Thread(target=lambda: _swallow(lambda: api.wait(always)), daemon=True)
    events = threading.Thread(target=lambda: _swallow(lambda: api.get("/events")), daemon=True)
    waiter.start()
    events.start()
    time.sleep(0.3)
    assert engine.stop() == 0
    engine.start()
    assert api.inspect(always)["State"]["Running"]
    for c in (keep, dies, retry, manual, always):
        assert api.delete(f"/containers/{c}?force=1")[0] == 204
    assert engine.leaks() == {}


def test_sigkill_during_create_and_remove_many_times(busybox_engine, unique_name) -> None:
    """20 rounds: creates, starts and forced removes in flight while the engine is killed."""
    engine = busybox_engine
    rng = random.Random(os.environ.get("PYSTACK_TEST_SEED", unique_name))
    counter = iter(range(10_000))

    def worker(stop: threading.Event, start: bool) -> None:
        api = engine.api(timeout=10)
        mine: list[str] = []
        while not stop.is_set():
            try:
                if mine and rng.random() < (0.5 if start else 0.2):
                    api.delete(f"/containers/{mine.pop()}?force=1&v=1")
                else:
                    status, out = api.post(f"/containers/create?name={unique_name}-{next(counter)}",
                                           {"Image": "busybox", "Cmd": ["sleep", "1000"], "Volumes": {"/data": {}}})
                    if status == 201:
                        mine.append(out["Id"])
                        if start:
                            api.post(f"/containers/{out['Id']}/start")
            except (OSError, ValueError):
                return  # the engine died under us

    for _round in range(20):
        stop = threading.Event()
        threads = [threading.Thread(target=worker, args=(stop, i < 2)) for i in range(4)]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.05, 0.6))
        engine.kill9()
        stop.set()
        for t in threads:
            t.join(30)
        engine.start()
        check_consistent(engine)
    api = engine.api()
    status, items = api.get("/containers/json?all=1")
    for c in items:
        assert api.delete(f"/containers/{c['Id']}?force=1&v=1")[0] == 204
    status, vols = api.get("/volumes")
    assert status == 200
    leftover_vols = [v["Name"] for v in vols["Volumes"] or []]
    assert leftover_vols == [], leftover_vols
    assert engine.leaks() == {}
    engine.stop()
    assert engine_processes(engine) == []


def _swallow(fn) -> None:
    try:
        fn()
    except Exception:  # noqa: BLE001 - the engine went away under the client
        pass


def check_consistent(engine) -> None:
    api = engine.api()
    status, items = api.get("/containers/json?all=1")
    assert status == 200
    listed = {c["Id"] for c in items}
    cdir = engine.root / "containers"
    on_disk = {d.name for d in cdir.iterdir() if d.is_dir()}
    assert on_disk == listed, (on_disk ^ listed)
    for d in cdir.iterdir():
        assert not (d / "intent").exists()
    running = set()
    for cid in listed:
        ins = api.inspect(cid)
        assert ins["State"]["Status"] in ("created", "running", "exited"), ins["State"]
        if ins["State"]["Running"]:
            running.add(cid)
            assert ins["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
    runtime_dir = engine.run / "runtime"
    if runtime_dir.is_dir():
        assert {d.name for d in runtime_dir.iterdir()} <= running
    netns_dir = engine.run / "net" / "netns"
    if netns_dir.is_dir():
        assert {d.name for d in netns_dir.iterdir()} <= running
    ips = [api.inspect(c)["NetworkSettings"]["Networks"]["bridge"]["IPAddress"] for c in running]
    assert len(ips) == len(set(ips))
