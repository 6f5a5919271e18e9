"""The embedded DNS server, queried from inside namespaces with busybox nslookup
(UDP) and with dnslib over TCP."""
from __future__ import annotations

import socket
import struct
from pathlib import Path

from pystack.networking import EndpointSpec, NetworkManager
from nethelpers import assert_gone, owned_objects, TinyResolver, addresses_of, nslookup


def _join(nm, net, cid: str, **kw):
    nm.create_sandbox(cid)
    return nm.connect(cid, net.id, EndpointSpec(**kw))


def test_service_container_alias_names_and_rotation(nm, make_net, unique_name):
    net = make_net()
    w1 = _join(nm, net, unique_name + "w1", names=["proj-web-1", "web"], aliases=["frontend"])
    w2 = _join(nm, net, unique_name + "w2", names=["proj-web-2", "web"])
    c = _join(nm, net, unique_name + "c", names=["proj-client-1", "client"])
    client = nm.sandbox_path(unique_name + "c")
    first = addresses_of(nslookup(client, "web", net.gateway).stdout)
    second = addresses_of(nslookup(client, "web", net.gateway).stdout)
    assert sorted(first) == sorted([w1.ip, w2.ip])
    assert first != second, "service answers rotate between queries"
    assert addresses_of(nslookup(client, "proj-web-2", net.gateway).stdout) == [w2.ip]
    assert addresses_of(nslookup(client, "FrontEnd", net.gateway).stdout) == [w1.ip]
    assert addresses_of(nslookup(client, "proj-client-1", net.gateway).stdout) == [c.ip]
    assert addresses_of(nslookup(client, f"proj-web-2.{net.name}", net.gateway).stdout) == [w2.ip]
    # reverse lookup gives the container name
    ptr = nslookup(client, w1.ip, net.gateway).stdout
    assert "proj-web-1" in ptr
    # resolv.conf points at the embedded server
    assert f"nameserver {net.gateway}" in nm.resolv_conf(unique_name + "c", search=["example.test"])


def test_names_follow_connect_and_disconnect(nm, make_net, unique_name):
    net = make_net()
    _join(nm, net, unique_name + "c", names=["client"])
    client = nm.sandbox_path(unique_name + "c")
    assert nslookup(client, "late", net.gateway).returncode != 0
    late = _join(nm, net, unique_name + "l", names=["late"])
    assert addresses_of(nslookup(client, "late", net.gateway).stdout) == [late.ip]
    nm.disconnect(unique_name + "l", net.id)
    assert nslookup(client, "late", net.gateway).returncode != 0


def test_names_do_not_cross_networks_and_links_are_private(nm, make_net, unique_name):
    na, nb = make_net(), make_net()
    _join(nm, na, unique_name + "a", names=["only-a"], links={"database": "db"})
    db = nm.connect(unique_name + "a", nb.id, EndpointSpec(names=["only-a"]))  # a is on both
    _join(nm, nb, unique_name + "b", names=["only-b", "db"])
    _join(nm, na, unique_name + "d", names=["db"])
    _join(nm, na, unique_name + "o", names=["other"])
    a, other = nm.sandbox_path(unique_name + "a"), nm.sandbox_path(unique_name + "o")
    # "other" is only on A: B's names are unknown there, even asking B's server directly
    assert nslookup(other, "only-b", na.gateway).returncode != 0
    assert nslookup(other, "only-b", nb.gateway).returncode != 0
    # a is on both networks: each network's server answers it, and its own resolver (the
    # first network's, as resolv.conf says) knows the names of both, as Docker's does
    b_ip = nm.endpoints(unique_name + "b")[0].ip
    assert addresses_of(nslookup(a, "only-b", nb.gateway).stdout) == [b_ip]
    assert addresses_of(nslookup(a, "only-b", na.gateway).stdout) == [b_ip]
    assert "only-b" in nslookup(a, b_ip, na.gateway).stdout  # PTR too
    assert db.ip
    # the link alias resolves for a (to db on network A) but not for other
    d_ip = nm.endpoints(unique_name + "d")[0].ip
    assert addresses_of(nslookup(a, "database", na.gateway).stdout) == [d_ip]
    assert nslookup(other, "database", na.gateway).returncode != 0


def test_forwards_unknown_names_to_upstream_but_not_from_internal(tmp_path: Path, subnets, unique_name):
    from pystack.networking import IPAMPool, NetworkSpec

    upstream = TinyResolver("192.0.2.123")
    nm = NetworkManager(tmp_path / "s", tmp_path / "r", dns_upstreams=[upstream.address])
    try:
        pub = nm.create_network(NetworkSpec(id=unique_name + "p", name=unique_name + "p",
                                            ipam=[IPAMPool(subnet=subnets.next())]))
        internal = nm.create_network(NetworkSpec(id=unique_name + "i", name=unique_name + "i",
                                                 internal=True, ipam=[IPAMPool(subnet=subnets.next())]))
        _join(nm, pub, unique_name + "p", names=["p"])
        _join(nm, internal, unique_name + "i", names=["i"])
        out = nslookup(nm.sandbox_path(unique_name + "p"), "example.test", pub.gateway).stdout
        assert "192.0.2.123" in addresses_of(out)
        assert any(q.startswith("example.test") for q in upstream.queries)
        n = len(upstream.queries)
        res = nslookup(nm.sandbox_path(unique_name + "i"), "leak.example.test", internal.gateway)
        assert res.returncode != 0 and "192.0.2.123" not in res.stdout
        assert len(upstream.queries) == n, "internal networks never forward"
        # a container's own dns: servers are its upstreams
        other = TinyResolver("192.0.2.77")
        try:
            _join(nm, pub, unique_name + "q", names=["q"], dns=[other.address])
            out = nslookup(nm.sandbox_path(unique_name + "q"), "example.test", pub.gateway).stdout
            assert addresses_of(out) == ["192.0.2.77"]
        finally:
            other.close()
    finally:
        owned = owned_objects(nm)
        nm.cleanup_all()
        upstream.close()
    assert_gone(owned)


def test_tcp_queries_are_answered(nm, make_net, unique_name):
    from dnslib import DNSRecord

    net = make_net()
    web = _join(nm, net, unique_name + "w", names=["web"])
    # The host itself is not inside the subnet, so it is refused; a query from inside is
    # answered. Use a TCP socket opened inside the namespace.
    import ctypes
    import os
    import threading

    libc = ctypes.CDLL(None, use_errno=True)
    result: dict = {}

    def inside() -> None:
        fd = os.open(nm.sandbox_path(unique_name + "w"), os.O_RDONLY)
        libc.setns(fd, 0x40000000)
        os.close(fd)
        q = DNSRecord.question("web").pack()
        with socket.create_connection((net.gateway, 53), timeout=3) as s:
            s.sendall(struct.pack("!H", len(q)) + q)
            size = struct.unpack("!H", s.recv(2))[0]
            data = b""
            while len(data) < size:
                data += s.recv(size - len(data))
        result["reply"] = DNSRecord.parse(data)

    t = threading.Thread(target=inside)
    t.start()
    t.join()
    assert [str(rr.rdata) for rr in result["reply"].rr] == [web.ip]
    # from the host (outside every subnet) the same server refuses
    q = DNSRecord.question("web")
    reply = DNSRecord.parse(q.send(net.gateway, 53, tcp=False, timeout=3))
    assert reply.header.rcode == 5 and not reply.rr
