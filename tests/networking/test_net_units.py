"""Pure functions of the networking package: IPAM, port specs, resolv.conf/hosts."""
from __future__ import annotations

import ipaddress

import pytest

from pystack.errors import Conflict, UserError
from pystack.networking import PortSpec, ipam, ports
from pystack.networking.resolv import hosts_file, resolv_conf
from pystack.networking.types import PortBinding


def test_choose_subnet_skips_overlaps():
    taken = [ipaddress.ip_network("172.17.0.0/16"), ipaddress.ip_network("172.18.5.0/24")]
    assert str(ipam.choose_subnet(ipam.DEFAULT_POOLS, taken)) == "172.19.0.0/16"
    with pytest.raises(Conflict):
        ipam.choose_subnet([("10.210.0.0/24", 24)], [ipaddress.ip_network("10.210.0.0/16")])


def test_allocate_skips_reserved_and_honours_requests():
    net = ipaddress.ip_network("10.210.9.0/29")
    assert ipam.allocate(net, None, {"10.210.9.1"}, None) == "10.210.9.2"
    assert ipam.allocate(net, "10.210.9.4/30", {"10.210.9.1", "10.210.9.4"}, None) == "10.210.9.5"
    assert ipam.allocate(net, None, set(), "10.210.9.6") == "10.210.9.6"
    with pytest.raises(UserError):
        ipam.allocate(net, None, set(), "10.210.9.7")  # broadcast
    full = {str(ip) for ip in net.hosts()}
    with pytest.raises(Conflict):
        ipam.allocate(net, None, full, None)
    assert ipam.mac_for("172.17.0.2") == "02:42:ac:11:00:02"


def test_port_spec_normalisation_and_clash_detection():
    assert ports.normalize(PortSpec(80, 8080, "0.0.0.0", "TCP")) == PortSpec(80, 8080, "", "tcp")
    assert ports.normalize(PortSpec(80, None, "::", "udp")).host_ip == ""
    for bad in (PortSpec(0), PortSpec(80, 70000), PortSpec(80, 1, "x.y"), PortSpec(80, 1, "", "sctp"),
                PortSpec(80, 1, "fd00::1")):
        with pytest.raises(UserError):
            ports.normalize(bad)
    held = [PortBinding("c", "127.0.0.1", 40001, "10.0.0.2", 80, "tcp")]
    with pytest.raises(Conflict):
        ports.choose([PortSpec(80, 40001, "", "tcp")], held)  # 0.0.0.0 overlaps 127.0.0.1
    with pytest.raises(Conflict):
        ports.choose([PortSpec(80, 40002), PortSpec(81, 40002)], [])  # twice in one request


def test_resolv_conf_and_hosts_file():
    text = resolv_conf(["10.210.0.1"], ["svc.test"], ["ndots:2"])
    assert text.splitlines()[1:] == ["nameserver 10.210.0.1", "search svc.test", "options ndots:2"]
    hosts = hosts_file("web", "example.test", ["10.210.0.2"], ["db:10.0.0.9", "gw=host-gateway"],
                       host_gateway="10.210.0.1")
    assert "10.0.0.9\tdb" in hosts and "10.210.0.1\tgw" in hosts
    assert "10.210.0.2\tweb.example.test web" in hosts
    with pytest.raises(UserError):
        hosts_file("web", extra_hosts=["nonsense"])
    with pytest.raises(UserError):
        hosts_file("web", extra_hosts=["gw:host-gateway"])


def test_docker_shapes_and_connect_order():
    from pystack.networking.docker_json import connect_order, endpoint_json, network_json, ports_json
    from pystack.networking.types import EndpointRecord, NetworkRecord

    net = NetworkRecord(id="ab" * 32, name="p_default", bridge="psbr-abababab", subnet="10.210.1.0/24",
                        gateway="10.210.1.1", labels={"com.docker.compose.network": "default"})
    ep = EndpointRecord("c1", net.id, "10.210.1.2", 24, "10.210.1.1", "02:42:0a:d2:01:02", "eth0",
                        "psvc1c1c1c10", names=["p-web-1", "web"], aliases=["w"])
    doc = network_json(net, [ep])
    assert doc["IPAM"]["Config"] == [{"Subnet": "10.210.1.0/24", "Gateway": "10.210.1.1"}]
    assert doc["Containers"]["c1"]["IPv4Address"] == "10.210.1.2/24"
    assert doc["Containers"]["c1"]["Name"] == "p-web-1"
    assert endpoint_json(ep, net)["IPAddress"] == "10.210.1.2"
    assert len(endpoint_json(ep, net)["EndpointID"]) == 64
    assert ports_json([PortBinding("c1", "0.0.0.0", 8080, "10.210.1.2", 80, "tcp")]) == \
        {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}
    assert connect_order({"b": None, "a": {}, "z": {"priority": 10}}) == ["z", "a", "b"]


