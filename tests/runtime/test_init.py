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
        time.sleep(0.8)  # the orphan's sleep 0.2 has ended by now
        assert _zombies(_all_pids(pid1)) == expected
    finally:
        runtime.delete(cid, force=True)


def test_init_forwards_sigterm(runtime, make_bundle, overlay):
    script = "trap 'echo got TERM; exit 7' TERM; while true; do sleep 0.05; done"
    cid = new_id()
    out = make_bundle(["true"]).parent / f"{cid}.out"
    import os
    fd = os.open(out, os.O_WRONLY | os.O_CREAT, 0o644)
    runtime.create(cid, make_bundle(["sh", "-c", script]), init=True,
                   stdio=(fd, fd, fd), **overlay())
    os.close(fd)
    runtime.start(cid)
    try:
        time.sleep(0.2)  # let the shell install its trap
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
