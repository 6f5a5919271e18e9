"""Fixtures for the runtime core's tests: bundles from the busybox rootfs, a Runtime with
its own state dir and cgroup parent, and helpers to run a container and get its output.

Every container is real (namespaces, overlay, pivot_root); each test gets unique ids and
its own cgroup parent ``pystack-test-<unique>``, removed (with anything left in it) at the
end, so a failed test leaves nothing behind for the next.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest

from pystack.runtime.spec import default_spec

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _cgroup_dirs(parent: str) -> list[Path]:
    if (CGROUP_ROOT / "cgroup.controllers").exists():
        return [CGROUP_ROOT / parent]
    return [d / parent for d in CGROUP_ROOT.iterdir() if d.is_dir()]


def _kill_and_remove(d: Path) -> None:
    if not d.exists():
        return
    for child in [c for c in d.iterdir() if c.is_dir()]:
        _kill_and_remove(child)
    try:
        for pid in (d / "cgroup.procs").read_text().split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
    except OSError:
        pass
    for _ in range(200):
        try:
            d.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            import time
            time.sleep(0.01)


@pytest.fixture
def cgroup_parent(monkeypatch, unique_name):
    """A private PYSTACK_CGROUP_PARENT for the test; asserts it is empty at the end."""
    parent = f"pystack-test-{unique_name}"
    monkeypatch.setenv("PYSTACK_CGROUP_PARENT", parent)
    yield parent
    leftovers = [str(c) for d in _cgroup_dirs(parent) if d.exists()
                 for c in d.iterdir() if c.is_dir()]
    for d in _cgroup_dirs(parent):
        _kill_and_remove(d)
    assert not leftovers, f"container cgroups left behind: {leftovers}"


@pytest.fixture
def runtime(tmp_path, cgroup_parent):
    """A library Runtime (fork server) under tmp_path/state; force-deletes leftovers."""
    from pystack.runtime import Runtime
    rt = Runtime(tmp_path / "state")
    yield rt
    for st in rt.list():
        try:
            rt.delete(st["id"], force=True)
        except Exception:  # noqa: BLE001 - best effort cleanup
            pass
    rt.close()


@pytest.fixture
def make_bundle(tmp_path, busybox_rootfs, cgroup_parent):
    """make_bundle(args, copy=False, **spec_changes) -> bundle dir.

    With ``copy`` the rootfs is a real copy (for runc); otherwise root.path is an empty
    directory and the test passes the busybox rootfs as the overlay lower dir."""
    counter = iter(range(1000))

    def make(args: list[str], *, copy: bool = False, hostname: str = "ctest",
             edit=None, seccomp: bool = True) -> Path:
        b = tmp_path / f"bundle{next(counter)}"
        b.mkdir()
        if copy:
            shutil.copytree(busybox_rootfs, b / "rootfs", symlinks=True)
        else:
            (b / "rootfs").mkdir()
        spec = default_spec(args, hostname=hostname, seccomp=seccomp)
        if edit:
            edit(spec)
        (b / "config.json").write_text(json.dumps(spec))
        return b

    return make


@pytest.fixture
def overlay(tmp_path, busybox_rootfs):
    """overlay() -> kwargs for Runtime.create: busybox as lower dir, fresh upper/work."""
    counter = iter(range(1000))

    def kw() -> dict:
        n = next(counter)
        up, work = tmp_path / f"upper{n}", tmp_path / f"work{n}"
        up.mkdir()
        work.mkdir()
        return {"rootfs_lowerdirs": [busybox_rootfs], "rootfs_upper": up, "rootfs_work": work}

    return kw




@pytest.fixture
def no_leaks(tmp_path):
    """Call at the end: no mount left under the test's tmp dir (bundles, overlays, state).
    Containers' namespaces are never bind-mounted by the runtime, and the overlay lives in
    the container's own mount namespace. (The shared ``kernel_snapshot`` also sees other
    engineers' parallel runs, so this one looks only at what the test owns.)"""
    def mounts() -> set[str]:
        return {line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()}

    before = mounts()

    def check() -> None:
        new = [m for m in mounts() - before]
        mine = [m for m in new if m.startswith(str(tmp_path))]
        assert not mine, f"mounts left on the host: {mine}"
    return check