def test_dns_fast_path_replies_parse_as_dns():
    """The hand-built replies (fast path) are valid DNS, equal to the dnslib path's answers."""
    from dnslib import EDNS0, DNSRecord

    from pystack.networking.dns import DNSServer, build_tables
    from pystack.networking.types import EndpointRecord, NetworkRecord

    net = NetworkRecord(id="n1", name="n", bridge="psbr-x", subnet="10.210.3.0/24", gateway="10.210.3.1")
    eps = [EndpointRecord("c1", "n1", "10.210.3.2", 24, "10.210.3.1", "m", "eth0", "v", names=["web-1", "web"]),
           EndpointRecord("c2", "n1", "10.210.3.3", 24, "10.210.3.1", "m", "eth0", "v", names=["web-2", "web"])]
    server = DNSServer([])
    try:
        server._tables = build_tables([net], eps)  # no sockets: answer() is called directly
        server._by_gateway = {net.gateway: server._tables["n1"]}
        q = DNSRecord.question("WEB")
        fast = DNSRecord.parse(server.answer("10.210.3.1", "10.210.3.9", q.pack()))
        assert fast.header.id == q.header.id and fast.header.qr == 1 and fast.header.aa == 1
        assert sorted(str(r.rdata) for r in fast.rr) == ["10.210.3.2", "10.210.3.3"]
        assert str(fast.q.qname) == "WEB."
        edns = DNSRecord.question("web-2")
        edns.add_ar(EDNS0())
        assert [str(r.rdata) for r in DNSRecord.parse(server.answer("10.210.3.1", "10.210.3.9", edns.pack())).rr] \
            == ["10.210.3.3"]
        ptr = DNSRecord.parse(server.answer("10.210.3.1", "10.210.3.9",
                                            DNSRecord.question("2.3.210.10.in-addr.arpa", "PTR").pack()))
        assert str(ptr.rr[0].rdata) == "web-1."
        nx = DNSRecord.parse(server.answer("10.210.3.1", "10.210.3.9",
                                           DNSRecord.question("9.3.210.10.in-addr.arpa", "PTR").pack()))
        assert nx.header.rcode == 3
        aaaa = DNSRecord.parse(server.answer("10.210.3.1", "10.210.3.9", DNSRecord.question("web", "AAAA").pack()))
        assert aaaa.header.rcode == 0 and not aaaa.rr
        assert server.answer("10.210.3.1", "10.210.3.9", DNSRecord.question("unknown.test").pack()) is None
        refused = DNSRecord.parse(server.answer("10.210.3.1", "10.210.9.9", q.pack()))
        assert refused.header.rcode == 5 and not refused.rr  # client outside the subnet
        assert server.answer("10.210.3.1", "10.210.3.9", b"\x00garbage") == b""
    finally:
        server.close()


def test_api_bodies_to_specs():
    from pystack.networking.docker_json import (endpoint_spec_from_api, network_spec_from_api,
                                                port_specs_from_api)

    specs = port_specs_from_api({
        "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}],
        "53/udp": [{"HostIp": "", "HostPort": ""}],
        "9000-9002/tcp": [{"HostPort": "19000-19002"}],
        "81/tcp": [{"HostPort": "8000-8010"}],
    })
    assert specs[:2] == [PortSpec(80, 8080, "127.0.0.1", "tcp"), PortSpec(53, None, "", "udp")]
    assert [(s.container_port, s.host_port) for s in specs[2:5]] == [(9000, 19000), (9001, 19001), (9002, 19002)]
    assert specs[5] == PortSpec(81, 8000, "", "tcp", 8010)
    with pytest.raises(UserError):
        port_specs_from_api({"9000-9001/tcp": [{"HostPort": "1-3"}]})
    net = network_spec_from_api({"Name": "p_default", "Internal": True, "Labels": {"a": "b"},
                                 "IPAM": {"Config": [{"Subnet": "10.210.5.0/24", "Gateway": "10.210.5.1"}]}},
                                "abc")
    assert (net.id, net.internal, net.ipam[0].subnet, net.ipam[0].gateway) == ("abc", True, "10.210.5.0/24", "10.210.5.1")
    ep = endpoint_spec_from_api({"Aliases": ["web"], "Links": ["p-db-1:database", "cache"],
                                 "IPAMConfig": {"IPv4Address": "10.210.5.9"}}, ["p-web-1"])
    assert ep.links == {"database": "p-db-1", "cache": "cache"}
    assert (ep.ipv4_address, ep.aliases, ep.names) == ("10.210.5.9", ["web"], ["p-web-1"])


def test_host_port_range_takes_the_first_free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        held = [PortBinding("c", "0.0.0.0", busy + 1, "10.0.0.2", 80, "tcp")]
        spec = ports.normalize(PortSpec(80, busy, "127.0.0.1", "tcp", busy + 5))
        [(chosen, port)] = ports.choose([spec], held)
        assert busy + 2 <= port <= busy + 5
    with pytest.raises(UserError):
        ports.normalize(PortSpec(80, 9000, "", "tcp", 8000))
