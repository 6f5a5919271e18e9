"""pystackd against dockerd, through docker-py, in the same run (issue 7's speed goals).

Measured, interleaved (one round on each engine in turn, so machine load hits both alike):

* ``list50``     round trip of ``GET /containers/json?all=1`` (docker-py ``api.containers(all=True)``)
                 with 50 containers on the engine (30 running ``sleep``, 20 created);
* ``lifecycle``  create + start + wait + remove of busybox ``true`` (docker-py low-level API);
                 network ``none`` by default, ``--network bridge`` joins a user bridge network
                 (each engine its own: pystackd in 10.212.192.0/18, dockerd in its pool 10.212.128.0/18);
* ``memory``     with the 30 ``sleep`` containers running: RSS (and PSS) of every process of the
                 engine outside the containers: pystackd + fork server + shims, against
                 dockerd + containerd + containerd-shim-runc-v2 (the containers' own processes,
                 in their PID namespaces, are left out on both sides).

Both engines get the same busybox root filesystem (pystack.testimage) as ``busybox:latest``;
dockerd is Debian's docker.io on its own socket, data root, exec root, containerd namespace,
``--iptables=false --bridge=none`` (pystack.compose.dockerd.start_dockerd). pystackd gets its own
root, run dir, socket and cgroup parent. Everything is removed at the end.

Run as root:  /opt/pystack/venv/bin/python benchmarks/engine_bench.py [--rounds 300] [--runs 30]
              [--network none|bridge] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

API_VERSION = "1.41"  # Debian 12's dockerd (20.10) speaks up to 1.41


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


# -- processes and memory ---------------------------------------------------------------------

def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    return kids


def _tree(root: int, kids: dict[int, list[int]]) -> list[int]:
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, []))
    return out


def _pidns(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return ""


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _mem(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in KiB."""
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def engine_processes(roots: list[int], extra_match: str | None = None) -> list[tuple[int, str]]:
    """The process trees under ``roots`` plus processes whose command line contains
    ``extra_match`` (containerd shims are reparented to init), minus container processes
    (those in another PID namespace than the engine)."""
    kids = _children()
    host_ns = _pidns(roots[0])
    pids: set[int] = set()
    for r in roots:
        pids.update(_tree(r, kids))
    if extra_match:
        for d in os.listdir("/proc"):
            if d.isdigit() and extra_match in _cmdline(int(d)):
                pids.update(_tree(int(d), kids))
    return sorted((p, _cmdline(p).split(" ")[0].rsplit("/", 1)[-1] or "?") for p in pids if _pidns(p) == host_ns)


def memory(procs: list[tuple[int, str]]) -> dict:
    rss = pss = 0
    kinds: dict[str, int] = {}
    for pid, name in procs:
        r, p = _mem(pid)
        rss += r
        pss += p
        kinds[name] = kinds.get(name, 0) + 1
    return {"processes": len(procs), "rss_kib": rss, "pss_kib": pss, "kinds": kinds}


# -- engines ----------------------------------------------------------------------------------

