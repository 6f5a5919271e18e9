"""podman uses ``pystack-runtime`` as its OCI runtime (``--runtime``): conmon drives our
runc-compatible commands, reaps the container and reports its output and exit code.

podman runs with a private --root/--runroot under the test's tmp dir, the cgroupfs
manager, no events and no network; the image is the busybox test rootfs imported with
``podman import``. This machine lacks CAP_SYS_RESOURCE, so podman's default rlimits
(raised hard limits) are replaced with ``--ulimit`` values it can set (runc fails the
same way without them)."""
from __future__ import annotations

import shutil
import subprocess
import tarfile

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.oracle,
              pytest.mark.skipif(shutil.which("podman") is None, reason="podman not installed")]


@pytest.fixture
def podman(tmp_path, busybox_rootfs, cgroup_parent):
    import tempfile
    from pathlib import Path
    short = Path(tempfile.mkdtemp(prefix="psp", dir="/tmp"))  # podman: runroot <= 50 chars
    base = ["podman", "--root", str(short / "root"), "--runroot", str(short / "run"),
            "--tmpdir", str(short / "tmp"), "--cgroup-manager", "cgroupfs",
            "--events-backend", "none", "--storage-driver", "vfs"]
    tar = tmp_path / "rootfs.tar"
    with tarfile.open(tar, "w") as t:
        t.add(busybox_rootfs, arcname=".")
    p = subprocess.run(base + ["import", str(tar), "localhost/pystack-busybox:test"],
                       capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        shutil.rmtree(short, ignore_errors=True)
        pytest.skip(f"podman cannot run here: {p.stderr.strip()}")
    yield base
    subprocess.run(base + ["rm", "--all", "--force"], capture_output=True, timeout=60)
    subprocess.run(base + ["rmi", "--all", "--force"], capture_output=True, timeout=60)
    subprocess.run(["rm", "-rf", str(short)], capture_output=True, timeout=60)
    # podman puts conmon in a "conmon" cgroup under --cgroup-parent and leaves it: podman's,
    # not the runtime's (the cgroup_parent fixture checks that ours are all gone)
    for d in Path("/sys/fs/cgroup").glob(f"*/{cgroup_parent}/conmon"):
        if not (d / "cgroup.procs").read_text().split():
            d.rmdir()


def test_podman_run_with_pystack_runtime(podman, tmp_path, cgroup_parent, no_leaks):
    runtime = shutil.which("pystack-runtime")
    assert runtime
    p = subprocess.run(
        podman + ["--runtime", runtime, "run", "--rm", "--network", "none",
                  "--cgroup-parent", f"/{cgroup_parent}",
                  "--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096",
                  "localhost/pystack-busybox:test",
                  "sh", "-c", "echo hello from pystack; echo pid=$$; cat /proc/1/cmdline; exit 3"],
        capture_output=True, text=True, timeout=120)
    assert p.returncode == 3, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == "hello from pystack"
    assert lines[1] == "pid=1"
    assert lines[2].startswith("sh")
    no_leaks()


def test_podman_tty_detach_exec_stop(podman, cgroup_parent):
    """`podman run -t` (console socket), `run -d`, `exec` and `stop` through our runtime."""
    rt = ["--runtime", shutil.which("pystack-runtime")]
    common = ["--network", "none", "--cgroup-parent", f"/{cgroup_parent}",
              "--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"]

    def pod(*args, timeout=120):
        return subprocess.run(podman + rt + list(args), capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
    p = pod("run", "--rm", "-t", *common, "localhost/pystack-busybox:test",
            "sh", "-c", "tty; exit 5")
    assert p.returncode == 5, p.stderr
    assert p.stdout.strip() == "/dev/pts/0"
    p = pod("run", "-d", "--name", "d1", *common, "localhost/pystack-busybox:test", "sleep", "30")
    assert p.returncode == 0, p.stderr
    p = pod("exec", "d1", "sh", "-c", "echo in-exec; cat /proc/1/cmdline; exit 3")
    assert p.returncode == 3 and p.stdout.startswith("in-exec\nsleep"), (p.stdout, p.stderr)
    p = pod("stop", "-t", "1", "d1")  # sleep as PID 1 ignores SIGTERM: SIGKILL after 1 s
    assert p.returncode == 0, p.stderr
    p = pod("inspect", "--format", "{{.State.ExitCode}}", "d1")
    assert p.stdout.strip() == "137"
    pod("rm", "-f", "d1")
