"""A private dockerd, the Engine API oracle that tests and benchmarks run the front against.

It gets its own socket, data root, exec root, pidfile and containerd namespace, with
``--iptables=false`` (dockerd would otherwise set the FORWARD policy to DROP and cut
other bridges), no default bridge, and an address pool inside the dockerd-oracle range
10.213.0.0/16. ``stop()`` ends it by its PID and removes everything under its root.
"""
from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path


class DockerdUnavailable(Exception):
    """dockerd is missing or could not start here; the message says why."""


@dataclass
class Dockerd:
    socket: str
    root: Path
    proc: subprocess.Popen
    kind: str = "dockerd"

    @property
    def host(self) -> str:
        return "unix://" + self.socket

    @property
    def pid(self) -> int:
        return self.proc.pid

    def client(self):
        from pystack.compose.client import EngineClient

        return EngineClient(self.socket)

    def import_rootfs(self, rootfs: Path, ref: str = "busybox:latest") -> None:
        """``docker import`` of a root filesystem directory, through the API."""
        repo, _, tag = ref.rpartition(":")
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for entry in sorted(Path(rootfs).iterdir()):
                if entry.name != ".complete":
                    tar.add(str(entry), arcname=entry.name)
        self.client().request("POST", "/images/create", params={"fromSrc": "-", "repo": repo, "tag": tag},
                              headers={"Content-Type": "application/x-tar"}, raw_body=buf.getvalue())

    def stop(self) -> None:
        try:
            client = self.client()
            for c in client.containers(all=True):
                client.remove(c["Id"], force=True, volumes=True)
        except Exception:  # noqa: BLE001 - best effort before the daemon goes
            pass
        _stop_pid(self.proc.pid)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        for line in reversed(Path("/proc/self/mounts").read_text().splitlines()):
            mnt = line.split()[1]
            if mnt.startswith(str(self.root)):
                subprocess.run(["umount", "-l", mnt], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)
        try:
            os.unlink(self.socket)
        except FileNotFoundError:
            pass


def _stop_pid(pid: int, timeout: float = 20.0) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        if _is_zombie(pid):
            return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return True


def start_dockerd(pool: str = "10.213.192.0/18", prefix: str = "pystack-test-dockerd") -> Dockerd:
    """Start a private dockerd and wait until it answers; DockerdUnavailable otherwise."""
    exe = shutil.which("dockerd")
    if exe is None:
        raise DockerdUnavailable("dockerd is not installed (Debian package docker.io)")
    if os.geteuid() != 0:
        raise DockerdUnavailable("dockerd needs root")
    ident = uuid.uuid4().hex[:8]
    root = Path(tempfile.mkdtemp(prefix=f"{prefix}-"))
    sock = f"/run/{prefix}-{ident}.sock"
    log = open(root / "dockerd.log", "wb")
    proc = subprocess.Popen(
        [exe, "--host", "unix://" + sock, "--data-root", str(root / "data"),
         "--exec-root", str(root / "exec"), "--pidfile", str(root / "dockerd.pid"),
         "--iptables=false", "--ip6tables=false", "--bridge=none",
         "--default-address-pool", f"base={pool},size=24",
         "--storage-driver", "overlay2", "--containerd-namespace", f"pystack-{ident}",
         "--containerd-plugins-namespace", f"pystack-{ident}-plugins"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    d = Dockerd(sock, root, proc)
    client = d.client()
    deadline = time.monotonic() + 40
    while True:
        if proc.poll() is not None:
            tail = (root / "dockerd.log").read_text(errors="replace")[-400:]
            shutil.rmtree(root, ignore_errors=True)
            raise DockerdUnavailable(f"dockerd exited: {tail}")
        try:
            client.ping()
            return d
        except Exception:  # noqa: BLE001 - not up yet
            if time.monotonic() > deadline:
                d.stop()
                raise DockerdUnavailable("dockerd did not answer within 40 s") from None
            time.sleep(0.2)
