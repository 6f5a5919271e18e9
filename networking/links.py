"""Bridges and veth pairs through netlink (pyroute2), plus per-interface sysctls.

A network is one Linux bridge holding the gateway address; a container joins it through
a veth pair whose host end is a bridge port and whose other end is moved into the
container's namespace and renamed ``eth<n>``. Names follow docs/contracts.md
(``psbr-<8 hex>``, ``psv<8 hex><n>``) so that a restarted engine can find them.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import threading
import re
from pathlib import Path
from typing import Iterator

from pystack.errors import Conflict

from . import netns


@contextlib.contextmanager
def netlink_errors(what: str) -> Iterator[None]:
    """Turn pyroute2's NetlinkError into one clear line: Conflict when the name exists
    (e.g. an interface someone else made), RuntimeError naming the step otherwise."""
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        yield
    except NetlinkError as exc:
        if exc.code == errno.EEXIST:
            raise Conflict(f"{what}: already exists") from None
        raise RuntimeError(f"{what}: {os.strerror(exc.code) if exc.code else exc}") from None


def short_hex(key: str) -> str:
    """8 hex characters for interface names: the id itself if hex, else a hash of it."""
    if re.fullmatch(r"[0-9a-f]{8,}", key):
        return key[:8]
    return hashlib.sha256(key.encode()).hexdigest()[:8]


def bridge_name(net_id: str) -> str:
    return f"psbr-{short_hex(net_id)}"


def host_veth_name(container_id: str, index: int) -> str:
    return f"psv{short_hex(container_id)}{index}"


_RTNL_USERS = threading.Lock()


def write_sysctl(key: str, value: str) -> bool:
    """Set ``/proc/sys/<key>`` in the current namespace; False if the key is absent."""
    try:
        fd = os.open("/proc/sys/" + key.replace(".", "/"), os.O_WRONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)
    return True


def link_index(ipr, name: str) -> int | None:
    """The index of link ``name`` (one RTM_GETLINK by name, not a dump of every link)."""
    from pyroute2.netlink.exceptions import NetlinkError

    if not name or len(name.encode()) > 15:
        return None  # no interface can have that name (the kernel says ERANGE)
    try:
        found = ipr.link("get", ifname=name)
    except NetlinkError as exc:
        if exc.code in (errno.ENODEV, errno.ENOENT):
            return None
        raise
    return found[0]["index"] if found else None


IFA_F_NODAD = 0x02  # no duplicate address detection: the address is ours by construction


def create_bridge(name: str, gateway: str, prefixlen: int, mtu: int,
                  gateway6: str = "", prefixlen6: int = 0) -> None:
    """Create the bridge with its gateway address(es), up, ready to NAT for 127.0.0.1."""
    # A fixed MAC: otherwise the bridge takes the lowest MAC of its ports and changes it
    # when a port joins, and containers lose the gateway until their ARP entry expires.
    mac = "02:" + ":".join(f"{b:02x}" for b in os.urandom(5))
    with netns.iproute() as ipr, netlink_errors(f"bridge {name}"):
        ipr.link("add", ifname=name, kind="bridge", mtu=mtu, address=mac)
        try:
            idx = link_index(ipr, name)
            ipr.addr("add", index=idx, address=gateway, prefixlen=prefixlen)
            # Never accept router advertisements (CVE-2020-13401); IPv6 only when asked.
            write_sysctl(f"net.ipv6.conf.{name}.accept_ra", "0")
            write_sysctl(f"net.ipv6.conf.{name}.disable_ipv6", "0" if gateway6 else "1")
            if gateway6:
                ipr.addr("add", index=idx, address=gateway6, prefixlen=prefixlen6, flags=IFA_F_NODAD)
            ipr.link("set", index=idx, state="up")
        except BaseException:
            ipr.link("del", ifname=name)
            raise
    # route_localnet: 127.0.0.1:<port> DNATed to a container must leave through the bridge.
    write_sysctl(f"net.ipv4.conf.{name}.route_localnet", "1")


def delete_link(name: str) -> bool:
    """Delete a link in the host namespace if it exists; True if it did."""
    from .rtnl import Rtnl

    with Rtnl() as host:
        return host.delete_link(name)


def delete_links(names) -> list[str]:
    """Delete those of ``names`` that exist in the host namespace (one socket, one
    request each); returns the deleted ones."""
    from .rtnl import Rtnl

    with Rtnl() as host:
        return [name for name in sorted(names) if host.delete_link(name)]


def link_exists(name: str) -> bool:
    """True when the host namespace has a link called ``name``."""
    from .rtnl import Rtnl

    with Rtnl() as host:
        return host.link_index(name) is not None


def enslave(port: str, bridge: str) -> None:
    """Make ``port`` a port of ``bridge`` (again, after the bridge was re-created)."""
    with netns.iproute() as ipr:
        br, idx = link_index(ipr, bridge), link_index(ipr, port)
        if br is not None and idx is not None:
            ipr.link("set", index=idx, master=br, state="up")


def host_links(prefix: str) -> list[str]:
    """Names of the host's links starting with ``prefix`` (for crash cleanup)."""
    with netns.iproute() as ipr:
        names = [link.get_attr("IFLA_IFNAME") for link in ipr.get_links()]
    return [n for n in names if n and n.startswith(prefix)]


