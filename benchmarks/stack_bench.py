"""pystack on pystackd vs Docker Compose v2 on dockerd, in the same run, as ratios.

Run by hand, as root:  /opt/pystack/venv/bin/python benchmarks/stack_bench.py [--repeat N]

Scenarios (busybox ``sleep`` services): ``up -d`` then ``down`` of 1, 10 and 30 services;
a 10-service depends_on chain gated by healthchecks (interval 1 s; its floor is 10 s); a
no-op second ``up -d`` and ``ps`` with 30 containers. Three runners, each on its own private
engine started here and stopped at the end: pystack on pystackd (the product), Docker
Compose on dockerd (Debian docker.io; the reference), and pystack on the same dockerd (the
front alone, engine cost equal). Goals (issue 8, pystack+pystackd against Docker Compose +
dockerd): up 10 >= 5x, up 30 >= 7x, down 10 >= 10x, chain within 10% of 10 s, no-op up and
ps within 2x. ``--no-dockerd-front`` leaves out the third runner.

Addresses: every network of the run is in 10.212.0.0/16 (pystackd: default bridge
10.212.250.0/24, project networks from 10.212.0.0/18; dockerd: 10.212.128.0/18). The load
average is printed before and after: the machine is shared, read the ratios.

Bytecode: pystack runs with its modules byte-compiled, as an installed package has them
(pip writes the .pyc files at install time). This machine's environment sets
PYTHONDONTWRITEBYTECODE=1, which made every pystack command compile ~40 source files again
(~80 ms each); the runs here drop it and put the cache under the run's own directory
(PYTHONPYCACHEPREFIX), compiled before the first measurement. ``--no-bytecode`` keeps the
environment as it is. One untimed round (up -d, ps, down of one service) warms each runner
and its engine first.

Teardown: whatever the run leaves (a failed scenario), every container and network is
removed through each engine's API before it stops, then the networking library removes
whatever pystackd's state still names (bridges, veths, nft tables, namespaces), so a run
leaves nothing in 10.212.0.0/16.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

VENV_BIN = Path(sys.executable).parent
PYSTACK = [str(VENV_BIN / "pystack")]
COMPOSE = [str(VENV_BIN / "docker-compose")]
CGROUP_PARENT = f"pystack-bench-{uuid.uuid4().hex[:8]}"


def sleepers(n: int) -> str:
    out = "services:\n"
    for i in range(n):
        out += f"  s{i}:\n    image: busybox\n    command: [\"sleep\", \"3600\"]\n"
    return out


def chain(n: int) -> str:
    out = "services:\n"
    for i in range(n):
        out += (f"  c{i}:\n    image: busybox\n    command: [\"sleep\", \"3600\"]\n"
                "    healthcheck:\n      test: [\"CMD\", \"true\"]\n      interval: 1s\n")
        if i:
            out += f"    depends_on:\n      c{i - 1}: {{condition: service_healthy}}\n"
    return out


class Runner:
    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.argv = argv
        self.env = env

    def time(self, project: str, file: Path, *args: str) -> float:
        t0 = time.perf_counter()
        proc = subprocess.run(self.argv + ["-p", project, "-f", str(file), *args], env=self.env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        elapsed = time.perf_counter() - t0
        if proc.returncode:
            raise SystemExit(f"{self.name} {' '.join(args)} failed: {proc.stderr.strip()[-500:]}")
        return elapsed


def start_pystackd(work: Path) -> tuple[subprocess.Popen, str]:
    """A private pystackd (own root, run dir and socket under ``work``), answering."""
    import socket

    sock = f"/run/pystack-bench-{uuid.uuid4().hex[:8]}.sock"
    log = open(work / "pystackd.log", "wb")
    # its own cgroup parent: isolation from the other engines on this host
    proc = subprocess.Popen([str(VENV_BIN / "pystackd"), "--root", str(work / "pstate"), "--run",
                             str(work / "prun"), "--host", sock, "--bridge-subnet", "10.212.250.0/24",
                             "--default-address-pool", "base=10.212.0.0/18,size=24"],
                            stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True,
                            env=dict(os.environ, PYSTACK_CGROUP_PARENT=CGROUP_PARENT))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("pystackd exited: " + (work / "pystackd.log").read_text()[-500:])
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(sock)
            return proc, sock
        except OSError:
            time.sleep(0.05)
        finally:
            s.close()
    proc.kill()
    raise SystemExit("pystackd did not answer within 20 s")


def bytecode_env(env: dict[str, str], cache: Path) -> dict[str, str]:
    """``env`` for pystack with a bytecode cache, filled now (see the docstring)."""
    import compileall
    import importlib

    out = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    out["PYTHONPYCACHEPREFIX"] = str(cache)
    dirs = set()
    for name in ("pystack", "pystack.stack", "pystack.runtime", "pystack.networking", "pystack.volumes"):
        dirs.update(importlib.import_module(name).__path__)
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0", *sorted(dirs)],
                   env=out, check=True, stdout=subprocess.DEVNULL)
    return out


def remove_everything(host: str) -> list[str]:
    """Every container (forced, with its volumes) and every non-builtin network of an
    engine; returns the ids of networks it could not remove (their bridges are deleted
    after the engine stops: dockerd keeps a stale endpoint now and then)."""
    from pystack.compose.client import EngineClient

    left: list[str] = []
    try:
        client = EngineClient(host.removeprefix("unix://"))
        for c in client.containers(all=True):
            client.remove(c["Id"], force=True, volumes=True)
        for n in client.networks():
            if n.get("Name") in ("bridge", "host", "none"):
                continue
            try:
                client.network_remove(n["Id"])
                continue
            except Exception:  # noqa: BLE001 - stale endpoints: force them out, once
                pass
            try:
                for cid in client.network_inspect(n["Id"]).get("Containers") or {}:
                    client.network_disconnect(n["Id"], cid, force=True)
                client.network_remove(n["Id"])
            except Exception as exc:  # noqa: BLE001
                print(f"cleanup of {host}: network {n.get('Name')}: {exc}", file=sys.stderr)
                left.append(n["Id"])
    except Exception as exc:  # noqa: BLE001 - best effort before the engine stops
        print(f"cleanup of {host}: {exc}", file=sys.stderr)
    return left


def delete_bridges(network_ids: list[str]) -> None:
    """dockerd's bridges (br-<id12>) of networks it still had when it stopped."""
    for net_id in network_ids:
        subprocess.run(["ip", "link", "del", f"br-{net_id[:12]}"], capture_output=True)


