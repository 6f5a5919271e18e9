"""Networking benchmark: pystack's bridges/DNAT against dockerd's bridge + docker-proxy.

Run by hand, as root:  /opt/pystack/venv/bin/python benchmarks/net_bench.py [--seconds 3]

Measures, for pystack and for a dockerd started here (its own socket, data root, exec
root, pidfile, bridge, ``--iptables=false`` so the host firewall is left alone; its
published ports therefore go through docker-proxy, which is also what Docker uses for
127.0.0.1 even with iptables on):
  1. container-to-container TCP throughput on one network,
  2. host-to-container TCP throughput through a published port (127.0.0.1),
  3. short connections per second through that published port,
  4. DNS lookups per second from inside a container (embedded DNS).
The same small Python worker (this file, ``worker`` sub-command) runs inside every
namespace, entered with nsenter, so only the network plumbing differs. Prints ratios
pystack/docker (> 1: pystack faster). Subnets: 10.210.200.0/24 (pystack) and
10.213.200.0/24 (dockerd), the ranges docs/contracts.md gives these two.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve()
PY = sys.executable
CHUNK = 1 << 20


# -- worker: runs inside a namespace ------------------------------------------------------

def worker(argv: list[str]) -> None:
    mode = argv[0]
    if mode == "sink":  # accept connections and discard everything
        srv = socket.create_server(("0.0.0.0", int(argv[1])), backlog=128, reuse_port=True)

        def drain(conn: socket.socket) -> None:
            buf = bytearray(CHUNK)
            with conn:
                while conn.recv_into(buf):
                    pass

        while True:
            conn, _ = srv.accept()
            threading.Thread(target=drain, args=(conn,), daemon=True).start()
    elif mode == "acceptclose":  # accept and close at once: a connection-rate server
        srv = socket.create_server(("0.0.0.0", int(argv[1])), backlog=4096, reuse_port=True)
        while True:
            conn, _ = srv.accept()
            conn.close()
    elif mode == "source":  # send zeros for N seconds, print bytes/s
        host, port, secs = argv[1], int(argv[2]), float(argv[3])
        data = bytes(CHUNK)
        with socket.create_connection((host, port)) as s:
            sent, end = 0, time.monotonic() + secs
            start = time.monotonic()
            while time.monotonic() < end:
                s.sendall(data)
                sent += CHUNK
            elapsed = time.monotonic() - start
        print(json.dumps({"rate": sent / elapsed}))
    elif mode == "connrate":  # connect+close for N seconds, print connections/s
        host, port, secs = argv[1], int(argv[2]), float(argv[3])
        linger = __import__("struct").pack("ii", 1, 0)
        n, end = 0, time.monotonic() + secs
        start = time.monotonic()
        while time.monotonic() < end:
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)  # RST: no TIME_WAIT pile-up
            try:
                s.connect((host, port))
                s.recv(1)  # wait for the server's close: one full connection
                n += 1
            except OSError:
                pass
            finally:
                s.close()
        print(json.dumps({"rate": n / (time.monotonic() - start)}))
    elif mode == "dns":  # A queries for N seconds, print answered queries/s
        from dnslib import DNSRecord

        server, name, secs = argv[1], argv[2], float(argv[3])
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(2)
        packed = bytearray(DNSRecord.question(name).pack())
        n, end = 0, time.monotonic() + secs
        start = time.monotonic()
        while time.monotonic() < end:  # the client stays light: id bump, ANCOUNT check
            packed[0:2] = (n & 0xFFFF).to_bytes(2, "big")
            s.sendto(packed, (server, 53))
            reply = s.recv(4096)
            if reply[6:8] != b"\0\0":
                n += 1
        print(json.dumps({"rate": n / (time.monotonic() - start)}))
    else:
        raise SystemExit(f"unknown worker mode {mode}")


# -- driver -----------------------------------------------------------------------------

class Side:
    """Two 'containers' (A, B) on one network; enter(x) gives the nsenter prefix."""

    name: str
    a_prefix: list[str]
    b_prefix: list[str]
    b_ip: str
    dns_server: str
    dns_name: str

    def publish(self, port: int) -> int:  # container port -> host port
        raise NotImplementedError


def start(prefix: list[str], *args: str) -> subprocess.Popen:
    return subprocess.Popen([*prefix, PY, str(HERE), "worker", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def measure(prefix: list[str], *args: str, clients: int = 1) -> float:
    procs = [start(prefix, *args) for _ in range(clients)]
    total = 0.0
    for p in procs:
        out, err = p.communicate(timeout=120)
        if p.returncode != 0:
            raise RuntimeError(f"worker {args} failed: {err.decode()}")
        total += json.loads(out)["rate"]
    return total


def wait_port(host: str, port: int, prefix: list[str] | None = None) -> None:
    code = f"import socket,time\nfor _ in range(300):\n try: socket.create_connection(('{host}',{port}),0.2).close(); break\n except OSError: time.sleep(0.02)"
    subprocess.run([*(prefix or []), PY, "-c", code], check=True, timeout=30)


def prepare(side: Side, servers: list[subprocess.Popen]) -> dict[str, tuple[list[str], list[str], int]]:
    """Start the servers in B and publish their ports; the four measurements to run."""
    servers.append(start(side.b_prefix, "sink", "5001"))
    servers.append(start(side.b_prefix, "acceptclose", "5002"))
    wait_port(side.b_ip, 5001, side.a_prefix)
    wait_port(side.b_ip, 5002, side.a_prefix)
    p1, p2 = side.publish(5001), side.publish(5002)
    wait_port("127.0.0.1", p1)
    return {
        "c2c_bytes_per_s": (side.a_prefix, ["source", side.b_ip, "5001"], 1),
        "published_bytes_per_s": ([], ["source", "127.0.0.1", str(p1)], 1),
        "published_conn_per_s": ([], ["connrate", "127.0.0.1", str(p2)], 2),
        "dns_queries_per_s": (side.a_prefix, ["dns", side.dns_server, side.dns_name], 1),
    }


def run_rounds(plans: dict[str, dict], secs: float, rounds: int) -> dict[str, dict[str, float]]:
    """Alternate the sides metric by metric and keep each side's best round: on a shared,
    busy machine this compares the plumbing rather than the neighbours' load."""
    best: dict[str, dict[str, float]] = {name: {} for name in plans}
    metrics = list(next(iter(plans.values())))
    for metric in metrics:
        for _ in range(rounds):
            for name, plan in plans.items():
                prefix, args, clients = plan[metric]
                try:
                    rate = measure(prefix, *args, str(secs), clients=clients)
                except Exception as exc:
                    print(f"[{name}] {metric} failed: {str(exc).splitlines()[0]}", file=sys.stderr)
                    continue
                best[name][metric] = max(best[name].get(metric, 0.0), rate)
    return best


