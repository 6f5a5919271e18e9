"""A minimal rtnetlink client for the container start path (links, addresses, routes).

pyroute2 is complete but heavy: building an ``IPRoute`` sets up an asyncio loop, and
each request is encoded and decoded by generic Python machinery, which made the veths of
containers starting together wait on the GIL. The few requests a container start needs
are packed here by hand with ``struct`` (the layouts of linux/rtnetlink.h and
linux/if_link.h): one socket, one send and one receive per request.

Errors come back as ``OSError`` with the kernel's errno (EEXIST, ENODEV...).
"""
from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct

# message types (linux/rtnetlink.h)
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR = 20
RTM_NEWROUTE = 24
NLMSG_ERROR, NLMSG_DONE = 2, 3
# flags (linux/netlink.h)
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
# link attributes (linux/if_link.h)
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_MASTER, IFLA_LINKINFO, IFLA_NET_NS_FD = 1, 3, 4, 10, 18, 28
IFLA_INFO_KIND, IFLA_INFO_DATA, VETH_INFO_PEER = 1, 2, 1
IFF_UP = 0x1
# address attributes (linux/if_addr.h)
IFA_ADDRESS, IFA_LOCAL, IFA_BROADCAST = 1, 2, 4
IFA_F_NODAD = 0x02
# routes (linux/rtnetlink.h)
RTA_DST, RTA_OIF, RTA_GATEWAY = 1, 4, 5
RT_TABLE_MAIN, RTPROT_STATIC, RT_SCOPE_UNIVERSE, RT_SCOPE_LINK, RTN_UNICAST = 254, 4, 0, 253, 1

_IFINFO = struct.Struct("=BxHiII")     # family, type, index, flags, change
_IFADDR = struct.Struct("=BBBBI")      # family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")   # family, dst_len, src_len, tos, table, protocol, scope, type, flags
_NLHDR = struct.Struct("=IHHII")       # len, type, flags, seq, pid


def _attr(kind: int, data: bytes) -> bytes:
    """One rtattr, padded to 4 bytes."""
    size = 4 + len(data)
    return struct.pack("=HH", size, kind) + data + b"\0" * (-size & 3)


def _name(name: str) -> bytes:
    return name.encode() + b"\0"


def _mac(mac: str) -> bytes:
    return bytes(int(b, 16) for b in mac.split(":"))


