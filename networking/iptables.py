"""The iptables backend, for hosts without the ``nft`` command (iptables-legacy).

Same policy as the nftables tables of nat.py, in pystack's own chains: per network
``PYSTACK-N-<key>`` in the raw, filter and nat tables, per container with published
ports ``PYSTACK-P-<key>`` in nat, each reached by one jump from the built-in chain.
A chain's rules are loaded with ``iptables-restore --noflush`` (atomic per table); the
jumps are added only when missing and removed with the chain.
"""
from __future__ import annotations

import shutil
import subprocess

from pystack.errors import UserError

from .nat import _key, _q

# (table, built-in chain) pairs a network chain hangs from
NET_HOOKS = (("raw", "PREROUTING"), ("filter", "FORWARD"), ("nat", "POSTROUTING"))
PORT_HOOKS = (("nat", "PREROUTING"), ("nat", "OUTPUT"))


def available() -> bool:
    return shutil.which("iptables") is not None and shutil.which("iptables-restore") is not None


def _ipt(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    if not available():
        raise UserError("neither nft (nftables) nor iptables is installed: pystack networks need one")
    proc = subprocess.run(["iptables", "-w", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"iptables {' '.join(args)}: {proc.stderr.strip()}")
    return proc


def _restore(script: str) -> None:
    proc = subprocess.run(["iptables-restore", "-w", "--noflush"], input=script, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"iptables-restore failed: {proc.stderr.strip()}\n--- script ---\n{script}")


def network_chain(net_id: str) -> str:
    return f"PYSTACK-N-{_key(net_id)}"


def ports_chain(container_id: str) -> str:
    return f"PYSTACK-P-{_key(container_id)}"


def chain_exists(table: str, chain: str) -> bool:
    return _ipt("-t", table, "-S", chain, check=False).returncode == 0


def _hook(table: str, builtin: str, chain: str) -> None:
    if _ipt("-t", table, "-C", builtin, "-j", chain, check=False).returncode != 0:
        _ipt("-t", table, "-I", builtin, "1", "-j", chain)


def _unhook_and_delete(table: str, builtin: str, chain: str) -> None:
    while _ipt("-t", table, "-D", builtin, "-j", chain, check=False).returncode == 0:
        pass
    if chain_exists(table, chain):
        _ipt("-t", table, "-F", chain, check=False)
        _ipt("-t", table, "-X", chain, check=False)


def setup_network(net_id: str, bridge: str, subnet: str, internal: bool, masquerade: bool = True) -> None:
    """Load the network's chains (replacing their rules) and hook them in."""
    c, br = network_chain(net_id), _q(bridge)[1:-1]
    filt = [f"-A {c} -i {br} -o {br} -j ACCEPT"]
    if internal:
        filt += [f"-A {c} -i {br} -j DROP", f"-A {c} -o {br} -j DROP"]
    filt += [f"-A {c} -o {br} -m conntrack --ctstate DNAT -j ACCEPT",
             f"-A {c} -o {br} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
             f"-A {c} -o {br} -j DROP"]
    nat = [] if internal or not masquerade else [f"-A {c} -s {subnet} ! -o {br} -j MASQUERADE"]
    nat += [f"-A {c} -o {br} -s 127.0.0.0/8 -j MASQUERADE",
            f"-A {c} -o {br} -s {subnet} -m conntrack --ctstate DNAT -j MASQUERADE"]
    script = "".join(f"*{table}\n:{c} - [0:0]\n" + "".join(r + "\n" for r in rules) + "COMMIT\n"
                     for table, rules in (("raw", [f"-A {c} -i {br} -d 127.0.0.0/8 -j DROP"]),
                                          ("filter", filt), ("nat", nat)))
    _restore(script)
    for table, builtin in NET_HOOKS:
        _hook(table, builtin, c)


def teardown_network(net_id: str) -> None:
    c = network_chain(net_id)
    for table, builtin in NET_HOOKS:
        _unhook_and_delete(table, builtin, c)


def set_ports(container_id: str, rules: list[tuple[str, int, str, int, str]]) -> None:
    """DNAT rules (host_ip, host_port, container_ip, port, proto); empty: remove them."""
    c = ports_chain(container_id)
    if not rules:
        for table, builtin in PORT_HOOKS:
            _unhook_and_delete(table, builtin, c)
        return
    lines = [f"*nat", f":{c} - [0:0]"]
    for host_ip, host_port, cip, cport, proto in rules:
        match = "-m addrtype --dst-type LOCAL" if host_ip in ("", "0.0.0.0") else f"-d {_q(host_ip)[1:-1]}"
        lines.append(f"-A {c} {match} -p {proto} --dport {int(host_port)} "
                     f"-j DNAT --to-destination {_q(cip)[1:-1]}:{int(cport)}")
    _restore("\n".join(lines) + "\nCOMMIT\n")
    for table, builtin in PORT_HOOKS:
        _hook(table, builtin, c)
