"""IP address management: choosing subnets and handing out addresses.

Subnets come from ``ipam.config`` or from a pool of candidates (Docker's defaults:
172.17-31.0.0/16, then 192.168.0.0/16 in /20s), skipping any that overlap a route or an
address already on the host, or another pystack network: a bridge on an address the host
already uses would cut the host off from that network. Addresses are derived from the
persisted endpoints, so there is one source of truth and nothing to release separately.
"""
from __future__ import annotations

import ipaddress
from typing import Iterable

from pystack.errors import Conflict, UserError

IPv4Net = ipaddress.IPv4Network

DEFAULT_POOLS: list[tuple[str, int]] = [
    *((f"172.{n}.0.0/16", 16) for n in range(17, 32)),
    ("192.168.0.0/16", 20),
]


def host_networks() -> list[IPv4Net]:
    """Every IPv4 network the host routes to or has an address in (all routing tables)."""
    from pyroute2 import IPRoute

    nets: list[IPv4Net] = []
    with IPRoute() as ipr:
        for route in ipr.get_routes(family=2, table=0):
            dst = route.get_attr("RTA_DST")
            if dst is None:
                continue  # default route: overlaps everything, so it is not a conflict
            nets.append(ipaddress.ip_network(f"{dst}/{route['dst_len']}", strict=False))
        for addr in ipr.get_addr(family=2):
            a = addr.get_attr("IFA_ADDRESS")
            nets.append(ipaddress.ip_network(f"{a}/{addr['prefixlen']}", strict=False))
    return nets


def parse_net(text: str, what: str) -> IPv4Net:
    """A user-given subnet, or one clear line saying what is wrong with it."""
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise UserError(f"invalid {what} {text!r}: not an IPv4 network (a.b.c.d/len)") from None
    if net.version != 4:
        raise UserError(f"{what} {text}: IPv6 networks are not supported yet")
    return net  # type: ignore[return-value]


def parse_ip(text: str, what: str) -> ipaddress.IPv4Address:
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        raise UserError(f"invalid {what} {text!r}: not an IP address") from None
    if ip.version != 4:
        raise UserError(f"{what} {text}: IPv6 addresses are not supported yet")
    return ip  # type: ignore[return-value]


def choose_subnet(pools: Iterable[tuple[str, int]], taken: list[IPv4Net]) -> IPv4Net:
    """The first candidate subnet from ``pools`` overlapping nothing in ``taken``."""
    for base, prefixlen in pools:
        for candidate in ipaddress.ip_network(base).subnets(new_prefix=prefixlen):
            if not any(candidate.overlaps(t) for t in taken):
                return candidate  # type: ignore[return-value]
    raise Conflict("no free subnet left in the default address pools; "
                   "set ipam.config.subnet on the network")


def check_subnet_free(subnet: IPv4Net, pystack_nets: list[IPv4Net], host_nets: list[IPv4Net]) -> None:
    """Refuse a user-given subnet that overlaps another pystack network or the host's."""
    for other in pystack_nets:
        if subnet.overlaps(other):
            raise Conflict(f"subnet {subnet} overlaps the subnet {other} of another network")
    for other in host_nets:
        if subnet.overlaps(other):
            raise Conflict(f"subnet {subnet} overlaps {other}, already routed on this host")


def allocate(subnet: IPv4Net, ip_range: str | None, reserved: set[str], requested: str | None) -> str:
    """An address for a new endpoint: ``requested`` if free, else the lowest free one.

    ``reserved`` holds the gateway, aux addresses and every address in use.
    """
    if requested:
        ip = parse_ip(requested, "ipv4_address")
        if ip not in subnet or ip in (subnet.network_address, subnet.broadcast_address):
            raise UserError(f"ipv4_address {ip} is not a usable address of subnet {subnet}")
        if str(ip) in reserved:
            raise Conflict(f"address {ip} is already in use on this network")
        return str(ip)
    pool = ipaddress.ip_network(ip_range) if ip_range else subnet
    for ip in pool.hosts() if pool.prefixlen < 31 else pool:
        if ip in (subnet.network_address, subnet.broadcast_address):
            continue
        if str(ip) not in reserved:
            return str(ip)
    raise Conflict(f"no free address left in {pool}")


def mac_for(ip: str) -> str:
    """Docker's MAC scheme (02:42 + the IPv4 bytes): stable and unique per network."""
    return "02:42:" + ":".join(f"{b:02x}" for b in ipaddress.ip_address(ip).packed)
