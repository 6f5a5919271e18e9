"""``init: true``: pystack's PID 1 reaps orphaned zombies and forwards signals.

Each behaviour is also checked without init, so the tests can fail: a shell that exec'd
away leaves orphans unreaped, and PID 1 without a handler ignores SIGTERM."""
from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from rtutil import new_id

# the subshell's `sleep 0.5` is orphaned (its parent exits) and re-parented to PID 1
ORPHAN = "(sleep 0.5 &) ; exec sleep 30"


def _state(pid: int) -> str | None:
    """The state letter of a process ("Z" for a zombie), None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    return stat[stat.rindex(")") + 2]


def _zombies(pids: list[int]) -> int:
    return sum(1 for pid in pids if _state(pid) == "Z")


def _all_pids(pid1: int) -> list[int]:
    """PID 1 of a container and its children (zombies are not in cgroup.procs)."""
    out = [pid1]
    for task in Path(f"/proc/{pid1}/task").iterdir():
        out += [int(p) for p in (task / "children").read_text().split()]
    return out


def _orphan(pid1: int, deadline: float) -> int | None:
    """The orphaned `sleep 0.5` once it is PID 1's child (found by its command line)."""
    while time.monotonic() < deadline:
        for p in _all_pids(pid1)[1:]:
            try:
                if "sleep\x000.5" in Path(f"/proc/{p}/cmdline").read_text():
                    return p
            except FileNotFoundError:
                pass
        time.sleep(0.01)
    return None


@pytest.mark.parametrize("use_init", [False, True])
def test_init_reaps_orphans(runtime, make_bundle, overlay, use_init):
    """The orphan is followed by its pid (not by counting zombies after a fixed sleep,
    which under load caught the subshell's brief zombie or an orphan still running)."""
    cid = new_id()
    runtime.create(cid, make_bundle(["sh", "-c", ORPHAN]), init=use_init, **overlay())
    runtime.start(cid)
    try:
        pid1 = runtime.state(cid)["pid"]
        deadline = time.monotonic() + 20
        orphan = _orphan(pid1, deadline)
        assert orphan is not None, "the orphan never appeared"
        # it exits after 0.5 s: then it is a zombie nobody reaps, or init reaps it
        while _state(orphan) not in ("Z", None) and time.monotonic() < deadline:
            time.sleep(0.01)
        if use_init:
            while _state(orphan) is not None and time.monotonic() < deadline:
                time.sleep(0.01)
            assert _state(orphan) is None and _zombies(_all_pids(pid1)) == 0
        else:
            assert _state(orphan) == "Z" and orphan in _all_pids(pid1)
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
