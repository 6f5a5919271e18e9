"""Firewall rules: masquerading, isolation, published-port DNAT (nftables, or iptables).

Each network gets its own table (``ip pystack_n_<id>``) and each container with
published ports its own (``ip pystack_p_<id>``), so that removing a network or a
container is one ``delete table`` and nothing else on the host is touched; a whole
table is loaded with one ``nft -f`` call, which the kernel applies atomically (a port
set is either fully published or not at all).

nftables is preferred (Debian 12's ``iptables`` is itself iptables-nft, and base chains
in separate tables coexist with its rules); a host without ``nft`` gets the same policy in
iptables chains (iptables.py). ``PYSTACK_FIREWALL=nft|iptables`` forces one. The
``Firewall`` class below is what the manager calls.
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess

from pystack.errors import UserError

_SAFE = re.compile(r"^[A-Za-z0-9_.:/-]+$")


def _q(value: str) -> str:
    """Quote an interface name / address for an nft script, refusing anything odd."""
    if not _SAFE.match(value):
        raise ValueError(f"refusing unsafe nft token {value!r}")
    return f'"{value}"'


def nft_binary() -> str:
    path = shutil.which("nft")
    if path is None:
        raise UserError("the nft command (Debian package nftables) is required for "
                        "pystack networks; install it")
    return path


def run_nft(script: str) -> None:
    """Apply an nft script atomically (all of it or nothing): in-process through
    libnftables (libnft.py, ~3 ms), else with the ``nft`` command (~20 ms)."""
    from . import libnft

    error = libnft.apply(script)
    if error is None:
        proc = subprocess.run([nft_binary(), "-f", "-"], input=script, capture_output=True, text=True)
        error = (proc.stderr.strip() or "nft failed") if proc.returncode != 0 else ""
    if error:
        raise RuntimeError(f"nft failed: {error}\n--- script ---\n{script}")


def _key(ident: str) -> str:
    """16 hex characters naming an id in a table name (the id itself when it is hex)."""
    if re.fullmatch(r"[0-9a-f]{16,}", ident):
        return ident[:16]
    return hashlib.sha256(ident.encode()).hexdigest()[:16]


def network_table(net_id: str) -> str:
    return f"pystack_n_{_key(net_id)}"


def ports_table(container_id: str) -> str:
    return f"pystack_p_{_key(container_id)}"


def list_tables() -> set[str]:
    """Names of the ``ip`` family tables that exist now."""
    proc = subprocess.run([nft_binary(), "-j", "list", "tables", "ip"], capture_output=True, text=True)
    if proc.returncode != 0:
        return set()
    out = set()
    for item in json.loads(proc.stdout).get("nftables", []):
        if "table" in item:
            out.add(item["table"]["name"])
    return out


def delete_table(name: str) -> None:
    """Remove a table if it exists (idempotent, for cleanup after a crash)."""
    run_nft(f"table ip {name} {{}}\ndelete table ip {name}\n")


def network_ruleset6(net_id: str, bridge: str, subnet6: str, internal: bool, masquerade: bool = True) -> str:
    """The IPv6 table of a network (``ip6`` family, same name): the same isolation in
    forward, and masquerade of the subnet's outbound traffic. IPv6 forwarding itself is
    left to the administrator (``net.ipv6.conf.all.forwarding=1``): switching it on
    makes every interface of the host stop accepting router advertisements."""
    br, t = _q(bridge), network_table(net_id)
    lines = [f"table ip6 {t} {{}}", f"delete table ip6 {t}", f"table ip6 {t} {{",
             "  chain forward {", "    type filter hook forward priority filter; policy accept;",
             f"    iifname {br} oifname {br} accept"]
    if internal:
        lines += [f"    iifname {br} drop", f"    oifname {br} drop"]
    lines += [f"    oifname {br} ct status dnat accept",
              f"    oifname {br} ct state established,related accept",
              f"    oifname {br} drop", "  }"]
    if not internal and masquerade:
        lines += ["  chain postrouting {", "    type nat hook postrouting priority srcnat; policy accept;",
                  f"    ip6 saddr {subnet6} oifname != {br} masquerade", "  }"]
    lines.append("}")
    return "\n".join(lines) + "\n"


def network_ruleset(net_id: str, bridge: str, subnet: str, internal: bool, masquerade: bool = True) -> str:
    """The table of one network.

    - raw prerouting: packets from the bridge to 127.0.0.0/8 are dropped, because the
      bridge has ``route_localnet`` on (needed to publish on 127.0.0.1) and containers
      must not reach the host's loopback services (CVE-2020-8558's lesson).
    - forward: traffic inside the bridge passes; into the bridge only replies and
      published-port (DNAT) traffic pass, which isolates networks from one another and
      from the outside; an internal network neither sends nor receives anything routed.
    - postrouting: masquerade outbound traffic of non-internal networks; masquerade
      published-port traffic from 127.0.0.1 and hairpin traffic (a container reaching a
      sibling through the host's address) so that replies come back the same way.
    """
    br, sub, t = _q(bridge), subnet, network_table(net_id)
    lines = [
        f"table ip {t} {{}}",
        f"delete table ip {t}",
        f"table ip {t} {{",
        "  chain raw_prerouting {",
        "    type filter hook prerouting priority raw; policy accept;",
        f"    iifname {br} ip daddr 127.0.0.0/8 drop",
        "  }",
        "  chain forward {",
        "    type filter hook forward priority filter; policy accept;",
        f"    iifname {br} oifname {br} accept",
    ]
    if internal:
        lines += [f"    iifname {br} drop", f"    oifname {br} drop"]
    lines += [
        f"    oifname {br} ct status dnat accept",
        f"    oifname {br} ct state established,related accept",
        f"    oifname {br} drop",
        "  }",
        "  chain postrouting {",
        "    type nat hook postrouting priority srcnat; policy accept;",
    ]
    if not internal and masquerade:
        lines.append(f"    ip saddr {sub} oifname != {br} masquerade")
    lines += [
        f"    oifname {br} ip saddr 127.0.0.0/8 masquerade",
        f"    oifname {br} ip saddr {sub} ct status dnat masquerade",
        "  }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def ports_ruleset(table: str, rules: list[tuple[str, int, str, int, str]]) -> str:
    """DNAT rules for one container: (host_ip, host_port, container_ip, port, proto).

    ``host_ip`` "" / 0.0.0.0 matches every local address (``fib daddr type local``,
    127.0.0.1 included); the same rules sit on prerouting (traffic from outside and from
    containers) and output (traffic from the host itself).
    """
    body: list[str] = []
    for host_ip, host_port, cip, cport, proto in rules:
        if proto not in ("tcp", "udp"):
            raise UserError(f"protocol {proto!r} is not supported for published ports (tcp, udp)")
        match = "fib daddr type local" if host_ip in ("", "0.0.0.0") else f"ip daddr {_q(host_ip)[1:-1]}"
        body.append(f"    {match} {proto} dport {int(host_port)} dnat to {_q(cip)[1:-1]}:{int(cport)}")
    lines = [f"table ip {table} {{}}", f"delete table ip {table}"]
    if body:
        lines.append(f"table ip {table} {{")
        for chain, hook in (("prerouting", "prerouting"), ("output", "output")):
            lines += [f"  chain {chain} {{",
                      # -100 is "dstnat"; nft 1.0.6 accepts that keyword on prerouting only
                      f"    type nat hook {hook} priority -100; policy accept;",
                      *body, "  }"]
        lines.append("}")
    return "\n".join(lines) + "\n"


def enable_ip_forward() -> bool:
    """Turn on IPv4 forwarding (needed for NAT out and for published ports); True if changed."""
    path = "/proc/sys/net/ipv4/ip_forward"
    with open(path) as f:
        if f.read().strip() == "1":
            return False
    with open(path, "w") as f:
        f.write("1")
    return True


class Firewall:
    """One backend's operations, named by the backend ("nft" or "iptables")."""

    def __init__(self, kind: str) -> None:
        if kind not in ("nft", "iptables"):
            raise UserError(f"PYSTACK_FIREWALL={kind!r}: use nft or iptables")
        self.kind = kind

    def setup_network(self, net_id: str, bridge: str, subnet: str, internal: bool,
                      masquerade: bool = True, subnet6: str = "") -> None:
        if self.kind == "nft":
            script = network_ruleset(net_id, bridge, subnet, internal, masquerade)
            if subnet6:
                script += network_ruleset6(net_id, bridge, subnet6, internal, masquerade)
            run_nft(script)
        elif subnet6:
            raise UserError("IPv6 networks need nftables (the nft command)")
        else:
            from . import iptables
            iptables.setup_network(net_id, bridge, subnet, internal, masquerade)

    def teardown_network(self, net_id: str) -> None:
        if self.kind == "nft":
            t = network_table(net_id)  # both families in one transaction (each costs ~10 ms)
            run_nft(f"table ip {t} {{}}\ndelete table ip {t}\ntable ip6 {t} {{}}\ndelete table ip6 {t}\n")
        else:
            from . import iptables
            iptables.teardown_network(net_id)

    def set_ports(self, container_id: str, rules: list[tuple[str, int, str, int, str]]) -> None:
        if self.kind == "nft":
            run_nft(ports_ruleset(ports_table(container_id), rules))
        else:
            from . import iptables
            iptables.set_ports(container_id, rules)


def firewall(kind: str | None = None) -> Firewall:
    """The backend to use: ``kind``, else $PYSTACK_FIREWALL, else nft if installed, else iptables."""
    import os

    kind = kind or os.environ.get("PYSTACK_FIREWALL") or ("nft" if shutil.which("nft") else "iptables")
    return Firewall(kind)


def forget_udp_flows(container_ip: str, ports: list[int]) -> int:
    """Drop the conntrack entries of UDP flows DNATed to ``container_ip`` on ``ports``.

    A UDP "connection" is just a 5-tuple: while its conntrack entry lives, every new
    datagram of the same client keeps the old translation, even after the rules moved
    the port elsewhere (the classic stale-UDP-mapping problem, which Docker solves the
    same way). TCP needs nothing: a moved port gets new connections. Returns how many
    entries went; without the conntrack netlink interface, 0.
    """
    if not container_ip or not ports:
        return 0
    import socket as _socket

    try:
        from pyroute2 import Conntrack
        from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple
    except ImportError:
        return 0
    removed = 0
    try:
        with Conntrack() as ct:
            flt = NFCTAttrTuple(saddr=container_ip, proto=_socket.IPPROTO_UDP)
            for entry in list(ct.dump_entries(tuple_reply=flt)):
                if entry.tuple_reply.sport in ports:
                    ct.delete(entry)
                    removed += 1
    except Exception:  # noqa: BLE001 - no conntrack netlink (module missing): nothing to drop
        return removed
    return removed
