"""Fixtures of the image tests: a private store root, the busybox test image, registries."""
from __future__ import annotations

from pathlib import Path

import pytest

from pystack.runtime.images.store import ImageStore

from .registryfix import TokenIssuer, htpasswd_file, start_registry


@pytest.fixture(autouse=True)
def engines_stopped(tmp_path: Path):
    """The CLI goes through pystackd, started on demand per PYSTACK_ROOT: stop them all after."""
    yield
    from .helpers import stop_engines
    stop_engines(tmp_path)


@pytest.fixture(autouse=True)
def unpack_helpers_stopped():
    """Pulls leave their unpack helpers running for the next pull: stop them after each test."""
    yield
    from pystack.runtime.images.unpacker import shutdown_shared
    shutdown_shared()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """PYSTACK_ROOT and DOCKER_CONFIG under tmp: tests never touch the host's state."""
    e = {"PYSTACK_ROOT": str(tmp_path / "root"), "DOCKER_CONFIG": str(tmp_path / "docker-config"),
         "PYSTACK_REGISTRIES": str(tmp_path / "registries.json")}
    for k, v in e.items():
        monkeypatch.setenv(k, v)
    return e


@pytest.fixture
def store(env: dict[str, str]) -> ImageStore:
    return ImageStore(Path(env["PYSTACK_ROOT"]) / "images")


@pytest.fixture
def busybox(store: ImageStore, busybox_rootfs: Path):
    """The busybox test image, imported as `pystack image import DIR busybox:latest` does."""
    return store.import_rootfs(busybox_rootfs, "busybox:latest", ['CMD ["sh"]'])


@pytest.fixture
def registry(tmp_path: Path):
    reg = start_registry(tmp_path)
    yield reg
    reg.stop()


@pytest.fixture
def basic_registry(tmp_path: Path):
    reg = start_registry(tmp_path, {"htpasswd": {"realm": "basic-realm",
                                                  "path": str(htpasswd_file(tmp_path, "alice", "s3cret"))}})
    yield reg
    reg.stop()


@pytest.fixture
def token_registry(tmp_path: Path):
    """Registry with token auth and the test's own token issuer (Docker Hub is unreachable here)."""
    issuer = TokenIssuer(tmp_path, "bob", "hunter2")
    reg = start_registry(tmp_path, issuer.registry_auth())
    yield reg, issuer
    reg.stop()
    issuer.stop()


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process registry traffic may only go to loopback (DESIGN's network rule): a bug
    that would fall back to Docker Hub, or follow a redirect out, fails the test instead."""
    from pystack.runtime.images import registry

    real = registry.RegistryClient._connect

    def guarded(self, scheme: str, netloc: str, probe: bool = False):
        host = netloc.rsplit(":", 1)[0].strip("[]") if netloc.count(":") <= 1 or netloc.startswith("[") else netloc
        assert host in ("127.0.0.1", "localhost", "::1") or host.startswith("127."), f"non-loopback connect: {netloc}"
        return real(self, scheme, netloc, probe)
    monkeypatch.setattr(registry.RegistryClient, "_connect", guarded)
