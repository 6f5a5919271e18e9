"""Fixtures for networking tests: a NetworkManager on temp dirs, per-test subnets,
processes inside namespaces (the host's static busybox via nsenter), leak checks.

Every test uses its own /24s inside 10.210.0.0/16 (the networking test range of
docs/contracts.md), picked at random so that parallel runs do not clash.
"""
from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest

from pystack.networking import IPAMPool, NetworkManager, NetworkSpec

from nethelpers import BUSYBOX, assert_gone, owned_objects  # noqa: F401  (BUSYBOX re-exported)


class Subnets:
    """Hands out distinct 10.210.X.0/24 subnets for one test."""

    def __init__(self) -> None:
        self.base = random.randrange(0, 240)
        self.n = 0

    def next(self) -> str:
        net = f"10.210.{self.base + self.n}.0/24"
        self.n += 1
        return net


@pytest.fixture
def subnets() -> Subnets:
    return Subnets()


BACKENDS = [b for b in ("nft", "iptables") if shutil.which(b)]


@pytest.fixture(params=BACKENDS)
def nm(request, tmp_path: Path):
    """A manager with no upstream resolvers, once per installed firewall backend (nft,
    iptables); torn down and leak-checked after the test."""
    manager = NetworkManager(tmp_path / "state", tmp_path / "run", dns_upstreams=[],
                             firewall=request.param)
    yield manager
    owned = owned_objects(manager)
    manager.cleanup_all()
    assert_gone(owned)


@pytest.fixture
def make_net(nm: NetworkManager, subnets: Subnets, unique_name: str):
    """Create a network on the next test subnet: make_net(internal=False, **spec fields)."""
    count = [0]

    def make(**kw):
        count[0] += 1
        ipam = kw.pop("ipam", None) or [IPAMPool(subnet=subnets.next())]
        name = kw.pop("name", f"{unique_name}_{count[0]}")
        spec = NetworkSpec(id=kw.pop("id", f"{unique_name}{count[0]:02d}"), name=name, ipam=ipam, **kw)
        return nm.create_network(spec)

    return make


@pytest.fixture
def procs():
    """Start background busybox processes in namespaces; all killed (by PID) afterwards."""
    started: list[subprocess.Popen] = []

    def start(path: Path, *args: str, **kw) -> subprocess.Popen:
        p = subprocess.Popen(["nsenter", f"--net={path}", BUSYBOX, *args],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)
        started.append(p)
        return p

    yield start
    for p in started:
        p.kill()
        p.wait()


