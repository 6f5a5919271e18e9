"""Docker Engine API shapes for networks and endpoints, so the engine's routes
(``GET /networks/{id}``, ``NetworkSettings.Networks``) need not know our records.

Also Compose's rule for the order in which a service joins its networks (which one is
eth0 and gives the default route).
"""
from __future__ import annotations

from typing import Any, Mapping

from .types import EndpointRecord, NetworkRecord, PortBinding


def network_json(net: NetworkRecord, endpoints: list[EndpointRecord],
                 container_names: Mapping[str, str] | None = None, created: str = "") -> dict[str, Any]:
    """A network as ``docker network inspect`` prints it (the fields clients read)."""
    names = container_names or {}
    config: dict[str, Any] = {"Subnet": net.subnet, "Gateway": net.gateway}
    if net.ip_range:
        config["IPRange"] = net.ip_range
    if net.aux_addresses:
        config["AuxiliaryAddresses"] = dict(net.aux_addresses)
    return {
        "Name": net.name, "Id": net.id, "Created": created, "Scope": "local", "Driver": "bridge",
        "EnableIPv6": False, "IPAM": {"Driver": "default", "Options": None, "Config": [config]},
        "Internal": net.internal, "Attachable": net.attachable, "Ingress": False,
        "ConfigFrom": {"Network": ""}, "ConfigOnly": False,
        "Containers": {
            ep.container_id: {"Name": names.get(ep.container_id, ep.names[0] if ep.names else ""),
                              "EndpointID": endpoint_id(ep), "MacAddress": ep.mac,
                              "IPv4Address": f"{ep.ip}/{ep.prefixlen}", "IPv6Address": ""}
            for ep in endpoints if ep.network_id == net.id},
        "Options": {"com.docker.network.bridge.name": net.bridge,
                    "com.docker.network.driver.mtu": str(net.mtu), **net.options},
        "Labels": dict(net.labels),
    }


def endpoint_id(ep: EndpointRecord) -> str:
    """A stable 64-hex endpoint id derived from (container, network)."""
    import hashlib

    return hashlib.sha256(f"{ep.container_id}/{ep.network_id}".encode()).hexdigest()


def endpoint_json(ep: EndpointRecord, net: NetworkRecord) -> dict[str, Any]:
    """One entry of a container's ``NetworkSettings.Networks``."""
    return {
        "IPAMConfig": None, "Links": [f"{t}:{a}" for a, t in ep.links.items()] or None,
        "Aliases": list(ep.aliases) or None, "MacAddress": ep.mac, "NetworkID": net.id,
        "EndpointID": endpoint_id(ep), "Gateway": ep.gateway, "IPAddress": ep.ip,
        "IPPrefixLen": ep.prefixlen, "IPv6Gateway": "", "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0, "DriverOpts": None, "DNSNames": list(ep.names) or None,
    }


def ports_json(bindings: list[PortBinding]) -> dict[str, list[dict[str, str]]]:
    """``NetworkSettings.Ports``: ``{"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}``."""
    out: dict[str, list[dict[str, str]]] = {}
    for b in bindings:
        out.setdefault(f"{b.container_port}/{b.protocol}", []).append(
            {"HostIp": b.host_ip, "HostPort": str(b.host_port)})
    return out


def connect_order(networks: Mapping[str, Mapping[str, Any] | None]) -> list[str]:
    """Compose's attachment order: higher ``priority`` first, then by name.

    ``networks`` is a service's ``networks:`` mapping (values may be None).
    """
    def key(item: tuple[str, Mapping[str, Any] | None]) -> tuple[int, str]:
        name, cfg = item
        return (-int((cfg or {}).get("priority") or 0), name)

    return [name for name, _ in sorted(networks.items(), key=key)]
