"""The same bundle under pystack (library and ``pystack-runtime``) and under runc: same
hostname, pid 1 view, mount table, capability masks, cgroup limits and exit codes."""
from __future__ import annotations

import shutil

import pytest

from rtutil import cli_run, run_container, runc_run

pytestmark = [pytest.mark.oracle,
              pytest.mark.skipif(shutil.which("runc") is None, reason="runc not installed")]

# pid numbers other than 1 differ (runc's Go init uses a few pids for its threads)
PROBE = ("hostname; echo ---; echo pid=$$; ps -o comm; echo /proc/[0-9]*; echo ---; cat /proc/self/mounts; echo ---; "
         "grep ^Cap /proc/self/status; echo ---; ls /dev; echo ---; "
         "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max "
         "/sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || cat /sys/fs/cgroup/memory.max; "
         "echo ---; id; ls /proc/self/fd/ 2>/dev/null | wc -l; exit 7")


def _limits(spec: dict, cgroup_parent: str, name: str) -> None:
    spec["linux"]["cgroupsPath"] = f"/{cgroup_parent}/{name}"
    spec["linux"]["resources"].update({"memory": {"limit": 64 * 1024 * 1024},
                                       "pids": {"limit": 50},
                                       "cpu": {"quota": 50000, "period": 100000}})


@pytest.mark.parametrize("readonly", [False, True])
def test_same_view_as_runc(runtime, make_bundle, tmp_path, cgroup_parent, readonly):
    def edit(name):
        def f(spec):
            _limits(spec, cgroup_parent, name)
            spec["root"]["readonly"] = readonly
        return f

    b_runc = make_bundle(["sh", "-c", PROBE], copy=True, edit=edit("runc1"))
    b_lib = make_bundle(["sh", "-c", PROBE], copy=True, edit=edit("lib1"))
    b_cli = make_bundle(["sh", "-c", PROBE], copy=True, edit=edit("cli1"))
    rc_code, rc_out = runc_run(b_runc, tmp_path / "runc-root")
    lib_code, lib_out = run_container(runtime, b_lib, cid="lib1")
    cli_code, cli_out = cli_run(b_cli, tmp_path / "cli-root", cid="cli1")
    assert rc_code == 7, rc_out
    assert (lib_code, cli_code) == (7, 7)
    assert "67108864" in rc_out and "50000" in rc_out
    assert lib_out == rc_out
    assert cli_out == rc_out


@pytest.mark.parametrize("script,code", [("exit 0", 0), ("exit 42", 42),
                                         ("kill -9 $$", 137), ("kill -SEGV $$", 139)])
def test_exit_codes_like_runc(runtime, make_bundle, tmp_path, script, code):
    b = make_bundle(["sh", "-c", f"sh -c '{script}'; exit $?"], copy=True)
    assert runc_run(b, tmp_path / "runc-root")[0] == code
    assert run_container(runtime, b)[0] == code
    assert cli_run(b, tmp_path / "cli-root")[0] == code


PROCESS_PROBE = ("id; ulimit -n; ulimit -Hn; cat /proc/self/oom_score_adj; umask; pwd; "
                 "grep -E '^(Cap|NoNewPrivs|Seccomp:)' /proc/self/status; "
                 "cat /proc/sys/net/ipv4/ip_unprivileged_port_start; echo $HOME; "
                 "touch /root/x 2>/dev/null || echo no-root-write; exit 0")


def test_process_settings_like_runc(runtime, make_bundle, tmp_path):
    """User and groups, rlimits, oom_score_adj, umask, cwd, no_new_privileges, seccomp,
    sysctls and a non-root user's capabilities: the same under both runtimes."""
    def edit(spec):
        p = spec["process"]
        p["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [100], "umask": 0o027}
        p["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1024}]
        p["oomScoreAdj"] = 100
        p["noNewPrivileges"] = True
        p["cwd"] = "/home/app"
        p["env"].append("HOME=/home/app")
        spec["linux"]["sysctl"]["net.ipv4.ip_unprivileged_port_start"] = "80"
    b = make_bundle(["sh", "-c", PROCESS_PROBE], copy=True, edit=edit)
    rc_code, rc_out = runc_run(b, tmp_path / "runc-root")
    lib_code, lib_out = run_container(runtime, b)
    assert rc_code == 0, rc_out
    assert "uid=1000(app) gid=1000(app) groups=100(users)" in rc_out
    assert "NoNewPrivs:\t1" in rc_out and "512\n1024\n100\n0027\n/home/app" in rc_out
    assert lib_code == 0
    assert lib_out == rc_out
