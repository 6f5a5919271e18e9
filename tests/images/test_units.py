"""Unit tests of the small pure pieces: references, challenges, platforms, settings, --change."""
from __future__ import annotations

import pytest

from pystack.errors import UserError
from pystack.runtime.images.auth import parse_challenge
from pystack.runtime.images.changes import apply_changes
from pystack.runtime.images.config import RegistryConfig
from pystack.runtime.images.errors import NoMatchingPlatform
from pystack.runtime.images.manifest import select_platform
from pystack.runtime.images.reference import parse


@pytest.mark.parametrize("text,full,familiar", [
    ("redis", "docker.io/library/redis:latest", "redis:latest"),
    ("user/app:1.2", "docker.io/user/app:1.2", "user/app:1.2"),
    ("index.docker.io/library/redis", "docker.io/library/redis:latest", "redis:latest"),
    ("localhost/app", "localhost/app:latest", "localhost/app:latest"),
    ("127.0.0.1:5000/a/b:v", "127.0.0.1:5000/a/b:v", "127.0.0.1:5000/a/b:v"),
    ("ghcr.io/o/r@sha256:" + "a" * 64, "ghcr.io/o/r@sha256:" + "a" * 64, "ghcr.io/o/r@sha256:" + "a" * 64),
])
def test_reference_normalisation(text: str, full: str, familiar: str) -> None:
    ref = parse(text)
    assert str(ref) == full and ref.familiar() == familiar
    assert ref.api_host == ("registry-1.docker.io" if full.startswith("docker.io/") else ref.registry)


@pytest.mark.parametrize("bad", ["UPPER", "a:b:c", "x@sha256:short", "-lead", "a//b", "", " x"])
def test_bad_references(bad: str) -> None:
    with pytest.raises(UserError, match="invalid reference format"):
        parse(bad)


def test_challenge_parsing() -> None:
    scheme, p = parse_challenge('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
                                'scope="repository:samalba/my-app:pull,push"')
    assert scheme == "bearer" and p == {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                                        "scope": "repository:samalba/my-app:pull,push"}
    assert parse_challenge('Basic realm="basic-realm"') == ("basic", {"realm": "basic-realm"})


def test_platform_selection() -> None:
    def d(arch, variant=None, mt="application/vnd.oci.image.manifest.v1+json"):
        return {"mediaType": mt, "digest": f"{arch}{variant}",
                "platform": {"os": "linux", "architecture": arch, **({"variant": variant} if variant else {})}}
    index = {"manifests": [d("amd64", mt="application/vnd.in-toto+json"), d("arm", "v6"), d("arm", "v7"),
                           d("arm64"), d("amd64")]}
    pick = lambda arch, variant=None: select_platform(  # noqa: E731
        index, {"os": "linux", "architecture": arch, **({"variant": variant} if variant else {})})["digest"]
    assert pick("amd64") == "amd64None"  # the attestation-typed entry is skipped
    assert pick("arm", "v7") == "armv7" and pick("arm", "v6") == "armv6"
    assert pick("arm", "v8") == "armv6"  # first compatible lower variant
    assert pick("arm64", "v8") == "arm64None"  # missing arm64 variant means v8
    with pytest.raises(NoMatchingPlatform, match="linux/s390x"):
        pick("s390x")


def test_insecure_registries() -> None:
    c = RegistryConfig(["myreg:5000", "other"])
    assert c.is_insecure("127.0.0.1:5000") and c.is_insecure("[::1]:5000") and c.is_insecure("localhost")
    assert c.is_insecure("myreg:5000") and not c.is_insecure("myreg:5001") and c.is_insecure("other:1")
    assert not c.is_insecure("example.com") and not c.is_insecure("10.0.0.1:5000")


def test_changes() -> None:
    cfg = apply_changes({}, ["CMD echo hi", 'ENTRYPOINT ["/bin/sh", "-c"]', "ENV A=1 B=two", "ENV A 3",
                             "EXPOSE 80 53/udp", "LABEL k=v", "USER app", "WORKDIR /w", 'VOLUME ["/data"]',
                             "STOPSIGNAL SIGTERM", "HEALTHCHECK --interval=5s --retries=2 CMD wget -q localhost"])
    assert cfg["Cmd"] == ["/bin/sh", "-c", "echo hi"] and cfg["Entrypoint"] == ["/bin/sh", "-c"]
    assert cfg["Env"] == ["A=3", "B=two"] and cfg["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}}
    assert cfg["Labels"] == {"k": "v"} and cfg["User"] == "app" and cfg["WorkingDir"] == "/w"
    assert cfg["Volumes"] == {"/data": {}} and cfg["StopSignal"] == "SIGTERM"
    assert cfg["Healthcheck"] == {"Interval": 5_000_000_000, "Retries": 2, "Test": ["CMD-SHELL", "wget -q localhost"]}
    with pytest.raises(UserError, match="unsupported instruction"):
        apply_changes({}, ["RUN rm -rf /"])


def test_plain_http_only_for_insecure_registries() -> None:
    """No traffic leaves this test: the refusal must happen before any connection, and a
    connection attempt fails the test instead of reaching the network."""
    from pystack.runtime.images.errors import RegistryError
    from pystack.runtime.images.registry import RegistryClient

    def no_network(*a, **k):
        raise AssertionError(f"tried to connect: {a}")
    client = RegistryClient("registry.example:5000", config=RegistryConfig(), credentials=None)
    client._connect = no_network  # type: ignore[method-assign]
    assert client.scheme == "https" and not client.insecure
    with pytest.raises(RegistryError, match="refusing plain HTTP"):
        client._raw("GET", "http://registry.example:5000/v2/", {}, None)
    loop = RegistryClient("127.0.0.1:5000", config=RegistryConfig(), credentials=None)
    loop._connect = no_network  # type: ignore[method-assign]
    assert loop.insecure and loop.scheme is None  # decided by probing HTTPS first
    with pytest.raises(RegistryError, match="refusing plain HTTP to 192.0.2.1"):  # e.g. an upload Location
        loop._raw("GET", "http://192.0.2.1/blob", {}, None)