class Pystackd:
    kind = "pystackd"

    def __init__(self, rootfs: Path) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="pystack-engine-bench-"))
        self.root, self.run = self.base / "root", self.base / "run"
        self.socket = self.base / "pystack.sock"
        self.cgroup_parent = "pystack-bench-" + uuid.uuid4().hex[:6]
        routes = subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True).stdout
        free = [n for n in range(240, 250) if f"10.212.{n}.0/" not in routes]
        random.shuffle(free)
        env = {**os.environ, "PYSTACK_ROOT": str(self.root), "PYSTACK_RUN": str(self.run),
               "PYSTACK_HOST": f"unix://{self.socket}", "PYSTACK_CGROUP_PARENT": self.cgroup_parent,
               "PYSTACK_BRIDGE_SUBNET": ",".join(f"10.212.{n}.0/24" for n in free[:4])}
        from pystack.runtime.images import ImageStore
        ImageStore(self.root / "images").import_rootfs(rootfs, "busybox:latest")
        self.log = open(self.base / "pystackd.log", "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "pystack.engine.daemon"], env=env, cwd=str(REPO),
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"unix://{self.socket}"
        _wait_ping(self.url, self.proc, self.base / "pystackd.log")

    def processes(self) -> list[tuple[int, str]]:
        return engine_processes([self.proc.pid])

    def stop(self) -> None:
        _remove_all(self.url)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        try:
            from pystack.runtime import cgroups
            cgroups.cleanup_parent(self.cgroup_parent)
        except Exception as exc:  # noqa: BLE001
            print(f"cgroup cleanup: {exc}", file=sys.stderr)
        try:
            from pystack.networking import NetworkManager
            nm = NetworkManager(self.root / "networks", self.run / "net", dns=False)
            nm.cleanup_all()
            nm.close()
        except Exception as exc:  # noqa: BLE001
            print(f"network cleanup: {exc}", file=sys.stderr)
        for line in reversed(Path("/proc/self/mounts").read_text().splitlines()):
            mnt = line.split()[1]
            if mnt.startswith(str(self.base)):
                subprocess.run(["umount", "-l", mnt], capture_output=True)
        shutil.rmtree(self.base, ignore_errors=True)


class Dockerd:
    kind = "dockerd"

    def __init__(self, rootfs: Path) -> None:
        from pystack.compose.dockerd import start_dockerd
        self.d = start_dockerd(pool="10.212.128.0/18", prefix="pystack-engine-bench-dockerd")
        self.d.import_rootfs(rootfs, "busybox:latest")
        self.url = self.d.host

    def processes(self) -> list[tuple[int, str]]:
        # containerd-shim-runc-v2 -namespace <ns> -id ... -address <exec-root>/containerd/containerd.sock
        return engine_processes([self.d.pid], extra_match=f"-address {self.d.root}/exec/")

    def stop(self) -> None:
        _remove_all(self.url)
        self.d.stop()


def _client(url: str):
    import docker
    return docker.APIClient(base_url=url, version=API_VERSION, timeout=120)


def _wait_ping(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if _client(url).ping():
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"pystackd did not start: {log.read_text()[-2000:]}")
        time.sleep(0.05)


def _remove_all(url: str) -> None:
    try:
        c = _client(url)
        for ct in c.containers(all=True):
            c.remove_container(ct["Id"], force=True, v=True)
        for net in c.networks():
            if net["Name"].startswith("bench"):
                c.remove_network(net["Id"])
    except Exception as exc:  # noqa: BLE001 - best effort before the engine goes
        print(f"cleanup of {url}: {exc}", file=sys.stderr)


# -- measurements -----------------------------------------------------------------------------

def lifecycle(client, network: str) -> float:
    t = time.perf_counter()
    cid = client.create_container("busybox:latest", ["true"],
                                  host_config=client.create_host_config(network_mode=network))["Id"]
    client.start(cid)
    code = client.wait(cid, timeout=60)["StatusCode"]
    client.remove_container(cid)
    dt = time.perf_counter() - t
    if code != 0:
        raise SystemExit(f"true exited {code}")
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=300, help="list round trips per engine")
    ap.add_argument("--runs", type=int, default=30, help="create+start+wait+remove per engine")
    ap.add_argument("--running", type=int, default=30, help="running containers for the memory figure")
    ap.add_argument("--containers", type=int, default=50, help="containers on the engine for the list")
    ap.add_argument("--network", choices=["none", "bridge"], default="none")
    ap.add_argument("--json", action="store_true", help="print the results as JSON too")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root")
    try:
        import docker  # noqa: F401
    except ImportError:
        sys.exit("docker-py is not installed (pip install docker)")
    from pystack.testimage import make_busybox_rootfs

    work = Path(tempfile.mkdtemp(prefix="pystack-engine-bench-rootfs-"))
    engines: list = []
    results: dict = {"network": args.network}
    try:
        rootfs = make_busybox_rootfs(work / "rootfs")
        engines.append(Pystackd(rootfs))
        try:
            engines.append(Dockerd(rootfs))
        except Exception as exc:  # noqa: BLE001 - DockerdUnavailable and friends
            print(f"dockerd unavailable, pystackd alone: {exc}", file=sys.stderr)
        clients = {e.kind: _client(e.url) for e in engines}
        nets = {}
        for e in engines:
            c = clients[e.kind]
            if args.network == "bridge":
                name = "bench" + uuid.uuid4().hex[:6]
                if e.kind == "pystackd":
                    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
                    n = random.choice([n for n in range(192, 240) if f"10.212.{n}.0/" not in routes])
                    import docker.types
                    ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=f"10.212.{n}.0/24")])
                    c.create_network(name, driver="bridge", ipam=ipam)
                else:
                    c.create_network(name, driver="bridge")
                nets[e.kind] = name
            else:
                nets[e.kind] = "none"

        # warm-up (first container start pays image preparation on both)
        for e in engines:
            for _ in range(3):
                lifecycle(clients[e.kind], nets[e.kind])

        # 50 containers: the first `running` started (sleep), the rest created
        for e in engines:
            c = clients[e.kind]
            for i in range(args.containers):
                cid = c.create_container("busybox:latest", ["sleep", "86400"],
                                         host_config=c.create_host_config(network_mode=nets[e.kind]),
                                         labels={"bench": "1"}, name=f"bench-{i}")["Id"]
                if i < args.running:
                    c.start(cid)

        # list round trips, interleaved
        times: dict[str, list[float]] = {e.kind: [] for e in engines}
        for _ in range(args.rounds):
            for e in engines:
                c = clients[e.kind]
                t = time.perf_counter()
                rows = c.containers(all=True)
                times[e.kind].append(time.perf_counter() - t)
                assert len(rows) == args.containers, (e.kind, len(rows))
        results["list50"] = {k: {"p50_ms": pct(v, 50) * 1e3, "p95_ms": pct(v, 95) * 1e3} for k, v in times.items()}

        # memory with `running` containers up
        time.sleep(1)
        results["memory"] = {e.kind: memory(e.processes()) for e in engines}

        # lifecycle: remove the 50 first (both engines idle again), then interleave
        for e in engines:
            c = clients[e.kind]
            for ct in c.containers(all=True, filters={"label": "bench=1"}):
                c.remove_container(ct["Id"], force=True)
        times = {e.kind: [] for e in engines}
        for _ in range(args.runs):
            for e in engines:
                times[e.kind].append(lifecycle(clients[e.kind], nets[e.kind]))
        results["lifecycle"] = {k: {"p50_ms": pct(v, 50) * 1e3, "p95_ms": pct(v, 95) * 1e3,
                                    "mean_ms": statistics.mean(v) * 1e3} for k, v in times.items()}
    finally:
        for e in engines:
            try:
                e.stop()
            except Exception as exc:  # noqa: BLE001
                print(f"stopping {e.kind}: {exc}", file=sys.stderr)
        shutil.rmtree(work, ignore_errors=True)

    report(results, args)


