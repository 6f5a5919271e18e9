"""Docker Engine API shapes for networks and endpoints, so the engine's routes
(``GET /networks/{id}``, ``NetworkSettings.Networks``) need not know our records.

Also Compose's rule for the order in which a service joins its networks (which one is
eth0 and gives the default route).
"""
from __future__ import annotations

from typing import Any, Mapping

from .types import (EndpointRecord, EndpointSpec, IPAMPool, NetworkRecord, NetworkSpec, PortBinding,
                    PortSpec)


def network_json(net: NetworkRecord, endpoints: list[EndpointRecord],
                 container_names: Mapping[str, str] | None = None, created: str = "") -> dict[str, Any]:
    """A network as ``docker network inspect`` prints it (the fields clients read)."""
    names = container_names or {}
    config: dict[str, Any] = {"Subnet": net.subnet, "Gateway": net.gateway}
    if net.ip_range:
        config["IPRange"] = net.ip_range
    if net.aux_addresses:
        config["AuxiliaryAddresses"] = dict(net.aux_addresses)
    configs = [config]
    if net.subnet6:
        config6: dict[str, Any] = {"Subnet": net.subnet6, "Gateway": net.gateway6}
        if net.ip_range6:
            config6["IPRange"] = net.ip_range6
        configs.append(config6)
    return {
        "Name": net.name, "Id": net.id, "Created": created, "Scope": "local", "Driver": "bridge",
        "EnableIPv6": bool(net.subnet6), "IPAM": {"Driver": "default", "Options": None, "Config": configs},
        "Internal": net.internal, "Attachable": net.attachable, "Ingress": False,
        "ConfigFrom": {"Network": ""}, "ConfigOnly": False,
        "Containers": {
            ep.container_id: {"Name": names.get(ep.container_id, ep.names[0] if ep.names else ""),
                              "EndpointID": endpoint_id(ep), "MacAddress": ep.mac,
                              "IPv4Address": f"{ep.ip}/{ep.prefixlen}",
                              "IPv6Address": f"{ep.ip6}/{ep.prefixlen6}" if ep.ip6 else ""}
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
        "IPPrefixLen": ep.prefixlen, "IPv6Gateway": ep.gateway6, "GlobalIPv6Address": ep.ip6,
        "GlobalIPv6PrefixLen": ep.prefixlen6, "DriverOpts": None, "DNSNames": list(ep.names) or None,
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


# -- Docker Engine API request bodies -> specs -----------------------------------------------

def _port_range(text: str, what: str) -> tuple[int, int]:
    from pystack.errors import UserError

    lo, sep, hi = text.partition("-")
    try:
        start, end = int(lo), int(hi) if sep else int(lo)
    except ValueError:
        raise UserError(f"invalid {what} {text!r}") from None
    if end < start:
        raise UserError(f"invalid {what} range {text!r}")
    return start, end


def port_specs_from_api(port_bindings: Mapping[str, list[Mapping[str, str]] | None] | None) -> list[PortSpec]:
    """``HostConfig.PortBindings`` -> PortSpecs.

    ``{"80/tcp": [{"HostIp": "", "HostPort": ""}]}`` (ephemeral), ``"8080"``, or
    ``"8000-8010"`` (a free one of the range); ``"9000-9002/tcp"`` keys with a
    ``"9000-9002"`` host range map port to port.
    """
    from pystack.errors import UserError

    specs: list[PortSpec] = []
    for key, bindings in (port_bindings or {}).items():
        port_text, _, proto = key.partition("/")
        c_start, c_end = _port_range(port_text, "container port")
        for b in bindings or [{}]:
            host_ip = (b or {}).get("HostIp") or ""
            host_port = (b or {}).get("HostPort") or ""
            h_start, h_end = _port_range(host_port, "host port") if host_port else (0, 0)
            if c_end > c_start:  # a container range: host range of the same length, or ephemeral
                if host_port and h_end - h_start != c_end - c_start:
                    raise UserError(f"port range {key} and host range {host_port} differ in length")
                for i in range(c_end - c_start + 1):
                    specs.append(PortSpec(c_start + i, h_start + i if host_port else None, host_ip,
                                          proto or "tcp"))
            else:
                specs.append(PortSpec(c_start, h_start or None, host_ip, proto or "tcp",
                                      h_end if h_end > h_start else None))
    return specs


def network_spec_from_api(body: Mapping[str, Any], net_id: str) -> NetworkSpec:
    """``POST /networks/create`` body -> NetworkSpec (IPAM, options, labels, flags)."""
    ipam = [IPAMPool(subnet=c.get("Subnet"), ip_range=c.get("IPRange"), gateway=c.get("Gateway"),
                     aux_addresses=dict(c.get("AuxiliaryAddresses") or {}))
            for c in ((body.get("IPAM") or {}).get("Config") or [])]
    return NetworkSpec(id=net_id, name=body["Name"], internal=bool(body.get("Internal")),
                       attachable=bool(body.get("Attachable")), labels=dict(body.get("Labels") or {}),
                       options=dict(body.get("Options") or {}), ipam=ipam,
                       driver=body.get("Driver") or "bridge", enable_ipv6=bool(body.get("EnableIPv6")))


def endpoint_spec_from_api(cfg: Mapping[str, Any] | None, names: list[str],
                           dns: list[str] | None = None) -> EndpointSpec:
    """One ``NetworkingConfig.EndpointsConfig`` entry (+ the container's own DNS names:
    container name, and the service name for Compose) -> EndpointSpec.

    ``Links`` entries are ``"target:alias"`` (or just ``"target"``).
    """
    cfg = cfg or {}
    links: dict[str, str] = {}
    for link in cfg.get("Links") or []:
        target, _, alias = link.partition(":")
        links[(alias or target).lstrip("/").rsplit("/", 1)[-1]] = target.lstrip("/")
    ipam_cfg = cfg.get("IPAMConfig") or {}
    return EndpointSpec(names=list(names), aliases=list(cfg.get("Aliases") or []),
                        ipv4_address=ipam_cfg.get("IPv4Address") or None,
                        ipv6_address=ipam_cfg.get("IPv6Address") or None,
                        mac_address=cfg.get("MacAddress") or None,
                        priority=int(cfg.get("Priority") or 0), links=links, dns=list(dns or []))
