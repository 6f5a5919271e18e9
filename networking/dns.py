"""The embedded DNS server: service discovery on every network's gateway address.

It runs as one thread in the process that owns the ``NetworkManager`` (the engine),
listening on ``<gateway>:53`` UDP and TCP for each network. Its answers come from the
persisted endpoints, so a restarted engine answers exactly as before; the manager calls
``update`` after every connect/disconnect, so names appear and disappear without any
restart. Which network a query belongs to is known from the socket it arrived on, and
the client must be inside that network's subnet: a container never resolves names of a
network it is not on. Unknown names are forwarded to upstream resolvers (the
container's own ``dns:`` if set, else the manager's), except from internal networks
(no way out, not even through DNS: CVE-2024-29018).
"""
from __future__ import annotations

import ipaddress
import logging
import selectors
import socket
import struct
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .types import EndpointRecord, NetworkRecord

log = logging.getLogger(__name__)

TTL = 600
FORWARD_TIMEOUT = 2.0
QTYPE_A, QTYPE_PTR, QTYPE_AAAA, QTYPE_ANY = 1, 12, 28, 255
RCODE_NXDOMAIN, RCODE_REFUSED = 3, 5
_HEADER = struct.Struct("!HHHHHH")


def parse_query(data: bytes) -> tuple[int, int, list[str], int, int] | None:
    """(id, flags, lower-case labels, qtype, end of question) of a plain query, else None.

    Plain: a standard query (QR=0, opcode 0) with one class-IN question, no answers or
    authority records, at most one additional record (an EDNS OPT, which is ignored:
    replies are small), and no compression in the question.
    """
    if len(data) < 17:
        return None
    qid, flags, qd, an, ns, ar = _HEADER.unpack_from(data)
    if flags & 0xF800 or qd != 1 or an or ns or ar > 1:
        return None
    labels: list[str] = []
    pos = 12
    while True:
        if pos >= len(data):
            return None
        n = data[pos]
        if n == 0:
            pos += 1
            break
        if n & 0xC0:
            return None
        label = data[pos + 1: pos + 1 + n]
        if len(label) != n:
            return None
        try:
            labels.append(label.decode("ascii").lower())
        except UnicodeDecodeError:
            return None
        pos += 1 + n
    if pos + 4 > len(data):
        return None
    qtype, qclass = struct.unpack_from("!HH", data, pos)
    if qclass != 1:
        return None
    return qid, flags, labels, qtype, pos + 4


def encode_name(name: str) -> bytes:
    """A domain name in wire format (no compression)."""
    out = b""
    for label in name.rstrip(".").split("."):
        raw = label.encode("ascii", "replace")[:63]
        out += bytes([len(raw)]) + raw
    return out + b"\0"


def build_reply(qid: int, qflags: int, question: bytes, rcode: int,
                answers: list[tuple[int, bytes]]) -> bytes:
    """An authoritative reply echoing the question; answers point at its name (0xC00C)."""
    flags = 0x8000 | 0x0400 | (qflags & 0x0100) | 0x0080 | rcode  # QR AA RD(copied) RA
    out = [_HEADER.pack(qid, flags, 1, len(answers), 0, 0), question]
    for rtype, rdata in answers:
        out.append(struct.pack("!HHHIH", 0xC00C, rtype, 1, TTL, len(rdata)) + rdata)
    return b"".join(out)


@dataclass
class _NetTable:
    """What one network's resolver knows."""

    network: NetworkRecord
    subnet: ipaddress.IPv4Network
    names: dict[str, list[str]] = field(default_factory=dict)   # name -> ips (connect order)
    names6: dict[str, list[str]] = field(default_factory=dict)  # name -> IPv6 addresses
    subnet6: ipaddress.IPv6Network | None = None
    ptr: dict[str, str] = field(default_factory=dict)           # ip -> canonical name
    links: dict[str, dict[str, str]] = field(default_factory=dict)  # client ip -> alias -> name
    upstreams: dict[str, list[str]] = field(default_factory=dict)   # client ip -> dns

    @property
    def mask(self) -> int:
        return int(self.subnet.netmask)

    @property
    def net_int(self) -> int:
        return int(self.subnet.network_address)


def build_peers(endpoints: list[EndpointRecord]) -> dict[tuple[str, str], list[str]]:
    """(network id, endpoint address) -> the other networks of the same container.

    A container on several networks asks one resolver (its first network's) and must
    get the names of all of them, as with Docker's 127.0.0.11.
    """
    by_container: dict[str, list[str]] = {}
    for ep in endpoints:
        by_container.setdefault(ep.container_id, []).append(ep.network_id)
    return {(ep.network_id, ep.ip): [n for n in by_container[ep.container_id] if n != ep.network_id]
            for ep in endpoints if len(by_container[ep.container_id]) > 1}


