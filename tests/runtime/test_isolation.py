"""What a container must not see or do (Docker's defaults from part B's default_spec):
its own processes, hostname, interfaces and mounts only; no mount, no module loading, no
writes to /proc/sys or /sys; no leaked host fds; symlinks in the image cannot move a
mount target onto the host."""
from __future__ import annotations

import os
from pathlib import Path

from rtutil import new_id, run_container


def test_sees_only_its_own_world(runtime, make_bundle, overlay):
    script = (
        "echo pids: /proc/[0-9]*; echo host: $(hostname); echo links: $(ls /sys/class/net); "
        "echo root: $(ls -d /..); "
        "grep -c . /proc/self/mounts"
    )
    code, out = run_container(runtime, make_bundle(["sh", "-c", script]), overlay())
    assert code == 0, out
    lines = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
    assert lines["pids"] == "/proc/1"
    assert lines["host"] == "ctest"
    assert lines["links"] == "lo"
    assert lines["root"] == "/.."
    # its mount table is its own, much shorter than the host's
    n = int(out.splitlines()[-1])
    assert n < len(Path("/proc/self/mounts").read_text().splitlines()) + 30 and n < 40


def test_no_host_fds_in_pid1(runtime, make_bundle, overlay):
    """PID 1 holds stdio only: no fd of the runtime, shim or caller leaks (CVE-2024-21626)."""
    cid = new_id()
    extra = os.open("/", os.O_RDONLY)  # an inheritable-looking fd in the caller
    try:
        runtime.create(cid, make_bundle(["sleep", "30"]), **overlay())
        runtime.start(cid)
        pid = runtime.state(cid)["pid"]
        assert sorted(os.listdir(f"/proc/{pid}/fd")) == ["0", "1", "2"]
        assert os.readlink(f"/proc/{pid}/cwd") == "/"  # inside its own root
        status = Path(f"/proc/{pid}/status").read_text()
        assert "NoNewPrivs:\t0" in status and "Seccomp:\t2" in status
    finally:
        os.close(extra)
        runtime.delete(cid, force=True)


def test_cannot_touch_the_host(runtime, make_bundle, overlay):
    checks = [
        "mount -t tmpfs none /mnt",                 # no CAP_SYS_ADMIN
        "echo 1 > /proc/sys/kernel/panic",          # /proc/sys read-only
        "echo x > /sys/kernel/uevent_helper",       # /sys read-only
        "insmod /nonexistent.ko",                   # no CAP_SYS_MODULE
        "mknod /tmp/sda b 8 0 && cat /tmp/sda",     # device cgroup denies the disk
        "cat /proc/kcore",                          # masked
        "hostname evil",                            # no CAP_SYS_ADMIN
        "touch /sys/fs/cgroup/memory/x",            # cgroupfs read-only
        "ip link add dummy0 type dummy",            # no CAP_NET_ADMIN
        "echo c > /proc/sysrq-trigger",             # read-only
        "unshare -m true",                          # seccomp / no SYS_ADMIN
    ]
    script = "; ".join(f"({c}) >/dev/null 2>&1 && echo ALLOWED: {c!r}" for c in checks) + "; true"
    code, out = run_container(runtime, make_bundle(["sh", "-c", script]), overlay())
    assert code == 0
    assert "ALLOWED" not in out, out
    # and it did not change the host
    import socket
    assert socket.gethostname() != "evil"
    assert not any(line.startswith("dummy0") for line in os.listdir("/sys/class/net"))


def test_read_only_root_and_masked_paths(runtime, make_bundle, overlay):
    def ro(spec):
        spec["root"]["readonly"] = True
    script = ("touch /x 2>/dev/null && echo wrote-root; touch /tmp/x 2>/dev/null && echo wrote-tmp; "
              "cat /proc/timer_list | wc -c; ls /sys/firmware | wc -l; echo done")
    code, out = run_container(runtime, make_bundle(["sh", "-c", script], edit=ro), overlay())
    assert code == 0
    assert out.split() == ["0", "0", "done"]


def test_symlinks_in_the_image_stay_inside(runtime, make_bundle, overlay, tmp_path):
    """Mount destinations through absolute and ``..`` symlinks are resolved inside the
    root (CVE-2021-30465 class): nothing appears on the host."""
    canary = tmp_path / "canary"
    canary.mkdir()
    src = tmp_path / "src"
    src.mkdir()
    (src / "file").write_text("volume\n")
    kw = overlay()
    upper = kw["rootfs_upper"]
    os.symlink(str(canary), upper / "abs")            # /abs -> <host canary dir>
    os.symlink("../../../../../../" + str(canary).lstrip("/"), upper / "rel")

    def add_mounts(spec):
        spec["mounts"] += [
            {"destination": "/abs/a", "type": "bind", "source": str(src), "options": ["rbind"]},
            {"destination": "/rel/b", "type": "bind", "source": str(src), "options": ["rbind"]},
        ]
    script = f"cat /abs/a/file /rel/b/file; ls -d {canary}/a {canary}/b"
    code, out = run_container(runtime, make_bundle(["sh", "-c", script], edit=add_mounts), kw)
    assert out.splitlines()[:2] == ["volume", "volume"]
    assert list(canary.iterdir()) == []  # the host directory was never touched
    assert code == 0


