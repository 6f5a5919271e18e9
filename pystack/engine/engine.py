"""The Engine: one object owning the engine's stores, built lazily from the four libraries.

Routes reach images, containers, networks and volumes only through this object, so that
one process owns the state and its locks (DESIGN.md, process model).
"""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import pystack
from pystack.engine.events import EventBus


def address_pools(text: str) -> list[tuple[str, int]] | None:
    """``base=10.99.0.0/16,size=24 base=...`` (dockerd's ``--default-address-pool`` form,
    space-separated) -> [(base, size)]; None (Docker's default pools) when empty."""
    import ipaddress

    from pystack.errors import UserError

    pools = []
    for item in text.split():
        fields = dict(part.partition("=")[::2] for part in item.split(","))
        try:
            base = ipaddress.ip_network(fields["base"], strict=False)
            size = int(fields.get("size") or base.prefixlen)
            if base.version != 4 or not base.prefixlen <= size <= 30:
                raise ValueError
        except (KeyError, ValueError):
            raise UserError(f"default address pool {item!r}: use base=<IPv4 subnet>,size=<prefix length "
                            "between the base's and 30>") from None
        pools.append((str(base), size))
    return pools or None


class Engine:
    """State roots plus the subsystems; each subsystem is imported on first use."""

    def __init__(self, root: Path, run: Path) -> None:
        self.root = Path(root)
        self.run = Path(run)
        self.events = EventBus()
        for d in (self.root, self.run):
            d.mkdir(parents=True, exist_ok=True)
            os.chmod(d, 0o711)

    @functools.cached_property
    def images(self):
        from pystack.runtime.images import ImageStore
        return ImageStore(self.root / "images")

    @functools.cached_property
    def volumes(self):
        from pystack.volumes import VolumeStore
        return VolumeStore(self.root / "volumes")

    @functools.cached_property
    def networks(self):
        from pystack.networking import NetworkManager
        return NetworkManager(self.root / "networks", self.run / "net",
                              default_pools=address_pools(os.environ.get("PYSTACK_DEFAULT_ADDRESS_POOLS", "")))

    @functools.cached_property
    def runtime(self):
        from pystack.runtime import Runtime
        return Runtime(self.run / "runtime")

    @functools.cached_property
    def records(self):
        from pystack.engine.records import RecordStore
        return RecordStore(self.root / "containers")

    @functools.cached_property
    def containers(self):
        """The container manager (pystack.engine.containers): the one owner of container state."""
        from pystack.engine.containers import ContainerManager
        return ContainerManager(self)

    async def startup(self) -> None:
        """Before serving: start the runtime's fork server first (no threads exist yet, so
        forking is safe), then let each subsystem repair what a crash left behind, in
        dependency order: volumes and networks first, containers (which use both) last."""
        self._replace_fork_server()
        import asyncio
        from concurrent.futures import ThreadPoolExecutor
        # blocking library calls run in threads: enough of them that slow ones (a stop's
        # grace period never holds one, but image unpacking or a big copy may) never
        # starve the others
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(max_workers=64, thread_name_prefix="pystackd"))
        from pystack.volumes import cleanup_pins
        await asyncio.to_thread(self.volumes.recover)
        await asyncio.to_thread(cleanup_pins)
        await asyncio.to_thread(self.networks.recover)
        try:
            manager = self.containers
        except ModuleNotFoundError:  # containers not built yet
            return
        recover = getattr(manager, "recover", None)
        if recover is not None:
            await recover()

    def _replace_fork_server(self) -> None:
        """Start the runtime's fork server now (before any thread exists), after stopping a
        killed engine's one that may still be finishing a request: recovery must not race
        with a shim appearing behind its back."""
        import signal
        pid_file = self.run / "forkserver.pid"
        try:
            old = int(pid_file.read_text())
            cmdline = Path(f"/proc/{old}/cmdline").read_bytes()
            environ = Path(f"/proc/{old}/environ").read_bytes().split(b"\0")
            if b"pystack.runtime.forkserver" in cmdline and f"PYSTACK_RUN={self.run}".encode() in environ:
                os.kill(old, signal.SIGKILL)
        except (OSError, ValueError):
            pass
        server = getattr(self.runtime, "_server", None)
        if server is None:
            return
        try:
            pid_file.write_text(str(server().proc.pid))
        except AttributeError:  # the runtime's spawner changed shape: it starts lazily then
            pass

    async def shutdown(self) -> None:
        """SIGTERM: containers keep running under their shims (documented choice: a new
        engine adopts them); the engine only stops its own threads and sockets."""
        close = getattr(self.containers, "close", None) if "containers" in self.__dict__ else None
        if close is not None:
            await close()
        if "records" in self.__dict__:
            self.records.flush()
        if "networks" in self.__dict__:
            self.networks.close()
        if "runtime" in self.__dict__:
            self.runtime.close()

    def info(self) -> dict[str, Any]:
        """Docker's /info shape for the fields clients read."""
        uname = os.uname()
        mem = 0
        try:
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemTotal:"):
                    mem = int(line.split()[1]) * 1024
        except OSError:
            pass
        cgroup_version = "2" if Path("/sys/fs/cgroup/cgroup.controllers").exists() and \
            Path("/sys/fs/cgroup/cgroup.controllers").read_text().strip() else "1"
        return {
            "ID": self._engine_id(), "Name": uname.nodename, "ServerVersion": pystack.__version__,
            "Driver": "overlay", "DockerRootDir": str(self.root), "OperatingSystem": "linux",
            "OSType": "linux", "Architecture": uname.machine, "KernelVersion": uname.release,
            "NCPU": os.cpu_count() or 1, "MemTotal": mem, "CgroupDriver": "cgroupfs",
            "CgroupVersion": cgroup_version, "IndexServerAddress": "https://index.docker.io/v1/",
            "Containers": 0, "ContainersRunning": 0, "ContainersPaused": 0, "ContainersStopped": 0,
            "Images": 0, "SecurityOptions": self._security_options(), "Runtimes": {"pystack": {}},
            "DefaultRuntime": "pystack", "Warnings": [],
            **self._container_counts(),
        }

    def _container_counts(self) -> dict[str, int]:
        try:
            recs = self.containers.all()
            status = [self.containers.status(r) for r in recs]
        except Exception:  # noqa: BLE001 - counts are informative only
            return {}
        return {"Containers": len(status), "ContainersRunning": status.count("running"),
                "ContainersPaused": status.count("paused"),
                "ContainersStopped": len(status) - status.count("running") - status.count("paused")}

    def _engine_id(self) -> str:
        path = self.root / "engine-id"
        if not path.exists():
            path.write_text(os.urandom(16).hex())
        return path.read_text().strip()

    @staticmethod
    def _security_options() -> list[str]:
        opts = []
        try:
            from pystack.runtime import seccomp
            if seccomp.available():
                opts.append("name=seccomp,profile=builtin")
        except ImportError:
            pass
        return opts
