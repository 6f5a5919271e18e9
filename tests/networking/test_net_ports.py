"""Published ports: kernel DNAT reachable from the host (127.0.0.1 and other host
addresses) and from other namespaces through a host address; clashes refused whole."""
from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from pystack.errors import Conflict, NotFound, UserError
from pystack.networking import EndpointSpec, PortSpec
from nethelpers import port_rules_exist, serve_http, wait_listening, wget


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_tcp_port_reachable_from_host_and_other_namespaces(nm, make_net, procs, tmp_path, unique_name):
    n1, n2 = make_net(), make_net()
    web, cli, sib = unique_name + "w", unique_name + "c", unique_name + "s"
    for cid in (web, cli, sib):
        nm.create_sandbox(cid)
    ep = nm.connect(web, n1.id, EndpointSpec(names=["web"]))
    nm.connect(cli, n2.id)
    nm.connect(sib, n1.id)
    serve_http(procs, nm.sandbox_path(web), tmp_path / "www", "published!")
    port = _free_port()
    [binding] = nm.publish(web, [PortSpec(container_port=80, host_port=port)])
    assert (binding.host_ip, binding.host_port, binding.container_ip, binding.container_port) == \
        ("0.0.0.0", port, ep.ip, 80)
    assert nm.port_bindings(web) == [binding]
    # from the host: loopback and another host address (a bridge's gateway)
    assert wget(None, f"http://127.0.0.1:{port}/").stdout == "published!"
    assert wget(None, f"http://{n2.gateway}:{port}/").stdout == "published!"
    # from a namespace on another network, through the host's address it routes to
    assert wget(nm.sandbox_path(cli), f"http://{n2.gateway}:{port}/").stdout == "published!"
    # from a sibling on the same network through the host (hairpin NAT)
    assert wget(nm.sandbox_path(sib), f"http://{n1.gateway}:{port}/").stdout == "published!"
    # but direct access across networks stays blocked
    assert wget(nm.sandbox_path(cli), f"http://{ep.ip}/", timeout=1).returncode != 0
    # the host port is held: a host program cannot bind it while it is published
    with socket.socket() as s:
        with pytest.raises(OSError):
            s.bind(("0.0.0.0", port))
    nm.unpublish(web)
    assert wget(None, f"http://127.0.0.1:{port}/", timeout=1).returncode != 0
    with socket.socket() as s:
        s.bind(("0.0.0.0", port))  # released with the rules


def test_host_ip_ephemeral_and_udp(nm, make_net, procs, tmp_path, unique_name):
    net = make_net()
    cid = unique_name
    path = nm.create_sandbox(cid)
    nm.connect(cid, net.id)
    serve_http(procs, path, tmp_path / "www", "eph")
    # busybox nc has no UDP mode: a few lines of Python echo datagrams inside the namespace
    echo = ("import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
            "s.bind(('0.0.0.0', 5353))\nwhile True:\n d, a = s.recvfrom(512); s.sendto(d.upper(), a)")
    udp = subprocess.Popen(["nsenter", f"--net={path}", sys.executable, "-c", echo])
    try:
        wait_listening(path, 5353, "udp")
        _check_udp_and_tcp(nm, cid, net)
    finally:
        udp.kill()
        udp.wait()


def _check_udp_and_tcp(nm, cid, net):
    bindings = nm.publish(cid, [PortSpec(container_port=80, host_port=None, host_ip="127.0.0.1"),
                                PortSpec(container_port=5353, host_port=None, protocol="udp")])
    tcp_b, udp_b = bindings
    assert tcp_b.host_ip == "127.0.0.1" and 1024 < tcp_b.host_port < 65536
    assert udp_b.protocol == "udp"
    assert wget(None, f"http://127.0.0.1:{tcp_b.host_port}/").stdout == "eph"
    # bound to 127.0.0.1 only: another host address does not answer
    assert wget(None, f"http://{net.gateway}:{tcp_b.host_port}/", timeout=1).returncode != 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(3)
        s.sendto(b"hello-udp", ("127.0.0.1", udp_b.host_port))
        assert s.recvfrom(512)[0] == b"HELLO-UDP"


