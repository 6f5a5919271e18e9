"""The project's own runtime (pystack.runtime.Runtime) mounts the same plans as runc does: a
volume written by a pystack-runtime container is read by a runc container, and vice versa."""
from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest

from pystack.volumes.planner import plan_mounts


def run_project_runtime(tmp_path: Path, rootfs: Path, mounts: list[dict], script: str) -> tuple[int, str]:
    runtime = pytest.importorskip("pystack.runtime.container")
    from pystack.runtime.spec import default_spec

    cid = f"pv{uuid.uuid4().hex[:8]}"
    bundle = tmp_path / f"bundle-{cid}"
    bundle.mkdir()
    shutil.copytree(rootfs, bundle / "rootfs", symlinks=True)
    spec = default_spec(["sh", "-c", script], seccomp=False)
    spec["mounts"].extend(mounts)
    (bundle / "config.json").write_text(json.dumps(spec))
    log = tmp_path / f"{cid}.log"
    with runtime.Runtime(tmp_path / "rt-state") as rt:
        rt.create(cid, bundle, log_path=log)
        try:
            rt.start(cid)
            code = rt.wait(cid, timeout=60)
        finally:
            rt.delete(cid, force=True)
    out = "".join(json.loads(line)["log"] for line in log.read_text().splitlines()) if log.exists() else ""
    return code, out


def test_project_runtime_and_runc_share_a_volume(tmp_path, busybox_rootfs, runc, store, no_leaks) -> None:
    (tmp_path / "host").mkdir()
    (tmp_path / "host/in").write_text("from host\n")
    with plan_mounts("prt1", binds=[f"{tmp_path}/host:/h:ro", "xrt:/data"], tmpfs={"/t": "size=1m"},
                     store=store, pin_root=tmp_path / "pins") as plan:
        code, out = run_project_runtime(tmp_path, busybox_rootfs, list(plan),
                                        "cat /h/in > /data/copied; echo pystack-runtime >> /data/copied;"
                                        "grep -E ' /t ' /proc/mounts; touch /h/x 2>/dev/null || echo ro")
    assert code == 0, out
    lines = out.splitlines()
    assert lines[-1] == "ro" and {"nosuid", "nodev", "noexec"} <= set(lines[-2].split()[3].split(","))
    with plan_mounts("runc1", binds=["xrt:/data"], store=store, pin_root=tmp_path / "pins") as plan:
        assert runc.run(list(plan), "cat /data/copied").stdout == "from host\npystack-runtime\n"
    no_leaks()
