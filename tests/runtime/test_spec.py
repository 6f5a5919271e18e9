"""The default OCI spec (Docker's defaults) and its validation; runc runs it as an oracle."""
from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from pystack.errors import UserError
from pystack.runtime import caps
from pystack.runtime.spec import default_spec, validate_spec


def test_shape_matches_runc_spec(tmp_path: Path) -> None:
    """Every key `runc spec` writes is there, with Docker's values where they differ."""
    subprocess.run(["runc", "spec"], cwd=tmp_path, check=True)
    runc = json.loads((tmp_path / "config.json").read_text())
    ours = default_spec()
    assert set(runc) - {"hostname"} <= set(ours)
    assert set(runc["process"]) - {"terminal"} <= set(ours["process"]) | {"terminal"}
    assert set(runc["linux"]) <= set(ours["linux"])
    assert ours["ociVersion"] == runc["ociVersion"]
    assert ours["process"]["args"] == ["sh"] and ours["process"]["terminal"] is False
    assert ours["process"]["env"][0] == runc["process"]["env"][0]   # the same PATH
    assert {m["destination"] for m in runc["mounts"]} <= {m["destination"] for m in ours["mounts"]}
    assert set(runc["linux"]["maskedPaths"]) <= set(ours["linux"]["maskedPaths"])
    assert set(runc["linux"]["readonlyPaths"]) <= set(ours["linux"]["readonlyPaths"])


def test_docker_defaults() -> None:
    s = default_spec(["echo", "hi"], terminal=True, hostname="web")
    p = s["process"]
    assert p["args"] == ["echo", "hi"] and "TERM=xterm" in p["env"]
    assert s["hostname"] == "web"
    for k in ("bounding", "effective", "permitted"):
        assert sorted(p["capabilities"][k]) == sorted(caps.DOCKER_DEFAULT)
    assert "inheritable" not in p["capabilities"] and "ambient" not in p["capabilities"]
    ns = [n["type"] for n in s["linux"]["namespaces"]]
    assert {"pid", "network", "ipc", "uts", "mount"} <= set(ns)
    assert ("cgroup" in ns) == os.path.exists("/proc/self/ns/cgroup")
    mounts = {m["destination"]: m for m in s["mounts"]}
    assert "ro" in mounts["/sys"]["options"] and "ro" in mounts["/sys/fs/cgroup"]["options"]
    assert "size=65536k" in mounts["/dev/shm"]["options"]
    assert mounts["/dev/mqueue"]["type"] == "mqueue"
    assert "/proc/kcore" in s["linux"]["maskedPaths"]
    assert "/sys/firmware" in s["linux"]["maskedPaths"]
    assert "/proc/sys" in s["linux"]["readonlyPaths"]
    dev = s["linux"]["resources"]["devices"]
    assert dev[0] == {"allow": False, "access": "rwm"}
    assert dev[-1]["major"] == 10 and dev[-1]["minor"] == 229 and not dev[-1]["allow"]
    sec = s["linux"]["seccomp"]
    assert sec["defaultAction"] == "SCMP_ACT_ERRNO"
    assert not any("mount" in r["names"] and r["action"] == "SCMP_ACT_ALLOW" for r in sec["syscalls"])
    validate_spec(s)
    assert "seccomp" not in default_spec(seccomp=False)["linux"]
    # a fresh copy each time: callers may mutate it
    a = default_spec(); a["mounts"].clear(); assert default_spec()["mounts"]


BAD = [
    (lambda s: s["process"]["capabilities"]["bounding"].append("CAP_FLY"),
     r"process\.capabilities\.bounding\[14\]: unknown capability"),
    (lambda s: s["linux"]["sysctl"].update({"kernel.panic": "1"}),
     r"linux\.sysctl\.kernel\.panic: not a namespaced sysctl"),
    (lambda s: s["linux"]["sysctl"].update({"kernel.hostname": "x"}),
     r"linux\.sysctl\.kernel\.hostname"),
    (lambda s: s["linux"]["namespaces"].append({"type": "pid"}),
     r"linux\.namespaces\[\d+\]\.type: duplicate"),
    (lambda s: s["linux"]["namespaces"].append({"type": "bogus"}),
     r"linux\.namespaces\[\d+\]\.type: unknown"),
    (lambda s: s["mounts"].append({"destination": "tmp", "type": "tmpfs"}),
     r"mounts\[7\]\.destination: must be an absolute path"),
    (lambda s: s["process"].update(args=[]), r"process\.args"),
    (lambda s: s["process"].update(cwd="rel"), r"process\.cwd"),
    (lambda s: s["process"].update(oomScoreAdj=5000), r"process\.oomScoreAdj"),
    (lambda s: s["process"]["rlimits"].append({"type": "RLIMIT_FOO", "soft": 1, "hard": 1}),
     r"process\.rlimits\[0\]\.type: unknown rlimit"),
    (lambda s: s["process"]["rlimits"].append({"type": "RLIMIT_NOFILE", "soft": 10, "hard": 5}),
     r"exceeds hard limit"),
    (lambda s: s["linux"]["resources"].update(memory={"limit": 1024}),
     r"linux\.resources\.memory\.limit: minimum memory limit allowed is 6MB"),
    (lambda s: s["linux"]["resources"].update(memory={"limit": 64 << 20, "swap": 32 << 20}),
     r"linux\.resources\.memory\.swap"),
    (lambda s: s["linux"]["resources"].update(cpu={"quota": 10}), r"linux\.resources\.cpu\.quota"),
    (lambda s: s["linux"]["resources"].update(cpu={"cpus": "1-0"}), r"linux\.resources\.cpu\.cpus"),
    (lambda s: s["linux"]["seccomp"].update(defaultAction="SCMP_ACT_WHAT"),
     r"linux\.seccomp\.defaultAction"),
    (lambda s: s.update(ociVersion="0.9"), r"ociVersion"),
    (lambda s: s["root"].pop("path"), r"root\.path"),
]


