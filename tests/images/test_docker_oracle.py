"""A real dockerd (Debian's docker.io) as the oracle for archives: ``docker load`` reads
what ``pystack image save`` writes, and pystack loads what ``docker save`` writes (Docker
20.10's legacy ``<id>/layer.tar`` format), with the same image ids and the same files.

The dockerd gets its own socket, data root, exec root, pid file, containerd namespace,
no bridge and no iptables changes; it runs no container and is stopped in teardown.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from pystack.runtime.images.store import ImageStore

pytestmark = [pytest.mark.oracle, pytest.mark.slow]


@pytest.fixture(scope="module")
def docker(tmp_path_factory):
    if shutil.which("dockerd") is None or shutil.which("docker") is None:
        pytest.skip("docker.io not installed (scripts/install.sh installs it)")
    tag = f"psimg{uuid.uuid4().hex[:6]}"
    base = tmp_path_factory.mktemp("dockerd-images")
    run = Path("/run") / tag
    run.mkdir()
    sock = run / "docker.sock"
    log = open(base / "dockerd.log", "w")
    proc = subprocess.Popen(
        ["dockerd", "--host", f"unix://{sock}", "--data-root", str(base / "data"), "--exec-root", str(run / "exec"),
         "--pidfile", str(run / "pid"), "--iptables=false", "--ip6tables=false", "--ip-forward=false",
         "--ip-masq=false", "--bridge=none", "--exec-opt", "native.cgroupdriver=cgroupfs", "--cgroup-parent", tag,
         "--containerd-namespace", tag, "--containerd-plugins-namespace", f"{tag}-p"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def cli(*args: str, input: bytes | None = None) -> subprocess.CompletedProcess:
        p = subprocess.run(["docker", "-H", f"unix://{sock}", *args], capture_output=True, input=input, timeout=120)
        assert p.returncode == 0, f"docker {' '.join(args)}: {p.stderr.decode()}"
        return p
    try:
        deadline = time.monotonic() + 60
        while subprocess.run(["docker", "-H", f"unix://{sock}", "version"], capture_output=True).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dockerd did not start: {(base / 'dockerd.log').read_text()[-2000:]}")
            time.sleep(0.2)
        yield cli
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(run, ignore_errors=True)
        leaked = [line.split()[4] for line in open("/proc/self/mountinfo") if str(base) in line or tag in line]
        assert not leaked, f"dockerd left mounts: {leaked}"


def test_docker_loads_what_pystack_saves_and_back(docker, store: ImageStore, busybox, busybox_rootfs: Path,
                                                  tmp_path: Path) -> None:
    saved = tmp_path / "bb.tar"
    store.save(["busybox:latest"], saved)
    out = docker("load", "-i", str(saved)).stdout.decode()
    assert "Loaded image: busybox:latest" in out
    info = json.loads(docker("image", "inspect", "busybox:latest").stdout)[0]
    assert info["Id"] == busybox.id and info["Config"]["Cmd"] == ["sh"]
    assert info["RootFS"]["Layers"] == busybox.config["rootfs"]["diff_ids"]
    # docker save (legacy <id>/layer.tar archive) -> pystack load: same id, same files
    docker("tag", "busybox:latest", "from-docker/bb:7")
    back = tmp_path / "docker-save.tar"
    docker("save", "-o", str(back), "from-docker/bb:7")
    fresh = ImageStore(tmp_path / "fresh")
    [img] = fresh.load(back)
    assert img.id == busybox.id and img.repo_tags == ["from-docker/bb:7"]
    r = subprocess.run(["diff", "-r", "--no-dereference", str(busybox_rootfs), str(fresh.prepare(img)[0])],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[:3000]
    docker("rmi", "busybox:latest", "from-docker/bb:7")
