"""Namespaces on pystack networks: reachability, isolation, internal networks, routes."""
from __future__ import annotations

import subprocess
import threading

import pytest

from pystack.errors import Conflict, NotFound, UserError
from pystack.networking import EndpointSpec

from nethelpers import (firewall_rules, in_ns, internal_drop_rules, masquerade_out_rule, serve_http,
                        wget)


def _mac(ifname: str) -> str:
    return subprocess.run(["cat", f"/sys/class/net/{ifname}/address"], capture_output=True, text=True).stdout


def test_two_namespaces_on_one_network_talk(nm, make_net, procs, tmp_path, unique_name):
    net = make_net()
    bridge_mac = _mac(net.bridge)
    a, b = nm.create_sandbox(unique_name + "a"), nm.create_sandbox(unique_name + "b")
    ea = nm.connect(unique_name + "a", net.id, EndpointSpec(names=["a"]))
    eb = nm.connect(unique_name + "b", net.id, EndpointSpec(names=["b"]))
    # the gateway's MAC does not change as ports join (containers' ARP entries stay valid)
    assert _mac(net.bridge) == bridge_mac
    assert (ea.ifname, eb.ifname) == ("eth0", "eth0")
    assert ea.ip != eb.ip and ea.gateway == net.gateway
    serve_http(procs, b, tmp_path / "www", "hello from b")
    r = wget(a, f"http://{eb.ip}/"); assert r.stdout == "hello from b", r
    # the MAC follows Docker's 02:42:<ip> scheme and the route goes through the gateway
    link = in_ns(a, "ip", "-o", "link", "show", "eth0").stdout
    assert ea.mac in link
    assert f"default via {net.gateway}" in in_ns(a, "ip", "route").stdout


def test_networks_are_isolated_but_a_namespace_on_both_reaches_both(nm, make_net, procs, tmp_path, unique_name):
    n1, n2 = make_net(), make_net()
    ids = {k: unique_name + k for k in ("a", "b", "both")}
    paths = {k: nm.create_sandbox(v) for k, v in ids.items()}
    ea = nm.connect(ids["a"], n1.id)
    eb = nm.connect(ids["b"], n2.id)
    e0 = nm.connect(ids["both"], n1.id)
    e1 = nm.connect(ids["both"], n2.id)
    assert (e0.ifname, e1.ifname) == ("eth0", "eth1")
    serve_http(procs, paths["a"], tmp_path / "a", "A")
    serve_http(procs, paths["b"], tmp_path / "b", "B")
    assert wget(paths["both"], f"http://{ea.ip}/").stdout == "A"
    assert wget(paths["both"], f"http://{eb.ip}/").stdout == "B"
    # a on n1 cannot reach b on n2 (routed through the host, dropped by the forward rules)
    assert wget(paths["a"], f"http://{eb.ip}/", timeout=1).returncode != 0
    assert wget(paths["b"], f"http://{ea.ip}/", timeout=1).returncode != 0
    # only one default route, through the first network
    routes = in_ns(paths["both"], "ip", "route").stdout
    assert routes.count("default") == 1 and f"default via {n1.gateway} dev eth0" in routes


def test_internal_network_has_no_route_out_and_no_masquerade(nm, make_net, unique_name):
    net = make_net(internal=True)
    path = nm.create_sandbox(unique_name)
    nm.connect(unique_name, net.id)
    assert "default" not in in_ns(path, "ip", "route").stdout
    rules = firewall_rules(nm, net)
    assert "masquerade" in rules.lower()  # only the 127.0.0.1/hairpin ones, never subnet -> out
    assert masquerade_out_rule(net) not in rules
    assert all(r in rules for r in internal_drop_rules(net))


def test_outbound_masquerade_rule_for_normal_network(nm, make_net):
    net = make_net()
    assert masquerade_out_rule(net) in firewall_rules(nm, net)
    assert open("/proc/sys/net/ipv4/ip_forward").read().strip() == "1"
    plain = make_net(options={"com.docker.network.bridge.enable_ip_masquerade": "false"})
    assert masquerade_out_rule(plain) not in firewall_rules(nm, plain)


def test_disconnect_and_reconnect_a_live_namespace(nm, make_net, procs, tmp_path, unique_name):
    n1, n2 = make_net(), make_net()
    path = nm.create_sandbox(unique_name)
    nm.connect(unique_name, n1.id)
    nm.connect(unique_name, n2.id)
    nm.disconnect(unique_name, n1.id)
    out = in_ns(path, "ip", "-o", "link").stdout
    assert "eth0" not in out and "eth1" in out
    # the default route moved to the remaining network
    assert f"default via {n2.gateway} dev eth1" in in_ns(path, "ip", "route").stdout
    again = nm.connect(unique_name, n1.id)
    assert again.ifname == "eth0"
    with pytest.raises(Conflict):
        nm.connect(unique_name, n1.id)
    nm.disconnect(unique_name, n1.id)
    with pytest.raises(NotFound):
        nm.disconnect(unique_name, n1.id)