def test_escape_to_host_root_fails(runtime, make_bundle, overlay, tmp_path):
    """chroot tricks need CAP_SYS_CHROOT + an fd to the outside: with no host fd and the
    old root detached, ``/..`` and /proc/1/root all stay in the container."""
    marker = tmp_path / "host-only-marker"
    marker.write_text("host\n")
    script = (f"cat {marker} 2>/dev/null && echo ESCAPED; "
              f"cat /proc/1/root{marker} 2>/dev/null && echo ESCAPED; "
              f"mkdir -p /j && chroot /j /bin/true 2>/dev/null; cd /../../..; "
              f"cat .{marker} 2>/dev/null && echo ESCAPED; echo end")
    code, out = run_container(runtime, make_bundle(["sh", "-c", script]), overlay())
    assert "ESCAPED" not in out and out.strip().endswith("end")


def test_private_network_namespace_join_by_path(runtime, make_bundle, overlay, tmp_path):
    """Joining namespaces by path (network_mode: container:x): the second container sees
    the first one's hostname-independent network namespace."""
    first = make_bundle(["sleep", "30"])
    cid = new_id()
    runtime.create(cid, first, **overlay())
    runtime.start(cid)
    try:
        pid = runtime.state(cid)["pid"]
        netns = f"/proc/{pid}/ns/net"

        def join(spec):
            spec["linux"]["namespaces"] = [n if n["type"] != "network" else
                                           {"type": "network", "path": netns}
                                           for n in spec["linux"]["namespaces"]]
        b = make_bundle(["sh", "-c", "readlink /proc/self/ns/net"], edit=join)
        code, out = run_container(runtime, b, overlay())
        assert code == 0
        assert out.strip() == os.readlink(netns)
    finally:
        runtime.delete(cid, force=True)


def test_host_namespaces_when_the_spec_has_none(runtime, make_bundle, overlay):
    """A spec without a network, IPC or UTS namespace (network_mode: host, ipc: host)
    gets the host's, though the library's pre-forked inits make new ones in advance; and
    without a pid namespace (pid: host) the container sees the host's processes. Several
    runs in a row, so that both a pre-forked init and a freshly forked one serve them."""
    script = "for n in net ipc uts pid; do readlink /proc/self/ns/$n; done"

    def host(*kinds):
        def edit(spec):
            spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"]
                                           if n["type"] not in kinds]
            spec["linux"].pop("sysctl", None)  # Docker's two net sysctls need a private netns
            if "uts" in kinds:
                spec.pop("hostname", None)
        return edit

    ours = {k: os.readlink(f"/proc/self/ns/{k}") for k in ("net", "ipc", "uts", "pid")}
    shared = make_bundle(["sh", "-c", script], edit=host("network", "ipc", "uts"))
    hostpid = make_bundle(["sh", "-c", script + "; test -e /proc/1/cmdline && echo many"],
                          edit=host("pid", "network"))
    private = make_bundle(["sh", "-c", script])
    for _ in range(2):
        code, out = run_container(runtime, shared, overlay())
        assert code == 0, out
        net, ipc, uts, pid = out.split()
        assert (net, ipc, uts) == (ours["net"], ours["ipc"], ours["uts"]) and pid != ours["pid"]
        code, out = run_container(runtime, hostpid, overlay())
        assert code == 0, out
        net, ipc, uts, pid, many = out.split()
        assert pid == ours["pid"] and net == ours["net"] and many == "many"
        assert ipc != ours["ipc"] and uts != ours["uts"]
        code, out = run_container(runtime, private, overlay())
        assert code == 0, out
        assert not set(out.split()) & set(ours.values())


def test_proc_mount_rules(runtime, make_bundle, overlay, tmp_path):
    """Nothing but procfs goes on /proc, binds only over runc's allow-list of files, and
    procfs is never mounted through a symlink planted in the image."""
    from pystack.errors import UserError
    import pytest
    src = tmp_path / "fake"
    src.mkdir()

    def bind_over_proc_sys(spec):
        spec["mounts"].append({"destination": "/proc/sys", "type": "bind", "source": str(src),
                               "options": ["rbind"]})
    with pytest.raises(UserError, match="/proc/sys"):
        runtime.create(new_id(), make_bundle(["true"], edit=bind_over_proc_sys), **overlay())
    (tmp_path / "meminfo").write_text("MemTotal: 1 kB\n")

    def lxcfs_style(spec):
        spec["mounts"].append({"destination": "/proc/meminfo", "type": "bind",
                               "source": str(tmp_path / "meminfo"), "options": ["rbind", "ro"]})
    code, out = run_container(runtime, make_bundle(["cat", "/proc/meminfo"], edit=lxcfs_style),
                              overlay())
    assert (code, out) == (0, "MemTotal: 1 kB\n")
    kw = overlay()
    os.makedirs(kw["rootfs_upper"] / "fakeproc")
    os.rmdir(kw["rootfs_upper"] / "proc") if (kw["rootfs_upper"] / "proc").exists() else None
    os.symlink("/fakeproc", kw["rootfs_upper"] / "proc")
    with pytest.raises(UserError, match="symlink"):
        runtime.create(new_id(), make_bundle(["true"]), **kw)
    assert runtime.list() == []