def test_port_clash_is_refused_and_leaves_nothing(nm, make_net, unique_name):
    net = make_net()
    a, b = unique_name + "a", unique_name + "b"
    for cid in (a, b):
        nm.create_sandbox(cid)
        nm.connect(cid, net.id)
    p1, p2 = _free_port(), _free_port()
    nm.publish(a, [PortSpec(container_port=80, host_port=p1)])
    assert port_rules_exist(a) and not port_rules_exist(b)
    # the second port is fine, the first is pystack's already: nothing of b is published
    with pytest.raises(Conflict, match="already allocated"):
        nm.publish(b, [PortSpec(container_port=81, host_port=p2), PortSpec(container_port=80, host_port=p1)])
    assert nm.port_bindings(b) == [] and not port_rules_exist(b)
    # a host process holding the port
    with socket.socket() as s:
        s.bind(("127.0.0.1", p2))
        s.listen()
        with pytest.raises(Conflict, match="in use"):
            nm.publish(b, [PortSpec(container_port=80, host_port=p2)])
    assert nm.port_bindings(b) == [] and not port_rules_exist(b)
    # same port on another protocol is not a clash
    nm.publish(b, [PortSpec(container_port=80, host_port=p1, protocol="udp")])
    with pytest.raises(UserError):
        nm.publish(b, [PortSpec(container_port=80, host_port=p2, protocol="sctp")])


def test_ports_on_an_internal_only_container_are_reserved_but_lead_nowhere(nm, make_net, procs, tmp_path,
                                                                          unique_name):
    net = make_net(internal=True)
    path = nm.create_sandbox(unique_name)
    nm.connect(unique_name, net.id)
    serve_http(procs, path, tmp_path / "www", "hidden")
    [b] = nm.publish(unique_name, [PortSpec(container_port=80)])
    assert b.container_ip == "" and b.host_port > 0
    assert not port_rules_exist(unique_name)
    assert wget(None, f"http://127.0.0.1:{b.host_port}/", timeout=1).returncode != 0
    with pytest.raises(NotFound):
        nm.publish(unique_name + "nosandbox", [PortSpec(container_port=80)])


def test_ports_follow_the_container_across_disconnect_and_connect(nm, make_net, procs, tmp_path, unique_name):
    n1, n2 = make_net(), make_net()
    cid = unique_name
    path = nm.create_sandbox(cid)
    e1 = nm.connect(cid, n1.id)
    e2 = nm.connect(cid, n2.id)
    serve_http(procs, path, tmp_path / "www", "moving")
    [b] = nm.publish(cid, [PortSpec(container_port=80)])
    assert b.container_ip == e1.ip
    url = f"http://127.0.0.1:{b.host_port}/"
    nm.disconnect(cid, n1.id)  # e1's address is released: the port must move to e2
    assert [x.container_ip for x in nm.port_bindings(cid)] == [e2.ip]
    assert wget(None, url).stdout == "moving"
    nm.disconnect(cid, n2.id)  # nowhere to go: no rules, but the host port stays reserved
    assert wget(None, url, timeout=1).returncode != 0
    assert [x.host_port for x in nm.port_bindings(cid)] == [b.host_port]
    with pytest.raises(Conflict):
        other = unique_name + "o"
        nm.create_sandbox(other)
        nm.connect(other, n1.id)
        nm.publish(other, [PortSpec(container_port=80, host_port=b.host_port)])
    nm.connect(cid, n2.id)
    assert wget(None, url).stdout == "moving"


def test_udp_flow_follows_a_moved_port(nm, make_net, unique_name):
    """Same client socket (same 5-tuple) before and after the port moves to the
    container's other address: the stale conntrack entry must not keep the old target."""
    n1, n2 = make_net(), make_net()
    cid = unique_name
    path = nm.create_sandbox(cid)
    nm.connect(cid, n1.id)
    e2 = nm.connect(cid, n2.id)
    echo = ("import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
            "s.bind(('0.0.0.0', 7000))\nwhile True:\n d, a = s.recvfrom(512); s.sendto(d.upper(), a)")
    server = subprocess.Popen(["nsenter", f"--net={path}", sys.executable, "-c", echo])
    try:
        wait_listening(path, 7000, "udp")
        [b] = nm.publish(cid, [PortSpec(container_port=7000, protocol="udp")])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(3)
            s.sendto(b"one", ("127.0.0.1", b.host_port))
            assert s.recvfrom(512)[0] == b"ONE"
            nm.disconnect(cid, n1.id)
            assert nm.port_bindings(cid)[0].container_ip == e2.ip
            s.sendto(b"two", ("127.0.0.1", b.host_port))
            assert s.recvfrom(512)[0] == b"TWO"
    finally:
        server.kill()
        server.wait()
