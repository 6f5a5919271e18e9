"""IPv6 on enable_ipv6 networks: addresses and routes in the namespaces, reachability
over IPv6 on one network, isolation between networks, AAAA and ip6.arpa answers, the
ip6 rule table, and nothing left afterwards. Test subnets: fd0a:210::/32."""
from __future__ import annotations

import random
import shutil
import subprocess

import pytest

from pystack.errors import UserError
from pystack.networking import EndpointSpec, IPAMPool, NetworkSpec, nat
from nethelpers import in_ns, serve_http, wget

pytestmark = pytest.mark.skipif(shutil.which("nft") is None, reason="IPv6 networks need nftables")


def _v6net(nm, subnets, unique_name, n, **kw):
    block = random.randrange(0x1000, 0xFFFF)
    return nm.create_network(NetworkSpec(
        id=f"{unique_name}6{n}", name=f"{unique_name}_v6_{n}", enable_ipv6=True,
        ipam=[IPAMPool(subnet=subnets.next()), IPAMPool(subnet=f"fd0a:210:{block:x}::/64")], **kw))


def test_ipv6_network_addresses_routes_reachability_and_names(nm, subnets, unique_name, procs, tmp_path):
    if nm.firewall.kind != "nft":
        with pytest.raises(UserError, match="nftables"):
            _v6net(nm, subnets, unique_name, 1)
        return
    net = _v6net(nm, subnets, unique_name, 1)
    other = _v6net(nm, subnets, unique_name, 2)
    assert net.gateway6.endswith("::1") and net.subnet6.startswith("fd0a:210:")
    a, b, c = unique_name + "a", unique_name + "b", unique_name + "c"
    for cid in (a, b, c):
        nm.create_sandbox(cid)
    ea = nm.connect(a, net.id, EndpointSpec(names=["a6"]))
    eb = nm.connect(b, net.id, EndpointSpec(names=["b6", "svc"]))
    ec = nm.connect(c, other.id, EndpointSpec(names=["c6"]))
    assert ea.ip6 and ea.ip6 != eb.ip6 and ea.gateway6 == net.gateway6
    pa, pb, pc = (nm.sandbox_path(x) for x in (a, b, c))
    assert f"{ea.ip6}/64" in in_ns(pa, "ip", "-6", "addr", "show", "eth0").stdout
    assert f"default via {net.gateway6} dev eth0" in in_ns(pa, "ip", "-6", "route").stdout
    serve_http(procs, pb, tmp_path / "www", "over v6")
    assert wget(pa, f"http://[{eb.ip6}]/").stdout == "over v6"
    # another network's container cannot reach it over IPv6 either (no forwarding, and
    # the ip6 table drops what is forwarded into the bridge)
    assert wget(pc, f"http://[{eb.ip6}]/", timeout=1).returncode != 0
    assert ec.ip6
    # AAAA from the embedded DNS (busybox nslookup asks A and AAAA)
    out = in_ns(pa, "nslookup", "svc", net.gateway).stdout
    assert eb.ip6 in out and eb.ip in out
    ptr = in_ns(pa, "nslookup", eb.ip6, net.gateway).stdout
    assert "b6" in ptr
    # the container's hosts file carries both addresses
    hosts = nm.hosts_file(a, "a6")
    assert f"{ea.ip}\ta6" in hosts and f"{ea.ip6}\ta6" in hosts
    rules = subprocess.run(["nft", "list", "table", "ip6", nat.network_table(net.id)],
                           capture_output=True, text=True, check=True).stdout
    assert f"ip6 saddr {net.subnet6} oifname != \"{net.bridge}\" masquerade" in rules
    nm.disconnect(b, net.id)
    assert wget(pa, f"http://[{eb.ip6}]/", timeout=1).returncode != 0
    nm.remove_sandbox(a)
    nm.remove_network(net.id)
    assert subprocess.run(["nft", "list", "table", "ip6", nat.network_table(net.id)],
                          capture_output=True).returncode != 0


def test_ipv6_default_subnet_and_static_address(nm, subnets, unique_name):
    if nm.firewall.kind != "nft":
        pytest.skip("IPv6 needs the nft backend")
    net = nm.create_network(NetworkSpec(id=unique_name, name=unique_name, enable_ipv6=True,
                                        ipam=[IPAMPool(subnet=subnets.next())]))
    assert net.subnet6.startswith("fd") and net.subnet6.endswith("/64")  # a generated ULA
    nm.create_sandbox(unique_name)
    want = net.subnet6.replace("::/64", "::abc")
    ep = nm.connect(unique_name, net.id, EndpointSpec(ipv6_address=want))
    assert ep.ip6 == want
    v4only = nm.create_network(NetworkSpec(id=unique_name + "4", name=unique_name + "4",
                                           ipam=[IPAMPool(subnet=subnets.next())]))
    nm.create_sandbox(unique_name + "x")
    with pytest.raises(UserError, match="no IPv6"):
        nm.connect(unique_name + "x", v4only.id, EndpointSpec(ipv6_address=want))
