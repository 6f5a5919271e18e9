"""Seccomp filters loaded for real in child processes (libseccomp through ctypes)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pystack.errors import UserError
from pystack.runtime import caps, seccomp

pytestmark = pytest.mark.skipif(not seccomp.available()[0], reason=seccomp.available()[1])

CHILD = r"""
import ctypes, json, os, sys
from pystack.runtime import seccomp
section = json.loads(sys.argv[1])
nnp = sys.argv[2] == "1"
f = seccomp.Filter.compile(section, no_new_privileges=nnp)
f.load()
if len(sys.argv) > 3:
    os.execv(sys.argv[3], sys.argv[3:])
libc = ctypes.CDLL(None, use_errno=True)
res = {}
r = libc.unshare(0x04000000)  # CLONE_NEWUTS
res["unshare"] = 0 if r == 0 else ctypes.get_errno()
r = libc.unshare(0)
res["unshare0"] = 0 if r == 0 else ctypes.get_errno()
r = libc.syscall(435, 0, 0)   # clone3(NULL, 0): EFAULT/EINVAL if allowed, ENOSYS if filtered
res["clone3"] = ctypes.get_errno()
res["getpid"] = os.getpid() > 0
with open("/proc/self/status") as fh:
    res["mode"] = [l.split()[1] for l in fh if l.startswith("Seccomp:")][0]
    fh.seek(0)
    res["nnp"] = [l.split()[1] for l in fh if l.startswith("NoNewPrivs:")][0]