def attach_veth(sandbox: Path, bridge: str, host_name: str, ifname: str, mac: str,
                ip: str, prefixlen: int, mtu: int, gateway: str | None,
                ip6: str = "", prefixlen6: int = 0, gateway6: str | None = None) -> None:
    """Make a veth pair, plug one end into ``bridge`` and the other into the sandbox.

    The pair is made in one request with its peer already inside the sandbox under its
    final name, MAC and MTU, and the host end already up and a bridge port:
    moving a link between namespaces afterwards costs the kernel 10-20 ms, this about
    one. Raw rtnetlink (rtnl.py), not pyroute2: containers starting together otherwise
    queue on the GIL behind its Python encoding. On any failure the pair is deleted
    (deleting one end deletes both), so nothing is left half-made.
    ``gateway``/``gateway6`` set: add a default route through it.
    """
    from .rtnl import Rtnl

    what = f"interface {host_name} for {ifname}"
    # one veth at a time: the kernel serialises all of this on its rtnl lock anyway, and
    # the disable_ipv6 write does not wait for that lock but restarts itself until it
    # gets it (rtnl_trylock + restart_syscall): with several containers starting, it
    # spun for milliseconds of CPU against our own other threads
    with _RTNL_USERS, Rtnl() as host, _errors(what):
        br = host.link_index(bridge)
        if br is None:
            raise RuntimeError(f"bridge {bridge} is missing")
        fd = os.open(sandbox, os.O_RDONLY | os.O_CLOEXEC)
        try:
            host.add_veth(host_name, ifname, peer_netns_fd=fd, mtu=mtu, master=br, peer_mac=mac)
        finally:
            os.close(fd)
        try:
            write_sysctl(f"net.ipv6.conf.{host_name}.disable_ipv6", "1")
            with Rtnl(netns.netlink_socket(sandbox)) as ns:
                idx = ns.link_index(ifname)
                if idx is None:
                    raise RuntimeError(f"{ifname} did not appear in {sandbox}")
                ns.add_address(idx, ip, prefixlen)
                if ip6:
                    ns.add_address(idx, ip6, prefixlen6, IFA_F_NODAD)
                ns.set_up(idx)
                if gateway:
                    ns.add_default_route(gateway, idx)
                if gateway6:
                    ns.add_default_route(gateway6, idx)
        except BaseException:
            host.delete_link(host_name)
            raise


@contextlib.contextmanager
def _errors(what: str) -> Iterator[None]:
    """rtnl's OSError as netlink_errors() words it: Conflict for EEXIST, else one line."""
    try:
        yield
    except OSError as exc:
        if exc.errno == errno.EEXIST:
            raise Conflict(f"{what}: already exists") from None
        raise RuntimeError(f"{what}: {os.strerror(exc.errno) if exc.errno else exc}") from None


def default_gateway(sandbox: Path, family: int = 2) -> str | None:
    """The sandbox's current default gateway for ``family`` (2: IPv4, 10: IPv6), if any."""
    with netns.iproute(sandbox) as nsr:
        for route in nsr.get_routes(family=family, table=254):
            if route["dst_len"] == 0 and route.get_attr("RTA_GATEWAY"):
                return route.get_attr("RTA_GATEWAY")
    return None


def set_default_route(sandbox: Path, gateway: str | None, ifname: str | None, family: int = 2) -> None:
    """Replace the sandbox's default route of ``family`` (None: remove it)."""
    dst = "::/0" if family == 10 else "0.0.0.0/0"
    with netns.iproute(sandbox) as nsr:
        for route in nsr.get_routes(family=family, table=254):
            if route["dst_len"] == 0 and route.get_attr("RTA_GATEWAY"):
                nsr.route("del", dst=dst, gateway=route.get_attr("RTA_GATEWAY"), family=family)
        if gateway and ifname:
            idx = link_index(nsr, ifname)
            nsr.route("add", dst=dst, gateway=gateway, oif=idx, family=family)