def report(results: dict, args) -> None:
    print(f"engine bench: docker-py {API_VERSION}, network {results['network']}, list with {args.containers} "
          f"containers x{args.rounds}, lifecycle x{args.runs}, memory with {args.running} running")
    for key, title in (("list50", f"GET /containers/json ({args.containers} containers)"),
                       ("lifecycle", "create+start+wait+remove of true")):
        if key not in results:
            continue
        r = results[key]
        print(f"\n{title}")
        for kind, v in r.items():
            print(f"  {kind:9s} p50 {v['p50_ms']:8.2f} ms   p95 {v['p95_ms']:8.2f} ms")
        if "dockerd" in r:
            p, d = r["pystackd"], r["dockerd"]
            print(f"  ratio pystackd/dockerd: p50 {p['p50_ms'] / d['p50_ms']:.2f}   p95 {p['p95_ms'] / d['p95_ms']:.2f}"
                  "   (< 1: pystackd faster)")
    if "memory" in results:
        m = results["memory"]
        print(f"\nengine memory with {args.running} running containers (containers' own processes excluded)")
        for kind, v in m.items():
            kinds = ", ".join(f"{n} {k}" for k, n in sorted(v["kinds"].items()))
            print(f"  {kind:9s} RSS {v['rss_kib'] / 1024:8.1f} MiB   PSS {v['pss_kib'] / 1024:8.1f} MiB"
                  f"   {v['processes']} processes ({kinds})")
        if "dockerd" in m:
            print(f"  ratio pystackd/dockerd: RSS {m['pystackd']['rss_kib'] / m['dockerd']['rss_kib']:.2f}"
                  f"   PSS {m['pystackd']['pss_kib'] / m['dockerd']['pss_kib']:.2f}")
    if args.json:
        print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