class Rtnl:
    """One NETLINK_ROUTE socket: the host's (``Rtnl()``) or one made inside a namespace
    (``Rtnl(netns.netlink_socket(path))``). Use as a context manager."""

    def __init__(self, sock: socket.socket | None = None) -> None:
        self.sock = sock or socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
        self.sock.bind((0, 0))
        self._seq = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "Rtnl":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, kind: int, flags: int, payload: bytes) -> list[tuple[int, bytes]]:
        """Send one request (ACK asked) and return the messages of its answer; the
        kernel's error as OSError."""
        self._seq += 1
        seq = self._seq
        self.sock.sendto(_NLHDR.pack(_NLHDR.size + len(payload), kind, flags | NLM_F_REQUEST | NLM_F_ACK, seq, 0)
                         + payload, (0, 0))
        out: list[tuple[int, bytes]] = []
        while True:
            data = self.sock.recv(65536)
            offset = 0
            while offset + _NLHDR.size <= len(data):
                size, mtype, _flags, mseq, _pid = _NLHDR.unpack_from(data, offset)
                if size < _NLHDR.size:
                    raise OSError(errno.EPROTO, "malformed netlink reply")
                body = data[offset + _NLHDR.size: offset + size]
                offset += (size + 3) & ~3
                if mseq != seq:
                    continue
                if mtype == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", body)[0]
                    if code:
                        raise OSError(code, os.strerror(code))
                    return out  # the ACK ends the answer
                if mtype == NLMSG_DONE:
                    return out
                out.append((mtype, body))

    # -- links ------------------------------------------------------------------------

    def link_index(self, name: str) -> int | None:
        """The index of link ``name`` in this socket's namespace, None if there is none."""
        if not name or len(name.encode()) > 15:
            return None
        try:
            answer = self.request(RTM_GETLINK, 0, _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
                                  + _attr(IFLA_IFNAME, _name(name)))
        except OSError as exc:
            if exc.errno in (errno.ENODEV, errno.ENOENT):
                return None
            raise
        for mtype, body in answer:
            if mtype == RTM_NEWLINK:
                return _IFINFO.unpack_from(body)[2]
        return None

    def add_veth(self, name: str, peer: str, *, peer_netns_fd: int, mtu: int, master: int | None = None,
                 peer_mac: str | None = None, up: bool = True) -> None:
        """A veth pair: ``name`` here (a port of ``master``, up when ``up``), ``peer``
        created directly in the namespace of ``peer_netns_fd``, down (the kernel cannot
        open a veth end before its pair is linked: ENOTCONN). EEXIST if either name is
        taken (then nothing is made)."""
        flags = IFF_UP if up else 0
        peer_attrs = _attr(IFLA_IFNAME, _name(peer)) + _attr(IFLA_MTU, struct.pack("=I", mtu)) \
            + _attr(IFLA_NET_NS_FD, struct.pack("=I", peer_netns_fd))
        if peer_mac:
            peer_attrs += _attr(IFLA_ADDRESS, _mac(peer_mac))
        peer_info = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + peer_attrs
        linkinfo = _attr(IFLA_INFO_KIND, b"veth\0") + _attr(IFLA_INFO_DATA, _attr(VETH_INFO_PEER, peer_info))
        attrs = _attr(IFLA_IFNAME, _name(name)) + _attr(IFLA_MTU, struct.pack("=I", mtu)) \
            + _attr(IFLA_LINKINFO, linkinfo)
        if master is not None:
            attrs += _attr(IFLA_MASTER, struct.pack("=I", master))
        self.request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL,
                     _IFINFO.pack(socket.AF_UNSPEC, 0, 0, flags, flags) + attrs)

    def set_up(self, index: int) -> None:
        self.request(RTM_NEWLINK, 0, _IFINFO.pack(socket.AF_UNSPEC, 0, index, IFF_UP, IFF_UP))

    def delete_link(self, name: str) -> bool:
        """Delete link ``name``; False when there is none."""
        if not name or len(name.encode()) > 15:
            return False
        try:
            self.request(RTM_DELLINK, 0, _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + _attr(IFLA_IFNAME, _name(name)))
        except OSError as exc:
            if exc.errno in (errno.ENODEV, errno.ENOENT):
                return False
            raise
        return True

    # -- addresses and routes -----------------------------------------------------------

    def add_address(self, index: int, address: str, prefixlen: int, flags: int = 0) -> None:
        """As ``ip addr add ADDRESS/PREFIXLEN dev INDEX`` (IPv4 with its broadcast address,
        as Docker's netlink library sets it)."""
        ip = ipaddress.ip_address(address)
        family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
        attrs = _attr(IFA_LOCAL, ip.packed) + _attr(IFA_ADDRESS, ip.packed)
        if ip.version == 4 and prefixlen < 31:
            net = ipaddress.ip_network(f"{address}/{prefixlen}", strict=False)
            attrs += _attr(IFA_BROADCAST, net.broadcast_address.packed)
        self.request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL,
                     _IFADDR.pack(family, prefixlen, flags, RT_SCOPE_UNIVERSE, index) + attrs)

    def add_default_route(self, gateway: str, oif: int) -> None:
        """As ``ip route add default via GATEWAY dev OIF`` (IPv4 or IPv6 by the gateway)."""
        gw = ipaddress.ip_address(gateway)
        family = socket.AF_INET if gw.version == 4 else socket.AF_INET6
        self.request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL,
                     _RTMSG.pack(family, 0, 0, 0, RT_TABLE_MAIN, RTPROT_STATIC, RT_SCOPE_UNIVERSE, RTN_UNICAST, 0)
                     + _attr(RTA_GATEWAY, gw.packed) + _attr(RTA_OIF, struct.pack("=I", oif)))