def build_tables(networks: list[NetworkRecord], endpoints: list[EndpointRecord]) -> dict[str, _NetTable]:
    """Index endpoints by network: names (service, container, aliases) and reverse names."""
    tables = {n.id: _NetTable(n, ipaddress.ip_network(n.subnet),
                              subnet6=ipaddress.ip_network(n.subnet6) if n.subnet6 else None)
              for n in networks}
    for ep in endpoints:
        table = tables.get(ep.network_id)
        if table is None:
            continue
        for name in [*ep.names, *ep.aliases]:
            key = name.lower().rstrip(".")
            ips = table.names.setdefault(key, [])
            if ep.ip not in ips:
                ips.append(ep.ip)
            if ep.ip6:
                ips6 = table.names6.setdefault(key, [])
                if ep.ip6 not in ips6:
                    ips6.append(ep.ip6)
        if ep.names:
            table.ptr.setdefault(ep.ip, ep.names[0])
            if ep.ip6:
                table.ptr.setdefault(ep.ip6, ep.names[0])
        if ep.links:
            table.links[ep.ip] = {k.lower(): v.lower() for k, v in ep.links.items()}
        if ep.dns:
            table.upstreams[ep.ip] = list(ep.dns)
    return tables


def parse_upstream(text: str) -> tuple[str, int]:
    """``1.2.3.4`` or ``1.2.3.4:5353`` -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if sep and host and "." in host:
        return host, int(port)
    return text, 53


def host_resolvers(path: Path = Path("/etc/resolv.conf")) -> list[str]:
    """The host's nameservers: the default upstreams of a production engine."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    return [ln.split()[1] for ln in lines if ln.startswith("nameserver") and len(ln.split()) > 1
            and ":" not in ln.split()[1]]


