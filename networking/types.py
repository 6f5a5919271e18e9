"""Plain records exchanged between the engine and the network manager.

They are dataclasses (not pydantic) so that importing them costs nothing, and they
round-trip through JSON (``to_dict`` / ``from_dict``) because the manager persists them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


def _from_dict(cls, data: dict[str, Any]):
    """Build a dataclass from a dict, ignoring unknown keys (newer state files)."""
    names = _names(cls)
    # lists and dicts copied: ``data`` may be the state store's shared view
    return cls(**{k: (v.copy() if isinstance(v, (list, dict)) else v) for k, v in data.items() if k in names})


_NAMES: dict[type, frozenset[str]] = {}


def _names(cls) -> frozenset[str]:
    names = _NAMES.get(cls)
    if names is None:
        names = _NAMES[cls] = frozenset(f.name for f in fields(cls))
    return names


@dataclass
class IPAMPool:
    """One entry of Compose's ``ipam.config`` (all optional but the subnet)."""

    subnet: str | None = None
    ip_range: str | None = None
    gateway: str | None = None
    aux_addresses: dict[str, str] = field(default_factory=dict)


@dataclass
class NetworkSpec:
    """What the engine asks for: a Compose network after normalisation.

    ``options`` are Compose's ``driver_opts`` (MTU: ``com.docker.network.driver.mtu``,
    bridge name: ``com.docker.network.bridge.name``).
    """

    id: str
    name: str
    internal: bool = False
    attachable: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    ipam: list[IPAMPool] = field(default_factory=list)
    driver: str = "bridge"
    enable_ipv6: bool = False


@dataclass
class NetworkRecord:
    """A network as it exists: its bridge, subnet and gateway (persisted as JSON)."""

    id: str
    name: str
    bridge: str
    subnet: str
    gateway: str
    ip_range: str | None = None
    internal: bool = False
    attachable: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    mtu: int = 1500
    aux_addresses: dict[str, str] = field(default_factory=dict)
    driver: str = "bridge"
    firewall: str = ""   # "nft" / "iptables": the backend holding its rules
    subnet6: str = ""    # set when enable_ipv6
    gateway6: str = ""
    ip_range6: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "NetworkRecord":
        return _from_dict(cls, data)


@dataclass
class EndpointSpec:
    """How a container joins a network.

    ``names`` are the DNS names every container on the network resolves (container name,
    service name, ...); ``aliases`` are Compose's per-network aliases (same visibility);
    ``links`` maps an alias to a target name, visible only to this container (Compose
    ``links: [db:database]`` -> ``{"database": "db"}``); ``dns`` are upstream resolvers
    for this container's own queries (Compose ``dns:``).
    """

    names: list[str] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)
    ipv4_address: str | None = None
    mac_address: str | None = None
    priority: int = 0
    links: dict[str, str] = field(default_factory=dict)
    dns: list[str] = field(default_factory=list)
    ipv6_address: str | None = None


@dataclass
class EndpointRecord:
    """A container's attachment to one network (persisted as JSON)."""

    container_id: str
    network_id: str
    ip: str
    prefixlen: int
    gateway: str
    mac: str
    ifname: str
    host_ifname: str
    names: list[str] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)
    links: dict[str, str] = field(default_factory=dict)
    dns: list[str] = field(default_factory=list)
    ip6: str = ""         # on IPv6-enabled networks
    prefixlen6: int = 0
    gateway6: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EndpointRecord":
        return _from_dict(cls, data)


@dataclass
class PortSpec:
    """One published port; ``host_port=None`` means ephemeral.

    ``host_ip`` ``""``/``"0.0.0.0"`` means every host address (IPv4 only for now).
    ``host_port_end`` set: any free port of ``host_port..host_port_end`` (Compose's
    ``"8000-8010:80"``); equal-length ranges on both sides arrive already expanded.
    """

    container_port: int
    host_port: int | None = None
    host_ip: str = ""
    protocol: str = "tcp"
    host_port_end: int | None = None


@dataclass
class PortBinding:
    """A published port as made: what ``pystack port`` and inspect report."""

    container_id: str
    host_ip: str
    host_port: int
    container_ip: str
    container_port: int
    protocol: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PortBinding":
        return _from_dict(cls, data)