def test_static_address_mac_and_bad_address_leave_nothing(nm, make_net, unique_name):
    net = make_net()
    base = net.subnet.rsplit(".", 1)[0]
    nm.create_sandbox(unique_name + "a")
    nm.create_sandbox(unique_name + "b")
    ep = nm.connect(unique_name + "a", net.id, EndpointSpec(ipv4_address=f"{base}.77",
                                                          mac_address="02:00:00:aa:bb:cc"))
    assert (ep.ip, ep.mac) == (f"{base}.77", "02:00:00:aa:bb:cc")
    with pytest.raises(Conflict):
        nm.connect(unique_name + "b", net.id, EndpointSpec(ipv4_address=f"{base}.77"))
    with pytest.raises(UserError):
        nm.connect(unique_name + "b", net.id, EndpointSpec(ipv4_address="10.99.0.1"))
    assert nm.endpoints(unique_name + "b") == []
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    from pystack.networking.links import host_veth_name
    assert host_veth_name(unique_name + "b", 0) not in out


def test_concurrent_connects_get_distinct_addresses(nm, make_net, unique_name):
    net = make_net()
    ids = [f"{unique_name}c{i}" for i in range(8)]
    for cid in ids:
        nm.create_sandbox(cid)
    results: dict[str, str] = {}
    errors: list[BaseException] = []

    def join(cid: str) -> None:
        try:
            results[cid] = nm.connect(cid, net.id).ip
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=join, args=(c,)) for c in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(set(results.values())) == len(ids)
    for cid in ids:
        nm.remove_sandbox(cid)
    assert nm.endpoints(ids[0]) == []


def test_processes_starting_containers_at_once_get_distinct_addresses(nm, make_net, unique_name):
    """Two engine-like processes share the state dir: the file lock serialises them."""
    import sys
    import textwrap

    net = make_net()
    child = textwrap.dedent("""
        import sys
        from pystack.networking import NetworkManager
        state, run, net, prefix = sys.argv[1:]
        nm = NetworkManager(state, run, dns=False)
        for i in range(4):
            cid = f"{prefix}{i}"
            nm.create_sandbox(cid)
            print(nm.connect(cid, net).ip, flush=True)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", child, str(nm.state.dir), str(nm.run_dir), net.id,
                               f"{unique_name}p{k}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for k in range(2)]
    ips = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        ips += out.split()
    assert len(ips) == 8 and len(set(ips)) == 8
    recorded = {e.ip for k in range(2) for i in range(4) for e in nm.endpoints(f"{unique_name}p{k}{i}")}
    assert recorded == set(ips)


def test_attach_container_is_all_or_nothing(nm, make_net, unique_name):
    from pystack.networking import PortSpec

    n1, n2 = make_net(name=unique_name + "_a"), make_net(name=unique_name + "_b")
    path, eps, ports = nm.attach_container(unique_name + "a", [(n1.id, EndpointSpec(names=["a"])),
                                                              (n2.id, EndpointSpec(names=["a"], priority=5))],
                                           [PortSpec(container_port=80)])
    # priority first: n2 is eth0 and carries the default route and the published port
    assert [(e.network_id, e.ifname) for e in eps] == [(n2.id, "eth0"), (n1.id, "eth1")]
    assert ports[0].container_ip == eps[0].ip
    assert f"default via {n2.gateway} dev eth0" in in_ns(path, "ip", "route").stdout
    path2, eps2, _ = nm.attach_container(unique_name + "c", [(n2.id, EndpointSpec()), (n1.id, EndpointSpec())])
    assert [e.network_id for e in eps2] == [n1.id, n2.id]  # same priority: by name
    assert in_ns(path, "ip", "-o", "link").stdout.count(": eth") == 2
    taken = ports[0].host_port
    for endpoints, port_specs, error in (
            ([(n1.id, EndpointSpec()), ("no-such-network", EndpointSpec())], [], NotFound),
            ([(n1.id, EndpointSpec()), (n2.id, EndpointSpec())], [PortSpec(container_port=80, host_port=taken)],
             Conflict)):
        with pytest.raises(error):
            nm.attach_container(unique_name + "b", endpoints, port_specs)
        assert not nm.sandbox_path(unique_name + "b").exists()
        assert nm.endpoints(unique_name + "b") == [] and nm.port_bindings(unique_name + "b") == []
        out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
        from pystack.networking.links import host_veth_name
        assert host_veth_name(unique_name + "b", 0) not in out