class DNSServer:
    """One blocking thread per network's UDP socket (the hot path: no select() per
    packet), a selector loop over the TCP listeners, slow work (forwarding, TCP) in a pool."""

    def __init__(self, upstreams: list[str] | None = None) -> None:
        self.upstreams = upstreams
        self._tables: dict[str, _NetTable] = {}
        self._by_gateway: dict[str, _NetTable] = {}
        self._peers: dict[tuple[str, str], list[str]] = {}
        self._lock = threading.Lock()
        self._rotation: dict[tuple[str, str], int] = {}
        self._sel = selectors.DefaultSelector()
        self._socks: dict[str, list[socket.socket]] = {}   # gateway -> [udp, tcp]
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="pystack-dns")
        self._stop = False
        self._closing: set[int] = set()   # ids of UDP sockets being shut down
        self._thread = threading.Thread(target=self._loop, name="pystack-dns", daemon=True)
        self._thread.start()

    # -- control --------------------------------------------------------------------

    def update(self, networks: list[NetworkRecord], endpoints: list[EndpointRecord]) -> None:
        """Swap in new tables and (un)bind the gateways that came or went."""
        tables = build_tables(networks, endpoints)
        peers = build_peers(endpoints)
        wanted = {t.network.gateway: net_id for net_id, t in tables.items()}
        with self._lock:
            self._tables = tables
            self._peers = peers
            self._by_gateway = {t.network.gateway: t for t in tables.values()}
            for gw in list(self._socks):
                if gw not in wanted:
                    udp, tcp = self._socks.pop(gw)
                    self._sel.unregister(tcp)
                    tcp.close()
                    self._stop_udp(udp)
            for gw in wanted:
                if gw not in self._socks:
                    self._socks[gw] = self._bind(gw)
        self._wake_w.send(b"x")

    def _bind(self, gw: str) -> list[socket.socket]:
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            # REUSEADDR on TCP only (restart while old connections linger); on UDP it
            # would let a second server bind the same address and split the queries.
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            for s in (udp, tcp):
                # FREEBIND: a gateway address may be re-added after the socket is bound.
                s.setsockopt(socket.SOL_IP, 15, 1)  # IP_FREEBIND
                s.bind((gw, 53))
            tcp.setblocking(False)
            tcp.listen(64)
        except OSError:
            udp.close()
            tcp.close()
            raise
        self._sel.register(tcp, selectors.EVENT_READ, ("tcp", gw))
        threading.Thread(target=self._udp_loop, args=(udp, gw), name=f"pystack-dns-{gw}",
                         daemon=True).start()
        return [udp, tcp]

    def _stop_udp(self, udp: socket.socket) -> None:
        """Wake the socket's thread (shutdown makes a blocked recvfrom return) and close."""
        self._closing.add(id(udp))
        try:
            udp.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        udp.close()

    def close(self) -> None:
        """Stop the thread and close every socket (the names stay on disk)."""
        self._stop = True
        self._wake_w.send(b"x")
        self._thread.join(timeout=5)
        with self._lock:
            for udp, tcp in self._socks.values():
                tcp.close()
                self._stop_udp(udp)
            self._socks.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._sel.close()
        self._wake_r.close()
        self._wake_w.close()

    # -- serving --------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop:
            for key, _ in self._sel.select(timeout=1.0):
                if key.data is None:
                    try:
                        self._wake_r.recv(4096)
                    except BlockingIOError:
                        pass
                    continue
                _, gw = key.data
                sock: socket.socket = key.fileobj  # type: ignore[assignment]
                try:
                    conn, addr = sock.accept()
                    conn.setblocking(True)
                    self._pool.submit(self._serve_tcp, conn, gw, addr)
                except OSError:
                    continue  # socket closed by update(), or a client went away

    def _udp_loop(self, sock: socket.socket, gw: str) -> None:
        while True:
            try:
                data, addr = sock.recvfrom(65535)
            except OSError:
                return
            if id(sock) in self._closing:
                self._closing.discard(id(sock))
                return
            try:
                self._serve_udp(sock, gw, data, addr)
            except OSError:
                continue
            except Exception:  # a bug must not take name service down for the network
                log.exception("embedded DNS: query from %s on %s failed", addr, gw)

    def _serve_udp(self, sock: socket.socket, gw: str, data: bytes, addr) -> None:
        reply = self.answer(gw, addr[0], data)
        if reply is not None:
            if reply:
                sock.sendto(reply, addr)
            return
        self._pool.submit(self._forward_udp, sock, gw, data, addr)

    def _forward_udp(self, sock: socket.socket, gw: str, data: bytes, addr) -> None:
        reply = self.forward(gw, addr[0], data, tcp=False)
        if not reply:
            return
        try:
            sock.sendto(reply, addr)
        except OSError:
            pass

    def _serve_tcp(self, conn: socket.socket, gw: str, addr) -> None:
        with conn:
            conn.settimeout(5)
            try:
                while True:
                    head = _recv_exact(conn, 2)
                    if not head:
                        return
                    data = _recv_exact(conn, struct.unpack("!H", head)[0])
                    reply = self.answer(gw, addr[0], data)
                    if reply is None:
                        reply = self.forward(gw, addr[0], data, tcp=True)
                    if not reply:
                        return
                    conn.sendall(struct.pack("!H", len(reply)) + reply)
            except (OSError, ValueError):
                return
            except Exception:
                log.exception("embedded DNS: TCP query from %s on %s failed", addr, gw)

    # -- answers --------------------------------------------------------------------

    def _table_for(self, gw: str, client: str) -> _NetTable | None:
        """The network served on ``gw``, if ``client`` is inside its subnet."""
        table = self._by_gateway.get(gw)
        if table is None:
            return None
        try:
            ip = struct.unpack("!I", socket.inet_aton(client))[0]
        except OSError:
            return None
        return table if ip & table.mask == table.net_int else None

    def answer(self, gw: str, client: str, data: bytes) -> bytes | None:
        """The reply to a query from ``client`` on the network of ``gw``; None: forward it.

        Plain one-question queries (what resolvers send) are parsed and answered by hand,
        which is several times faster than dnslib; anything else goes through dnslib.
        """
        table = self._table_for(gw, client)
        q = parse_query(data)
        if q is None:
            return self._answer_dnslib(table, client, data)
        qid, flags, labels, qtype, end = q
        if table is None:
            return build_reply(qid, flags, data[12:end], RCODE_REFUSED, [])
        result = self.resolve(table, client, ".".join(labels), qtype)
        if result is None:
            return None
        rcode, answers = result
        wire = [(t, encode_name(v) if t == QTYPE_PTR else
                 socket.inet_pton(socket.AF_INET6 if t == QTYPE_AAAA else socket.AF_INET, v))
                for t, v in answers]
        return build_reply(qid, flags, data[12:end], rcode, wire)

    def resolve(self, table: _NetTable, client: str, qname: str, qtype: int
                ) -> tuple[int, list[tuple[int, str]]] | None:
        """(rcode, [(type, value)]) for a lower-case name on a network; None: not ours,
        forward it. Known names answer A and AAAA (rotated) and nothing else (an empty
        NOERROR, so resolvers do not go elsewhere); reverse names answer PTR."""
        tables, peers = self._tables, self._peers
        candidates = [table] + [tables[n] for n in peers.get((table.network.id, client), []) if n in tables]
        if qtype == QTYPE_PTR and (qname.endswith(".in-addr.arpa") or qname.endswith(".ip6.arpa")):
            found = [self._ptr(t, qname) for t in candidates]
            names = [f for f in found if f]
            if names:
                return 0, [(QTYPE_PTR, names[0])]
            if "" in found:
                return RCODE_NXDOMAIN, []
            return None
        target = table.links.get(client, {}).get(qname, qname)
        for t in candidates:  # the network asked first, then the container's others
            if target in t.names or target in t.names6:
                table = t
                break
            suffix = "." + t.network.name.lower()  # Docker also answers <name>.<network>
            if target.endswith(suffix) and (target[: -len(suffix)] in t.names
                                            or target[: -len(suffix)] in t.names6):
                table, target = t, target[: -len(suffix)]
                break
        else:
            return None
        answers: list[tuple[int, str]] = []
        if qtype in (QTYPE_A, QTYPE_ANY):
            answers += [(QTYPE_A, ip) for ip in self._rotated(table, target, table.names.get(target, []))]
        if qtype in (QTYPE_AAAA, QTYPE_ANY):
            answers += [(QTYPE_AAAA, ip) for ip in self._rotated(table, target + "/6", table.names6.get(target, []))]
        return 0, answers

    def _ptr(self, table: _NetTable, qname: str) -> str | None:
        """Name for a reverse query; "" for an unknown address of this network (NXDOMAIN),
        None for an address elsewhere (forward)."""
        try:
            if qname.endswith(".in-addr.arpa"):
                ip = ipaddress.ip_address(".".join(reversed(qname[: -len(".in-addr.arpa")].split("."))))
            else:
                nibbles = "".join(reversed(qname[: -len(".ip6.arpa")].split(".")))
                if len(nibbles) != 32:
                    return None
                ip = ipaddress.ip_address(int(nibbles, 16))
        except ValueError:
            return None
        name = table.ptr.get(str(ip))
        if name is not None:
            return name
        inside = ip in table.subnet if ip.version == 4 else bool(table.subnet6 and ip in table.subnet6)
        return "" if inside else None

    def _rotated(self, table: _NetTable, key: str, ips: list[str]) -> list[str]:
        """All of a name's addresses, starting one further at each query (round robin)."""
        if len(ips) < 2:
            return ips
        rkey = (table.network.id, key)
        with self._lock:
            n = self._rotation.get(rkey, 0)
            self._rotation[rkey] = n + 1
        k = n % len(ips)
        return ips[k:] + ips[:k]

    def _answer_dnslib(self, table: _NetTable | None, client: str, data: bytes) -> bytes | None:
        from dnslib import AAAA, PTR, RR, A, DNSRecord

        try:
            query = DNSRecord.parse(data)
        except Exception:
            return b""  # not DNS: dropped without a reply
        reply = query.reply()
        if table is None or len(query.questions) != 1:
            reply.header.rcode = RCODE_REFUSED
            return reply.pack()
        q = query.q
        result = self.resolve(table, client, str(q.qname).rstrip(".").lower(), q.qtype)
        if result is None:
            return None
        rcode, answers = result
        reply.header.rcode = rcode
        make = {QTYPE_A: A, QTYPE_AAAA: AAAA, QTYPE_PTR: lambda v: PTR(v + ".")}
        for rtype, value in answers:
            reply.add_answer(RR(q.qname, rtype, rdata=make[rtype](value), ttl=TTL))
        return reply.pack()

    def forward(self, gw: str, client: str, data: bytes, tcp: bool) -> bytes:
        """Relay a query to the upstream resolvers; SERVFAIL/REFUSED when that is not allowed."""
        from dnslib import RCODE, DNSRecord

        table = self._table_for(gw, client)
        try:
            reply = DNSRecord.parse(data).reply()
        except Exception:
            return b""
        if table is None or table.network.internal:
            reply.header.rcode = RCODE.REFUSED
            return reply.pack()
        upstreams = table.upstreams.get(client) or self.upstreams
        if upstreams is None:
            upstreams = host_resolvers()
        if not upstreams:  # nobody to ask: a final answer, so resolvers do not retry
            reply.header.rcode = RCODE.REFUSED
            return reply.pack()
        for up in upstreams:
            host, port = parse_upstream(up)
            try:
                if tcp:
                    with socket.create_connection((host, port), timeout=FORWARD_TIMEOUT) as s:
                        s.sendall(struct.pack("!H", len(data)) + data)
                        head = _recv_exact(s, 2)
                        return _recv_exact(s, struct.unpack("!H", head)[0])
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    s.settimeout(FORWARD_TIMEOUT)
                    s.sendto(data, (host, port))
                    return s.recv(65535)
            except (OSError, ValueError):
                continue
        reply.header.rcode = RCODE.SERVFAIL
        return reply.pack()


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            if buf:
                raise ValueError("short read")
            return b""
        buf += chunk
    return buf
