"""Fixtures for storage tests: a volume store under tmp, and runc (the OCI oracle) running
busybox containers with the mounts the planner produced.

runc is the reference runtime: if it mounts our OCI entries and the container sees the
right bytes, the entries are right. Each container gets its own copy of the busybox rootfs
(symlinks and one static binary: cheap) so that mount points runc creates never touch the
shared fixture.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Callable

import pytest

from pystack.volumes.store import VolumeStore


@pytest.fixture
def store(tmp_path: Path):
    """A volume store under the test's tmp dir. Teardown detaches whatever a failed test left
    mounted under tmp (tmpfs volumes, staging pins), so one failure never leaks into others."""
    yield VolumeStore(tmp_path / "volumes")
    from pystack.volumes import _sys

    for mp in reversed(_mounts_under(str(tmp_path))):
        try:
            _sys.umount(mp, _sys.MNT_DETACH)
        except OSError:
            pass


class Runc:
    """Runs one-shot busybox containers under runc with given OCI mounts."""

    def __init__(self, tmp_path: Path, rootfs: Path) -> None:
        self.tmp = tmp_path
        self.rootfs = rootfs
        self.state = tmp_path / "runc-state"
        self.count = 0

    def run(self, mounts: list[dict], script: str, *, user: tuple[int, int] = (0, 0),
            image: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
        """Run ``sh -c script`` with ``mounts`` added to Docker's default mounts."""
        from pystack.runtime.spec import default_spec

        self.count += 1
        bundle = self.tmp / f"bundle{self.count}"
        bundle.mkdir()
        shutil.copytree(image or self.rootfs, bundle / "rootfs", symlinks=True)
        spec = default_spec(["sh", "-c", script], seccomp=False)
        spec["process"]["user"] = {"uid": user[0], "gid": user[1]}
        spec["mounts"].extend(mounts)
        (bundle / "config.json").write_text(json.dumps(spec))
        cid = f"pstv-{uuid.uuid4().hex[:10]}"
        try:
            p = subprocess.run(["runc", "--root", str(self.state), "run", "--bundle", str(bundle), cid],
                               capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        finally:
            subprocess.run(["runc", "--root", str(self.state), "delete", "-f", cid], capture_output=True)
        if check and p.returncode != 0:
            raise AssertionError(f"container failed ({p.returncode}): {p.stderr}{p.stdout}")
        return p


@pytest.fixture
def runc(tmp_path: Path, busybox_rootfs: Path) -> Runc:
    if shutil.which("runc") is None:
        pytest.skip("runc not installed (scripts/install.sh installs it)")
    return Runc(tmp_path, busybox_rootfs)


@pytest.fixture
def image_with_content(tmp_path: Path, busybox_rootfs: Path) -> Callable[[dict[str, str]], Path]:
    """A busybox rootfs copy with extra files (path -> content), as an image would have."""
    def make(files: dict[str, str]) -> Path:
        dest = tmp_path / f"image-{uuid.uuid4().hex[:6]}"
        shutil.copytree(busybox_rootfs, dest, symlinks=True)
        for rel, content in files.items():
            p = dest / rel.lstrip("/")
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(content)
        return dest
    return make


def _mounts_under(prefix: str) -> list[str]:
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
        points = [line.split()[4].replace("\\040", " ") for line in f]
    return sorted(p for p in points if p == prefix or p.startswith(prefix + "/"))


@pytest.fixture
def no_leaks(tmp_path: Path) -> Callable[[], None]:
    """Like the shared ``kernel_snapshot`` but scoped to this test's own objects (mounts under
    its tmp dir, runc containers in its runc state dir), so that other areas' tests running
    at the same time on the machine cannot make it fail."""
    def check() -> None:
        leaked = _mounts_under(str(tmp_path))
        assert not leaked, f"mounts left behind: {leaked}"
        state = tmp_path / "runc-state"
        if state.is_dir():
            out = subprocess.run(["runc", "--root", str(state), "list", "-q"], capture_output=True, text=True).stdout
            assert not out.strip(), f"runc containers left behind: {out.split()}"
    return check
