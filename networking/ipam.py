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


def host_networks(family: int = 2) -> list:
    """Every network (IPv4: family 2, IPv6: 10) the host routes to or has an address in,
    in all routing tables; link-local and multicast IPv6 ranges are left out."""
    from pyroute2 import IPRoute

    nets: list = []
    with IPRoute() as ipr:
        for route in ipr.get_routes(family=family, table=0):
            dst = route.get_attr("RTA_DST")
            if dst is None:
                continue  # default route: overlaps everything, so it is not a conflict
            nets.append(ipaddress.ip_network(f"{dst}/{route['dst_len']}", strict=False))
        for addr in ipr.get_addr(family=family):
            a = addr.get_attr("IFA_ADDRESS")
            nets.append(ipaddress.ip_network(f"{a}/{addr['prefixlen']}", strict=False))
    if family == 10:
        nets = [n for n in nets if not (n.is_link_local or n.is_multicast or n.is_loopback)]
    return nets


def parse_net(text: str, what: str, version: int = 4):
    """A user-given subnet of the IP ``version``, or one clear line saying what is wrong."""
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise UserError(f"invalid {what} {text!r}: not an IP network (address/length)") from None
    if net.version != version:
        raise UserError(f"{what} {text}: an IPv{version} network is needed here")
    return net


def parse_ip(text: str, what: str, version: int = 4):
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        raise UserError(f"invalid {what} {text!r}: not an IP address") from None
    if ip.version != version:
        raise UserError(f"{what} {text}: an IPv{version} address is needed here")
    return ip


def ula_subnet(seed: str, taken: list) -> ipaddress.IPv6Network:
    """A /64 unique-local subnet (RFC 4193) derived from ``seed``, avoiding ``taken``."""
    import hashlib

    for n in range(64):
        digest = hashlib.sha256(f"{seed}/{n}".encode()).digest()
        candidate = ipaddress.IPv6Network((b"\xfd" + digest[:7] + bytes(8), 64))
        if not any(candidate.overlaps(t) for t in taken):
            return candidate
    raise Conflict("no free IPv6 subnet found; set an IPv6 ipam.config.subnet")


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
        ip = parse_ip(requested, f"ipv{subnet.version}_address", subnet.version)
        if ip not in subnet or ip in (subnet.network_address, subnet.broadcast_address):
            raise UserError(f"ipv{subnet.version}_address {ip} is not a usable address of subnet {subnet}")
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