class PystackSide(Side):
    def __init__(self, tmp: Path) -> None:
        sys.path.insert(0, str(HERE.parent.parent))
        from pystack.networking import EndpointSpec, IPAMPool, NetworkManager, NetworkSpec

        self.name = "pystack"
        self.nm = NetworkManager(tmp / "state", tmp / "run", dns_upstreams=[])
        net = self.nm.create_network(NetworkSpec(id="bench" + os.urandom(4).hex(), name="bench",
                                                 ipam=[IPAMPool(subnet="10.210.200.0/24")]))
        a, b = self.nm.create_sandbox("bench-a"), self.nm.create_sandbox("bench-b")
        self.nm.connect("bench-a", net.id, EndpointSpec(names=["a"]))
        self.b_ip = self.nm.connect("bench-b", net.id, EndpointSpec(names=["b"])).ip
        self.a_prefix, self.b_prefix = ["nsenter", f"--net={a}"], ["nsenter", f"--net={b}"]
        self.dns_server, self.dns_name = net.gateway, "b"

    def publish(self, port: int) -> int:
        from pystack.networking import PortSpec

        return self.nm.publish("bench-b", [PortSpec(container_port=port)])[0].host_port

    def close(self) -> None:
        self.nm.cleanup_all()


class DockerSide(Side):
    """A private dockerd; containers are 'sleep' holders whose netns the workers enter."""

    def __init__(self, tmp: Path) -> None:
        from pystack.testimage import make_busybox_rootfs

        self.name = "docker"
        self.run = Path(tempfile.mkdtemp(prefix="pystack-netbench-", dir="/run"))
        self.data = tmp / "docker-data"
        self.sock = self.run / "docker.sock"
        self.env = {**os.environ, "DOCKER_HOST": f"unix://{self.sock}"}
        self.log = open(tmp / "dockerd.log", "w")
        self.proc = subprocess.Popen(
            ["dockerd", f"--host=unix://{self.sock}", f"--data-root={self.data}",
             f"--exec-root={self.run / 'exec'}", f"--pidfile={self.run / 'docker.pid'}",
             "--iptables=false", "--ip-forward=false", "--ip-masq=false", "--bridge=none",
             "--userland-proxy=true"],
            stdout=self.log, stderr=subprocess.STDOUT)
        for _ in range(300):
            if self.docker("version", check=False).returncode == 0:
                break
            time.sleep(0.1)
        else:
            raise RuntimeError(f"dockerd did not start; see {tmp / 'dockerd.log'}")
        rootfs = tmp / "busybox"
        make_busybox_rootfs(rootfs)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(["docker", "import", "-", "pystack-netbench/busybox"], stdin=tar.stdout,
                       env=self.env, check=True, capture_output=True)
        tar.wait()
        self.docker("network", "create", "--subnet", "10.213.200.0/24",
                    "-o", f"com.docker.network.bridge.name=psbench{os.getpid() % 100000}", "benchnet")
        self.published: dict[int, int] = {}
        self.docker("run", "-d", "--name", "bench-a", "--network", "benchnet",
                    "pystack-netbench/busybox", "sleep", "100000")
        self.docker("run", "-d", "--name", "bench-b", "--network", "benchnet",
                    "-p", "127.0.0.1::5001", "-p", "127.0.0.1::5002",
                    "pystack-netbench/busybox", "sleep", "100000")
        pid = {c: self.docker("inspect", "-f", "{{.State.Pid}}", c).stdout.strip() for c in ("bench-a", "bench-b")}
        self.a_prefix = ["nsenter", "-t", pid["bench-a"], "-n"]
        self.b_prefix = ["nsenter", "-t", pid["bench-b"], "-n"]
        self.b_ip = self.docker("inspect", "-f", "{{.NetworkSettings.Networks.benchnet.IPAddress}}",
                                "bench-b").stdout.strip()
        self.dns_server, self.dns_name = "127.0.0.11", "bench-b"

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["docker", *args], env=self.env, capture_output=True, text=True, check=check)

    def publish(self, port: int) -> int:
        out = self.docker("port", "bench-b", f"{port}/tcp").stdout.split()[0]
        return int(out.rsplit(":", 1)[1])

    def close(self) -> None:
        self.docker("rm", "-f", "bench-a", "bench-b", check=False)
        self.docker("network", "rm", "benchnet", check=False)
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        subprocess.run(["umount", "-R", str(self.run / "exec")], capture_output=True)
        shutil.rmtree(self.run, ignore_errors=True)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        worker(sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds; the best counts")
    ap.add_argument("--no-docker", action="store_true", help="measure pystack only")
    args = ap.parse_args()
    ap_rounds = args.rounds
    with tempfile.TemporaryDirectory(prefix="pystack-netbench-", dir="/var/tmp") as tmp:
        kinds = [PystackSide] + ([] if args.no_docker else [DockerSide])
        sides: list[Side] = []
        servers: list[subprocess.Popen] = []
        try:
            plans = {}
            for kind in kinds:
                side = kind(Path(tmp))
                sides.append(side)
                plans[side.name] = prepare(side, servers)
            results = run_rounds(plans, args.seconds, ap_rounds)
        finally:
            for p in servers:
                p.kill()
                p.wait()
            for side in sides:
                side.close()
    units = {"c2c_bytes_per_s": 1e9 / 8, "published_bytes_per_s": 1e9 / 8}
    print(f"{'metric':26} {'pystack':>14} {'docker':>14} {'ratio':>7}")
    for metric in results["pystack"]:
        p = results["pystack"][metric]
        d = results.get("docker", {}).get(metric)
        scale = units.get(metric, 1)
        unit = " Gbit/s" if metric in units else " /s"
        ps = f"{p / scale:,.1f}{unit}"
        ds = f"{d / scale:,.1f}{unit}" if d else "-"
        ratio = f"{p / d:.2f}" if d else "-"
        print(f"{metric:26} {ps:>14} {ds:>14} {ratio:>7}")


if __name__ == "__main__":
    main()