@pytest.mark.parametrize("mutate, message", BAD)
def test_validate_names_the_field(mutate, message) -> None:
    s = default_spec(hostname="x")
    mutate(s)
    with pytest.raises(UserError, match=message):
        validate_spec(s)


def test_net_sysctl_needs_private_netns() -> None:
    s = default_spec()
    s["linux"]["namespaces"] = [n for n in s["linux"]["namespaces"] if n["type"] != "network"]
    with pytest.raises(UserError, match=r"linux\.sysctl\.net\.ipv4\.ip_unprivileged_port_start: "
                                        r"the container shares the host's net namespace"):
        validate_spec(s)
    # joining the host's netns by path is still the host's
    s["linux"]["namespaces"].append({"type": "network", "path": "/proc/self/ns/net"})
    with pytest.raises(UserError, match="shares the host's net namespace"):
        validate_spec(s)


@pytest.mark.oracle
def test_runc_runs_the_default_spec(tmp_path: Path, busybox_rootfs: Path) -> None:
    """runc (the reference runtime) accepts the spec and gives Docker's hardening."""
    parent = f"pystack-test-{uuid.uuid4().hex[:8]}"
    cid = "spec" + uuid.uuid4().hex[:8]
    s = default_spec(["sh", "-c",
                      "grep -E '^Cap(Eff|Bnd|Inh)' /proc/self/status; hostname; "
                      "cat /proc/sys/net/ipv4/ip_unprivileged_port_start; "
                      "wc -c < /proc/interrupts; unshare -u true 2>&1; echo rc=$?"],
                     rootfs=str(busybox_rootfs), hostname="specbox")
    s["root"]["readonly"] = True
    s["linux"]["cgroupsPath"] = f"/{parent}/{cid}"
    (tmp_path / "config.json").write_text(json.dumps(s))
    root = tmp_path / "runc-root"
    try:
        p = subprocess.run(["runc", "--root", str(root), "run", "--bundle", str(tmp_path), cid],
                           capture_output=True, text=True, timeout=60)
    finally:
        subprocess.run(["runc", "--root", str(root), "delete", "-f", cid], capture_output=True)
        from pystack.runtime import cgroups
        left = cgroups.list_cgroups(parent)   # runc removes its own cgroup on delete
        cgroups.cleanup_parent(parent)
    assert left == set()
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    status = {l.split(":")[0]: int(l.split(":")[1], 16) for l in lines[:3]}
    assert status["CapEff"] == status["CapBnd"] == caps.to_mask(caps.DOCKER_DEFAULT)
    assert status["CapInh"] == 0
    assert lines[3] == "specbox"
    assert lines[4] == "0"
    assert lines[5].strip() == "0"              # /proc/interrupts masked by /dev/null
    assert "Operation not permitted" in lines[6] and lines[7] == "rc=1"
    assert str(tmp_path) not in Path("/proc/self/mounts").read_text()


def test_sysctl_apply_in_own_netns() -> None:
    """A namespaced sysctl written inside a fresh network namespace stays there."""
    import sys
    host_before = Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text()
    code = ("from pystack.runtime import sysctl\n"
            "sysctl.apply({'net.ipv4.ip_unprivileged_port_start': '77',"
            " 'net/ipv4/ping_group_range': '0 5'})\n"
            "print(open('/proc/sys/net/ipv4/ip_unprivileged_port_start').read().strip(),"
            " open('/proc/sys/net/ipv4/ping_group_range').read().split())\n")
    out = subprocess.run(["unshare", "-n", sys.executable, "-c", code],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "77 ['0', '5']"
    assert Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text() == host_before


def test_sysctl_namespace_classes() -> None:
    from pystack.runtime import sysctl
    assert sysctl.namespace_of("kernel.shmmax") == "ipc"
    assert sysctl.namespace_of("fs.mqueue.msg_max") == "ipc"
    assert sysctl.namespace_of("net.core.somaxconn") == "net"
    assert sysctl.namespace_of("kernel.domainname") == "uts"
    assert sysctl.namespace_of("kernel.pid_max") is None
    assert sysctl.namespace_of("vm.overcommit_memory") is None
    with pytest.raises(UserError, match="invalid sysctl name"):
        sysctl.validate({"net..x": "1"}, [{"type": "network"}])
    with pytest.raises(UserError, match="invalid sysctl name"):
        sysctl.proc_path("net/../../kernel/panic")


def test_make_privileged() -> None:
    from pystack.runtime.spec import make_privileged
    s = make_privileged(default_spec())
    assert s["process"]["capabilities"]["bounding"] == caps.all_caps()
    assert s["linux"]["maskedPaths"] == [] and s["linux"]["readonlyPaths"] == []
    assert "seccomp" not in s["linux"]
    assert s["linux"]["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    sys_mount = next(m for m in s["mounts"] if m["destination"] == "/sys")
    assert "ro" not in sys_mount["options"]
    validate_spec(s)
