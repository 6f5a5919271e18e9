"""``init: true``: pystack's PID 1 reaps orphaned zombies and forwards signals.

Each behaviour is also checked without init, so the tests can fail: a shell that exec'd
away leaves orphans unreaped, and PID 1 without a handler ignores SIGTERM."""
from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from rtutil import new_id

# the subshell's `sleep 0.2` is orphaned (its parent exits) and re-parented to PID 1
ORPHAN = "(sleep 0.2 &) ; exec sleep 30"


def _zombies(pids: list[int]) -> int:
    n = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            continue
        if stat[stat.rindex(")") + 2] == "Z":
            n += 1
    return n


def _all_pids(pid1: int) -> list[int]:
    """PID 1 of a container and its children (zombies are not in cgroup.procs)."""
    out = [pid1]
    for task in Path(f"/proc/{pid1}/task").iterdir():
        out += [int(p) for p in (task / "children").read_text().split()]
    return out


@pytest.mark.parametrize("use_init,expected", [(False, 1), (True, 0)])
def test_init_reaps_orphans(runtime, make_bundle, overlay, use_init, expected):
    cid = new_id()
    runtime.create(cid, make_bundle(["sh", "-c", ORPHAN]), init=use_init, **overlay())
    runtime.start(cid)
    try:
        pid1 = runtime.state(cid)["pid"]
        # wait until the orphan's sleep 0.2 has ended: it is then either a zombie (nobody
        # reaps it) or gone (init reaped it); the container is left with its main program
        deadline = time.monotonic() + 10
        seen = False
        while time.monotonic() < deadline:
            pids = [p for p in _all_pids(pid1) if Path(f"/proc/{p}").exists()]
            live = []
            for p in pids:
                try:
                    if _zombies([p]) == 0 and "sleep\x000.2" in Path(f"/proc/{p}/cmdline").read_text():
                        live.append(p)
                except FileNotFoundError:
                    pass
            seen = seen or bool(live) or _zombies(pids) > 0
            if seen and not live:
                break
            time.sleep(0.02)
        assert seen, "the orphan never appeared"
        time.sleep(0.2)
        assert _zombies(_all_pids(pid1)) == expected
    finally:
        runtime.delete(cid, force=True)


def test_init_forwards_sigterm(runtime, make_bundle, overlay):
    script = "trap 'echo got TERM; exit 7' TERM; echo ready; while true; do sleep 0.05; done"
    cid = new_id()
    out = make_bundle(["true"]).parent / f"{cid}.out"
    import os
    fd = os.open(out, os.O_WRONLY | os.O_CREAT, 0o644)
    runtime.create(cid, make_bundle(["sh", "-c", script]), init=True,
                   stdio=(fd, fd, fd), **overlay())
    os.close(fd)
    runtime.start(cid)
    try:
        deadline = time.monotonic() + 10  # the shell has installed its trap
        while "ready" not in out.read_text() and time.monotonic() < deadline:
            time.sleep(0.02)
        runtime.kill(cid, signal.SIGTERM)
        assert runtime.wait(cid, timeout=10) == 7
        assert "got TERM" in out.read_text()
    finally:
        runtime.delete(cid, force=True)


def test_init_exit_status_of_signalled_program(runtime, make_bundle, overlay):
    """With init, SIGTERM kills a program without a handler: exit 143 as in Docker."""
    cid = new_id()
    runtime.create(cid, make_bundle(["sleep", "30"]), init=True, **overlay())
    runtime.start(cid)
    try:
        runtime.kill(cid, "TERM")
        assert runtime.wait(cid, timeout=10) == 143
    finally:
        runtime.delete(cid, force=True)