def cleanup_networking(work: Path) -> None:
    """What pystackd's networking state still names once it stopped (a killed run)."""
    try:
        from pystack.networking import NetworkManager

        nm = NetworkManager(work / "pstate" / "networks", work / "prun" / "net", dns=False)
        nm.cleanup_all()
    except Exception as exc:  # noqa: BLE001
        print(f"network cleanup: {exc}", file=sys.stderr)


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--no-dockerd-front", action="store_true", help="skip pystack on dockerd")
    parser.add_argument("--no-bytecode", action="store_true",
                        help="keep PYTHONDONTWRITEBYTECODE as the environment has it (no .pyc cache)")
    args = parser.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from pystack.compose.dockerd import start_dockerd
    from pystack.testimage import make_busybox_rootfs

    print("load average at start:", _load())
    d = start_dockerd(pool="10.212.128.0/18", prefix="pystack-bench-dockerd")
    work = Path(tempfile.mkdtemp(prefix="pystack-stack-bench-"))
    engine = None
    try:
        rootfs = make_busybox_rootfs(work / "rootfs")
        d.import_rootfs(rootfs, "busybox:latest")
        env = {k: v for k, v in os.environ.items() if k not in ("DOCKER_HOST", "PYSTACK_HOST")}
        if not args.no_bytecode:
            env = bytecode_env(env, work / "pycache")
        engine, sock = start_pystackd(work)
        penv = {**env, "PYSTACK_HOST": "unix://" + sock}
        subprocess.run(PYSTACK + ["image", "import", str(rootfs), "busybox:latest", "-c", 'CMD ["sh"]'],
                       env=penv, check=True, stdout=subprocess.DEVNULL)
        runners = [Runner("pystack", PYSTACK, penv),
                   Runner("docker compose", COMPOSE, {**env, "DOCKER_HOST": d.host})]
        if not args.no_dockerd_front:
            runners.append(Runner("pystack/dockerd", PYSTACK, {**env, "PYSTACK_HOST": d.host}))
        files = {}
        for label, text in (("1", sleepers(1)), ("10", sleepers(10)), ("30", sleepers(30)),
                            ("chain10", chain(10))):
            files[label] = work / f"{label}.yaml"
            files[label].write_text(text)
        results: dict[str, dict[str, list[float]]] = {}
        for runner in runners:  # untimed: first-use costs of each front and engine
            project = f"warm{uuid.uuid4().hex[:6]}"
            for cmd in (["up", "-d"], ["ps"], ["down"]):
                runner.time(project, files["1"], *cmd)

        def record(what: str, runner: Runner, seconds: float) -> None:
            results.setdefault(what, {}).setdefault(runner.name, []).append(seconds)

        for _ in range(args.repeat):
            for runner in runners:
                for label in ("1", "10", "30"):
                    project = f"bench{uuid.uuid4().hex[:6]}"
                    record(f"up -d {label}", runner, runner.time(project, files[label], "up", "-d"))
                    if label == "30":
                        record("no-op up -d 30", runner, runner.time(project, files[label], "up", "-d"))
                        record("ps 30", runner, runner.time(project, files[label], "ps"))
                    record(f"down {label}", runner, runner.time(project, files[label], "down"))
                project = f"bench{uuid.uuid4().hex[:6]}"
                record("chain10 up -d (floor 10 s)", runner,
                       runner.time(project, files["chain10"], "up", "-d"))
                runner.time(project, files["chain10"], "down", "-t", "0")  # not measured
        front = not args.no_dockerd_front
        print(f"{'scenario':30} {'pystack':>10} {'compose':>10} {'speed-up':>9}"
              + (f" {'pystack/dockerd':>16} {'speed-up':>9}" if front else ""))
        for what, by in results.items():
            ours = statistics.median(by["pystack"])
            theirs = statistics.median(by["docker compose"])
            line = f"{what:30} {ours:9.3f}s {theirs:9.3f}s {theirs / ours:8.2f}x"
            if front:
                f = statistics.median(by["pystack/dockerd"])
                line += f" {f:15.3f}s {theirs / f:8.2f}x"
            print(line)
        print("load average at end:", _load())
    finally:
        if engine is not None:
            remove_everything("unix://" + sock)
            engine.terminate()
            try:
                engine.wait(timeout=60)
            except subprocess.TimeoutExpired:
                engine.kill()
                engine.wait()
            from pystack.runtime import cgroups
            try:
                cgroups.cleanup_parent(CGROUP_PARENT)
            except Exception:  # noqa: BLE001
                pass
            cleanup_networking(work)
        left = remove_everything(d.host)
        d.stop()
        delete_bridges(left)
        import shutil

        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
