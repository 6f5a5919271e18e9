"""End to end: specs from pystack.engine.specgen run over the busybox rootfs with pystack's
runtime AND with runc (Debian), and the two outputs compared."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from pystack.engine import specgen

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="containers need root")


@pytest.fixture
def cg_parent():
    """A cgroup parent of our own; every hierarchy's dir of it removed afterwards."""
    name = "pystack-specgen-" + uuid.uuid4().hex[:8]
    yield name
    for root in Path("/sys/fs/cgroup").iterdir():
        for d in sorted(root.glob(f"{name}/**/"), key=lambda p: -len(p.parts)):
            try:
                d.rmdir()
            except OSError:
                pass


@pytest.fixture
def runner(tmp_path, busybox_rootfs, cg_parent):
    """runner(config, host_config, files=None, netns=None) -> {"pystack": (code, out), "runc": ...}"""
    from pystack.runtime import Runtime
    rt = Runtime(tmp_path / "state")
    made: list[str] = []
    counter = iter(range(1000))

    def run(config: dict, hc: dict | None = None, *, files=None, netns=None, which=("pystack", "runc")) -> dict:
        hc = {"NetworkMode": "none", **(hc or {})}
        cfg = specgen.merge_image_config({"Image": "busybox", **config},
                                         {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                                          "Cmd": ["sh"]})
        specgen.check_create_body({**config, "Image": "busybox", "HostConfig": hc})
        results = {}
        for kind in which:
            n = next(counter)
            cid = f"sg{n}-" + uuid.uuid4().hex[:12]
            spec = specgen.build_spec(cid, cfg, hc, mounts=[], netns=netns, files=files or {},
                                      cgroup_parent=cg_parent, rootfs=str(busybox_rootfs))
            b = tmp_path / f"b{n}"
            b.mkdir()
            if kind == "runc":
                shutil.copytree(busybox_rootfs, b / "rootfs", symlinks=True)
            else:
                (b / "rootfs").mkdir()
            (b / "config.json").write_text(json.dumps(spec))
            if kind == "runc":
                p = subprocess.run(["runc", "--root", str(tmp_path / "runc"), "run", cid], cwd=b,
                                   stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
                subprocess.run(["runc", "--root", str(tmp_path / "runc"), "delete", "-f", cid],
                               capture_output=True)
                results[kind] = (p.returncode, p.stdout + p.stderr)
            else:
                up, work = tmp_path / f"u{n}", tmp_path / f"w{n}"
                up.mkdir()
                work.mkdir()
                out = tmp_path / f"out{n}"
                fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                null = os.open(os.devnull, os.O_RDONLY)
                try:
                    rt.create(cid, b, stdio=(null, fd, fd), rootfs_lowerdirs=[busybox_rootfs],
                              rootfs_upper=up, rootfs_work=work)
                    made.append(cid)
                finally:
                    os.close(fd)
                    os.close(null)
                try:
                    rt.start(cid)
                    code = rt.wait(cid, timeout=60)
                finally:
                    rt.delete(cid, force=True)
                results[kind] = (code, out.read_text())
        return results

    yield run
    for st in rt.list():
        try:
            rt.delete(st["id"], force=True)
        except Exception:  # noqa: BLE001
            pass
    rt.close()


needs_runc = pytest.mark.skipif(shutil.which("runc") is None, reason="runc (Debian package runc) not installed")


def same(res: dict) -> str:
    """Both runtimes exited 0 with the same output; that output."""
    assert res["pystack"][0] == 0, res
    if "runc" in res:
        assert res["runc"] == res["pystack"], res
    return res["pystack"][1]


@needs_runc
def test_user_and_groups(runner):
    out = same(runner({"Cmd": ["id"], "User": "app"}, {"GroupAdd": ["daemon"]}))
    assert out.strip() == "uid=1000(app) gid=1000(app) groups=100(users),1(daemon),1000(app)" or \
        out.startswith("uid=1000(app) gid=1000(app)"), out
    out = same(runner({"Cmd": ["id"], "User": "33:100"}))
    assert out.startswith("uid=33(www-data) gid=100(users)"), out


@needs_runc
def test_env_cwd_hostname(runner):
    out = same(runner({"Cmd": ["sh", "-c", "pwd; env | sort; hostname"], "Env": ["FOO=bar", "PATH=/bin"],
                       "WorkingDir": "/tmp", "Hostname": "spec-host", "User": "app"}))
    lines = out.split()
    assert lines[0] == "/tmp"
    assert "FOO=bar" in lines and "PATH=/bin" in lines and "HOSTNAME=spec-host" in lines
    assert "HOME=/home/app" in lines
    assert lines[-1] == "spec-host"


@needs_runc
def test_readonly_rootfs_and_tmpfs(runner):
    out = same(runner({"Cmd": ["sh", "-c", "touch /x 2>/dev/null && echo rw || echo ro; "
                                           "touch /scratch/y && echo tmpfs-ok; grep ' /scratch ' /proc/mounts"]},
                      {"ReadonlyRootfs": True, "Tmpfs": {"/scratch": "size=1m"}}))
    assert out.splitlines()[:2] == ["ro", "tmpfs-ok"]
    assert "nosuid" in out and "noexec" in out and "size=1024k" in out


@needs_runc
def test_memory_and_pids_limits_visible_in_cgroup(runner):
    cmd = ("cat /proc/self/cgroup | grep -q memory && "
           "for f in /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max "
           "/sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max; do [ -e $f ] && cat $f; done; true")
    res = runner({"Cmd": ["sh", "-c", cmd]}, {"Memory": 32 << 20, "PidsLimit": 42})
    out = same(res)
    assert str(32 << 20) in out.split() and "42" in out.split(), out


@needs_runc
def test_capabilities(runner):
    from pystack.runtime.caps import from_mask
    out = same(runner({"Cmd": ["grep", "Cap", "/proc/self/status"]},
                      {"CapAdd": ["NET_ADMIN"], "CapDrop": ["CHOWN", "MKNOD"]}))
    eff = from_mask(int([ln for ln in out.splitlines() if ln.startswith("CapEff")][0].split()[1], 16))
    assert "CAP_NET_ADMIN" in eff and "CAP_CHOWN" not in eff and "CAP_MKNOD" not in eff
    assert "CAP_KILL" in eff and "CAP_SYS_ADMIN" not in eff


@needs_runc
def test_security_opts_ulimits_sysctls(runner):
    cmd = "grep -E 'NoNewPrivs|Seccomp:' /proc/self/status; ulimit -n; cat /proc/sys/kernel/shmmax"
    out = same(runner({"Cmd": ["sh", "-c", cmd]},
                      {"SecurityOpt": ["no-new-privileges"], "Ulimits": [{"Name": "nofile", "Soft": 123, "Hard": 456}],
                       "Sysctls": {"kernel.shmmax": "12345678"}}))
    assert "NoNewPrivs:\t1" in out and "Seccomp:\t2" in out
    assert out.split()[-2:] == ["123", "12345678"], out
    out = same(runner({"Cmd": ["grep", "Seccomp:", "/proc/self/status"]}, {"SecurityOpt": ["seccomp=unconfined"]}))
    assert "Seccomp:\t0" in out


@needs_runc
def test_files_bind_mounted(runner, tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n10.211.9.9 specgen-peer\n")
    out = same(runner({"Cmd": ["sh", "-c", "cat /etc/hosts; (echo x >> /etc/hosts) 2>/dev/null && echo writable; true"]},
                      {"ReadonlyRootfs": True}, files={"/etc/hosts": str(hosts)}))
    assert "specgen-peer" in out and "writable" not in out


@needs_runc
def test_shm_size_and_ipc_none(runner):
    out = same(runner({"Cmd": ["sh", "-c", "grep /dev/shm /proc/mounts"]}, {"ShmSize": 2 << 20}))
    assert "size=2048k" in out
    res = runner({"Cmd": ["sh", "-c", "grep -c /dev/shm /proc/mounts; true"]}, {"IpcMode": "none"})
    assert same(res).strip() == "0"


@needs_runc
def test_privileged(runner):
    out = same(runner({"Cmd": ["sh", "-c", "grep CapEff /proc/self/status; grep Seccomp: /proc/self/status; "
                                           "grep ' /sys ' /proc/mounts"]}, {"Privileged": True}))
    assert "Seccomp:\t0" in out and " rw," in out.splitlines()[-1] + ","


@needs_runc
def test_devices_and_cgroup_rules(runner):
    out = same(runner({"Cmd": ["sh", "-c", "ls -l /dev/mynull | cut -c1; echo hi > /dev/mynull && echo wrote; "
                                           "cat /dev/mynull | wc -c"]},
                      {"Devices": [{"PathOnHost": "/dev/null", "PathInContainer": "/dev/mynull",
                                    "CgroupPermissions": "rwm"}]}))
    assert out.split() == ["c", "wrote", "0"], out
