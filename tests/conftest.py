"""Fixtures shared by every area's tests.

Tests create real kernel objects; each gets its own names (``unique_name``), and
``kernel_snapshot`` lets a test assert that what it made is gone afterwards.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from pystack.testimage import make_busybox_rootfs

CACHE = Path(os.environ.get("PYSTACK_TEST_CACHE", "/var/tmp/pystack-test-cache"))


@pytest.fixture(scope="session")
def busybox_rootfs() -> Path:
    """A read-only-by-convention busybox root filesystem, built once per machine."""
    dest = CACHE / "busybox-rootfs"
    marker = dest / ".complete"
    if not marker.exists():
        if dest.exists():
            shutil.rmtree(dest)
        tmp = CACHE / f"busybox-rootfs.{uuid.uuid4().hex[:8]}"
        make_busybox_rootfs(tmp)
        (tmp / ".complete").write_text("")
        try:
            tmp.rename(dest)
        except OSError:  # another process won the race
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


@pytest.fixture
def unique_name() -> str:
    """A short name no other test uses (fits in a 15-char interface name with a prefix)."""
    return "t" + uuid.uuid4().hex[:7]


def kernel_objects() -> dict[str, set[str]]:
    """What the kernel holds that a leak would add to: links, netns, overlay mounts."""
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    mounts = Path("/proc/self/mounts").read_text()
    return {
        "links": {line.split(": ")[1].split("@")[0] for line in links.splitlines() if ": " in line},
        "netns": {line.split()[0] for line in netns.splitlines() if line.strip()},
        "mounts": {line.split()[1] for line in mounts.splitlines()},
    }


@pytest.fixture
def kernel_snapshot():
    """Call the returned function at the end of a test to assert nothing new is left."""
    before = kernel_objects()

    def assert_no_leaks() -> None:
        after = kernel_objects()
        leaked = {k: sorted(after[k] - before[k]) for k in after if after[k] - before[k]}
        assert not leaked, f"kernel objects leaked: {leaked}"

    return assert_no_leaks


def _default_cgroup_parents() -> set[str]:
    """The default cgroup parent ``pystack`` in every hierarchy (v1 controllers, v2)."""
    import glob

    return set(glob.glob("/sys/fs/cgroup/*/pystack")) | set(glob.glob("/sys/fs/cgroup/pystack"))


@pytest.fixture(scope="session", autouse=True)
def _default_cgroup_parent_removed():
    """Tests that run specs with the default cgroup parent (``pystack/<id>``, as the engine's
    specgen tests do) leave the parent folder behind once their container is deleted (the
    runtime keeps a parent, as Docker keeps ``docker``): the session removes the ones it made,
    once empty (rmdir refuses a cgroup with children or tasks)."""
    before = _default_cgroup_parents()
    yield
    for path in sorted(_default_cgroup_parents() - before, key=len, reverse=True):
        try:
            os.rmdir(path)
        except OSError:
            pass
