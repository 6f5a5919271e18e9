"""Network lifecycle: bridges, options, subnets from ipam or the default pool,
conflicts and clear errors, and complete removal."""
from __future__ import annotations

import ipaddress
import subprocess

import pytest

from pystack.errors import Conflict, NotFound, UserError
from pystack.networking import IPAMPool, NetworkSpec, iptables, nat
from nethelpers import firewall_rules, nft_tables, assert_gone, owned_objects


def _link(name: str) -> str:
    return subprocess.run(["ip", "-o", "addr", "show", "dev", name], capture_output=True, text=True).stdout


def test_create_inspect_remove(nm, make_net, unique_name):
    net = make_net(labels={"com.docker.compose.project": "p"}, attachable=True,
                   options={"com.docker.network.driver.mtu": "1400",
                            "com.docker.network.bridge.name": f"br-{unique_name}"})
    assert net.bridge == f"br-{unique_name}" and net.mtu == 1400
    assert f"inet {net.gateway}/24" in _link(net.bridge)
    assert "mtu 1400" in subprocess.run(["ip", "link", "show", net.bridge], capture_output=True, text=True).stdout
    assert "127.0.0.0/8" in firewall_rules(nm, net)
    assert nm.get_network(net.name) == net == nm.get_network(net.id)
    assert nm.get_network(net.id[:5]).id == net.id
    assert [n.name for n in nm.list_networks()] == [net.name]
    nm.remove_network(net.name)
    assert _link(net.bridge) == ""
    assert nat.network_table(net.id) not in nft_tables()
    assert iptables.network_chain(net.id) not in subprocess.run(["iptables-save"], capture_output=True,
                                                                text=True).stdout
    with pytest.raises(NotFound):
        nm.get_network(net.name)


def test_ipam_gateway_range_and_aux_addresses(nm, subnets, unique_name):
    subnet = subnets.next()
    base = subnet.rsplit(".", 1)[0]
    net = nm.create_network(NetworkSpec(
        id=unique_name, name=unique_name,
        ipam=[IPAMPool(subnet=subnet, gateway=f"{base}.254", ip_range=f"{base}.128/25",
                       aux_addresses={"router": f"{base}.128"})]))
    assert net.gateway == f"{base}.254"
    nm.create_sandbox(unique_name)
    ep = nm.connect(unique_name, net.id)
    assert ep.ip == f"{base}.129"  # first of the range, after the aux address


def test_conflicts_and_bad_input_are_one_line_errors(nm, make_net, subnets, unique_name):
    net = make_net()
    with pytest.raises(Conflict, match="already exists"):
        nm.create_network(NetworkSpec(id=unique_name + "x", name=net.name,
                                      ipam=[IPAMPool(subnet=subnets.next())]))
    with pytest.raises(Conflict, match="overlaps"):
        nm.create_network(NetworkSpec(id=unique_name + "y", name=unique_name + "y",
                                      ipam=[IPAMPool(subnet=net.subnet)]))
    # the host's own routes (eth0's subnet, here read from the kernel) are never reused
    host_route = subprocess.run(["ip", "-4", "-o", "route", "show", "scope", "link"],
                                capture_output=True, text=True).stdout.split()
    if host_route:
        with pytest.raises(Conflict, match="overlaps"):
            nm.create_network(NetworkSpec(id=unique_name + "z", name=unique_name + "z",
                                          ipam=[IPAMPool(subnet=host_route[0])]))
    bad = [
        dict(driver="overlay"),
        dict(ipam=[IPAMPool(subnet="fd0a:210:99::/64")]),                       # IPv6 without enable_ipv6
        dict(ipam=[IPAMPool(subnet=subnets.next()), IPAMPool(subnet=subnets.next())]),  # two IPv4 entries
        dict(options={"com.docker.network.driver.mtu": "huge"}),
        dict(options={"com.docker.network.bridge.name": "a-name-far-too-long"}),
        dict(options={"foo": "bar"}),
        dict(ipam=[IPAMPool(subnet="10.210.0.0/33")]),
        dict(ipam=[IPAMPool(subnet=subnets.next(), gateway="10.99.0.1")]),
        dict(ipam=[IPAMPool(subnet=subnets.next(), ip_range="10.99.0.0/24")]),
    ]
    for kw in bad:
        kw.setdefault("ipam", [IPAMPool(subnet=subnets.next())])
        with pytest.raises(UserError) as info:
            nm.create_network(NetworkSpec(id=unique_name + "b", name=unique_name + "b", **kw))
        assert "\n" not in str(info.value)
    assert [n.name for n in nm.list_networks()] == [net.name]


def test_default_pool_skips_taken_subnets(tmp_path, subnets, unique_name):
    from pystack.networking import NetworkManager

    first, second = subnets.next(), subnets.next()
    base = ipaddress.ip_network(first).supernet(new_prefix=23)
    nm = NetworkManager(tmp_path / "s", tmp_path / "r", dns_upstreams=[],
                        default_pools=[(str(base), 24)])
    try:
        a = nm.create_network(NetworkSpec(id=unique_name + "a", name="a"))
        b = nm.create_network(NetworkSpec(id=unique_name + "b", name="b"))
        assert {a.subnet, b.subnet} == {str(s) for s in base.subnets(new_prefix=24)}
        with pytest.raises(Conflict, match="no free subnet"):
            nm.create_network(NetworkSpec(id=unique_name + "c", name="c"))
        nm.remove_network("a")
        c = nm.create_network(NetworkSpec(id=unique_name + "c", name="c"))
        assert c.subnet == a.subnet  # released on remove
    finally:
        owned = owned_objects(nm)
        nm.cleanup_all()
    assert_gone(owned)


def test_network_in_use_cannot_be_removed(nm, make_net, unique_name):
    net = make_net()
    nm.create_sandbox(unique_name)
    nm.connect(unique_name, net.id)
    with pytest.raises(Conflict, match="active endpoints"):
        nm.remove_network(net.id)
    nm.remove_sandbox(unique_name)
    nm.remove_sandbox(unique_name)  # idempotent
    nm.remove_network(net.id)


def test_a_bridge_name_taken_by_someone_else_is_refused_and_left_alone(nm, subnets, unique_name):
    foreign = f"br-{unique_name}"
    subprocess.run(["ip", "link", "add", foreign, "type", "bridge"], check=True)
    try:
        with pytest.raises(Conflict, match="already exists"):
            nm.create_network(NetworkSpec(id=unique_name, name=unique_name,
                                          options={"com.docker.network.bridge.name": foreign},
                                          ipam=[IPAMPool(subnet=subnets.next())]))
        assert subprocess.run(["ip", "link", "show", foreign], capture_output=True).returncode == 0
        assert nm.list_networks() == []
    finally:
        subprocess.run(["ip", "link", "del", foreign], capture_output=True)
