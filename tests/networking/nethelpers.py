"""Helpers for networking tests: run busybox applets inside namespaces."""
from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

BUSYBOX = "/bin/busybox"


def nft_tables() -> set[str]:
    out = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    return {line.split()[-1] for line in out.splitlines() if line.startswith("table")}


def in_ns(path: Path, *args: str, timeout: float = 10, check: bool = False) -> subprocess.CompletedProcess:
    """Run a busybox applet inside a namespace and wait for it."""
    return subprocess.run(["nsenter", f"--net={path}", BUSYBOX, *args], capture_output=True,
                          text=True, timeout=timeout, check=check)


def serve_http(procs, path: Path, docroot: Path, body: str, port: int = 80) -> None:
    """busybox httpd in the namespace, serving ``body`` at /index.html; waits until up."""
    docroot.mkdir(parents=True, exist_ok=True)
    (docroot / "index.html").write_text(body)
    procs(path, "httpd", "-f", "-p", str(port), "-h", str(docroot))
    wait_listening(path, port)


def wait_listening(path: Path, port: int, proto: str = "tcp", timeout: float = 5) -> None:
    """Poll the namespace's socket table until something listens on ``port``."""
    flag = "-tln" if proto == "tcp" else "-uln"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(["nsenter", f"--net={path}", "ss", "-H", flag],
                             capture_output=True, text=True).stdout
        if any(line.split()[3].endswith(f":{port}") for line in out.splitlines() if len(line.split()) > 3):
            return
        time.sleep(0.02)
    raise AssertionError(f"nothing listens on {port}/{proto} in {path}")


def wget(path: Path | None, url: str, timeout: int = 3) -> subprocess.CompletedProcess:
    """busybox wget from a namespace (or from the host when path is None)."""
    # (busybox 1.35's `wget -T` crashes: coreutils' timeout bounds it instead)
    cmd = ["timeout", str(timeout), BUSYBOX, "wget", "-q", "-O", "-", url]
    if path is not None:
        cmd = ["nsenter", f"--net={path}", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 5)


def nslookup(path: Path, name: str, server: str) -> subprocess.CompletedProcess:
    return in_ns(path, "nslookup", name, server)


def addresses_of(nslookup_out: str) -> list[str]:
    """The answer addresses from busybox nslookup output (skipping the server lines)."""
    body = nslookup_out.split("\n\n", 1)[1] if "\n\n" in nslookup_out else ""
    return [line.split()[-1] for line in body.splitlines() if line.startswith("Address")]


class TinyResolver:
    """A test-only upstream DNS server on 127.0.0.1 (UDP) answering every A query with
    one fixed address, and counting queries: the embedded DNS forwards here, never to
    the host's resolvers."""

    def __init__(self, answer: str = "192.0.2.123") -> None:
        import socket
        import threading

        self.answer = answer
        self.queries: list[str] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        from dnslib import A, QTYPE, RR, DNSRecord

        while True:
            try:
                data, addr = self.sock.recvfrom(4096)
            except OSError:
                return
            if not data:  # shut down by close()
                return
            q = DNSRecord.parse(data)
            self.queries.append(str(q.q.qname))
            reply = q.reply()
            if q.q.qtype == QTYPE.A:
                reply.add_answer(RR(q.q.qname, QTYPE.A, rdata=A(self.answer), ttl=5))
            self.sock.sendto(reply.pack(), addr)

    def close(self) -> None:
        import socket

        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self._thread.join(timeout=2)


def owned_objects(nm) -> dict[str, set[str]]:
    """Every kernel object name the manager's state says it owns (read before cleanup).

    Leak checks compare these, not the whole host: other areas' tests run at the same
    time on this machine and make their own links and mounts.
    """
    from pystack.networking import iptables, links, nat

    st = nm.state.read()
    cids = set(st["sandboxes"]) | set(st["endpoints"]) | set(st["ports"])
    return {
        "links": {n["bridge"] for n in st["networks"].values()}
                 | {e["host_ifname"] for c in st["endpoints"].values() for e in c.values()},
        "link_prefixes": {"psv" + links.short_hex(c) for c in cids} | {"psp" + links.short_hex(c) for c in cids},
        "tables": {nat.network_table(i) for i in st["networks"]} | {nat.ports_table(c) for c in cids},
        "chains": {iptables.network_chain(i) for i in st["networks"]} | {iptables.ports_chain(c) for c in cids},
        "mount_prefix": {str(nm.run_dir) + "/"},
    }


def assert_gone(owned: dict[str, set[str]]) -> None:
    """Fail if any object in ``owned`` (see owned_objects) still exists."""
    names = set()
    for line in subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout.splitlines():
        names.add(line.split(": ")[1].split("@")[0])
    left = owned["links"] & names
    left |= {n for n in names for p in owned["link_prefixes"] if n.startswith(p)}
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    left |= {t for t in owned["tables"] if t in tables.split()}
    if owned["chains"] and shutil.which("iptables-save"):
        saved = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
        left |= {c for c in owned["chains"] if c in saved}
    with open("/proc/self/mounts") as f:
        mounts = [line.split()[1] for line in f]
    left |= {m for m in mounts for p in owned["mount_prefix"] if m.startswith(p)}
    assert not left, f"networking objects leaked: {sorted(left)}"


def firewall_rules(nm, net) -> str:
    """The text of a network's rules in whichever backend made them."""
    from pystack.networking import iptables, nat

    if net.firewall == "iptables":
        saved = subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout
        chain = iptables.network_chain(net.id)
        return "\n".join(line for line in saved.splitlines() if chain in line)
    return subprocess.run(["nft", "list", "table", "ip", nat.network_table(net.id)],
                          capture_output=True, text=True, check=True).stdout


def masquerade_out_rule(net) -> str:
    if net.firewall == "iptables":
        return f"-s {net.subnet} ! -o {net.bridge} -j MASQUERADE"
    return f'ip saddr {net.subnet} oifname != "{net.bridge}" masquerade'


def internal_drop_rules(net) -> list[str]:
    if net.firewall == "iptables":
        return [f"-i {net.bridge} -j DROP", f"-o {net.bridge} -j DROP"]
    return [f'iifname "{net.bridge}" drop', f'oifname "{net.bridge}" drop']


def port_rules_exist(container_id: str) -> bool:
    """Whether a container's published-port table (nft) or chain (iptables) exists."""
    from pystack.networking import iptables, nat

    if nat.ports_table(container_id) in nft_tables():
        return True
    if shutil.which("iptables-save"):
        saved = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
        return iptables.ports_chain(container_id) in saved
    return False