print(json.dumps(res))
"""


def run(section: dict, nnp: bool = False, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CHILD, json.dumps(section),
                           "1" if nnp else "0", *argv], capture_output=True, text=True)


def test_available_reports_version() -> None:
    ok, detail = seccomp.available()
    assert ok and detail.startswith("libseccomp 2.")


def test_rule_blocks_unshare_with_errno() -> None:
    section = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
               "syscalls": [{"names": ["unshare"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}
    p = run(section)
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert res["unshare"] == 13  # EACCES, as asked
    assert res["mode"] == "2" and res["nnp"] == "0"


def test_arg_condition() -> None:
    # unshare(CLONE_NEWUTS) matches the masked comparison; unshare(0) does not
    section = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["unshare"], "action": "SCMP_ACT_ERRNO", "errnoRet": 22,
         "args": [{"index": 0, "value": 0x04000000, "valueTwo": 0x04000000,
                   "op": "SCMP_CMP_MASKED_EQ"}]}]}
    p = run(section)
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert res["unshare"] == 22
    assert res["unshare0"] == 0


def test_docker_default_blocks_unshare_and_clone3() -> None:
    section = seccomp.default_oci(caps.DOCKER_DEFAULT)
    p = run(section, True)
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert res["unshare"] == 1       # EPERM: unshare needs CAP_SYS_ADMIN in the profile
    assert res["clone3"] == 38       # ENOSYS so that libc falls back to clone
    assert res["getpid"] and res["nnp"] == "1"


def test_docker_default_with_sys_admin_allows_unshare() -> None:
    section = seccomp.default_oci(list(caps.DOCKER_DEFAULT) + ["CAP_SYS_ADMIN"])
    p = run(section)
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert res["unshare"] == 0
    assert res["clone3"] != 38


def test_docker_default_exec_busybox(busybox_rootfs) -> None:
    bb = str(busybox_rootfs / "bin" / "busybox")
    section = seccomp.default_oci(caps.DOCKER_DEFAULT)
    p = run(section, True, bb, "sh", "-c", "echo hello; " + bb + " unshare -u true")
    assert p.stdout.startswith("hello")
    assert p.returncode != 0
    assert "Operation not permitted" in p.stderr


def test_docker_profile_resolution() -> None:
    prof = seccomp.docker_profile()
    assert any("Apache" in line for line in prof["comment"])
    plain = seccomp.docker_to_oci(prof, caps.DOCKER_DEFAULT, arch="x86_64", kernel=(6, 1))
    assert plain["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    assert plain["defaultAction"] == "SCMP_ACT_ERRNO" and plain["defaultErrnoRet"] == 1
    names = {n for r in plain["syscalls"] if r["action"] == "SCMP_ACT_ALLOW" and not r.get("args")
             for n in r["names"]}
    assert {"read", "chroot", "arch_prctl", "ptrace"} <= names
    assert not {"mount", "unshare", "keyctl", "kexec_load", "reboot", "io_uring_setup"} & names
    admin = seccomp.docker_to_oci(prof, ["CAP_SYS_ADMIN"], arch="x86_64", kernel=(6, 1))
    admin_names = {n for r in admin["syscalls"] for n in r["names"]}
    assert "mount" in admin_names and "chroot" not in admin_names
    assert not any(r["names"] == ["clone3"] and r["action"] == "SCMP_ACT_ERRNO"
                   for r in admin["syscalls"])
    old = seccomp.docker_to_oci(prof, [], arch="x86_64", kernel=(4, 4))
    assert "ptrace" not in {n for r in old["syscalls"] for n in r["names"]}
    arm = seccomp.docker_to_oci(prof, [], arch="aarch64")
    assert arm["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert "set_tls" in {n for r in arm["syscalls"] for n in r["names"]}


@pytest.mark.parametrize("section, field", [
    ({"defaultAction": "SCMP_ACT_NOPE"}, "linux.seccomp.defaultAction"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_Z80"]},
     "linux.seccomp.architectures[0]"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_NOTIFY"}]},
     "linux.seccomp.syscalls[0].action"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",
      "args": [{"index": 7, "value": 1, "op": "SCMP_CMP_EQ"}]}]},
     "linux.seccomp.syscalls[0].args[0].index"),
])
def test_validate_names_the_field(section: dict, field: str) -> None:
    with pytest.raises(UserError, match=field.replace("[", r"\[").replace("]", r"\]")):
        seccomp.validate(section)


def test_flags_use_the_seccomp_syscall() -> None:
    section = {"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_LOG"],
               "syscalls": [{"names": ["unshare"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}
    p = run(section)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["unshare"] == 13


def test_compiled_program_is_cached(tmp_path) -> None:
    section = seccomp.default_oci(caps.DOCKER_DEFAULT)
    a = seccomp.Filter.compile(section, cache_dir=tmp_path)
    files = list(tmp_path.glob("*.json"))
    assert len(files) == 1
    seccomp._CACHE.clear()
    b = seccomp.Filter.compile(section, cache_dir=tmp_path)   # from disk, no libseccomp run
    assert b.bpf == a.bpf and b.skipped == a.skipped
    assert len(a.bpf) % 8 == 0 and len(a.bpf) > 8 * 100
    other = seccomp.Filter.compile(seccomp.default_oci(list(caps.DOCKER_DEFAULT) + ["CAP_SYS_ADMIN"]),
                                   cache_dir=tmp_path)
    assert other.bpf != a.bpf and len(list(tmp_path.glob("*.json"))) == 2


def test_from_security_opt(tmp_path) -> None:
    assert seccomp.from_security_opt("unconfined", caps.DOCKER_DEFAULT) is None
    assert seccomp.from_security_opt("builtin", caps.DOCKER_DEFAULT) == seccomp.default_oci(caps.DOCKER_DEFAULT)
    f = tmp_path / "profile.json"
    f.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW",
                             "archMap": [{"architecture": "SCMP_ARCH_X86_64",
                                          "subArchitectures": ["SCMP_ARCH_X86"]}],
                             "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO",
                                           "includes": {"caps": ["CAP_SYS_ADMIN"]}},
                                          {"names": ["rmdir"], "action": "SCMP_ACT_ERRNO"}]}))
    sec = seccomp.from_security_opt(str(f), caps.DOCKER_DEFAULT)
    assert [r["names"] for r in sec["syscalls"]] == [["rmdir"]]
    f.write_text(json.dumps({"defaultAction": "SCMP_ACT_BOGUS"}))
    with pytest.raises(UserError, match=r"seccomp profile .*profile\.json\.defaultAction"):
        seccomp.from_security_opt(str(f), [])
    f.write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        seccomp.from_security_opt(str(f), [])
    with pytest.raises(UserError, match="No such file"):
        seccomp.from_security_opt(str(tmp_path / "missing.json"), [])
