"""Start-to-exit of /bin/true in the busybox bundle with a fresh network namespace.

Compares, in the same run and interleaved (so machine load hits all alike):

* ``library``       Runtime.create + start + wait (the engine's call; fork server warm)
* ``library+ovl``   the same with the image as an overlay lower dir (what the engine does)
* ``pystack-runtime run``   the runc-compatible command (a fresh Python each time), as
  the console script pip installed (Python's ``site`` runs, with every ``.pth`` of the
  environment; an editable install's hook is setup.py's import-free one)
* ``pystack-runtime run (-S launcher)``  the same command through the launcher of
  ``python -m pystack.runtime.launcher`` (``python -S``: no ``site``)
* ``runc run``      the reference
* ``floor``         ``unshare -fpinmu --mount-proc chroot ROOTFS /bin/true``

and prints p50/p95 and ratios, then the memory a running container costs outside itself
(its shim: unique and proportional set size from /proc/<pid>/smaps_rollup), and what an
idle Runtime keeps (its spares and their pre-forked inits).

PYSTACK_RUNTIME_TRACE=<file> in the environment makes every runtime process append
``<monotonic ns> <pid> <step> [<minor faults>]`` lines there (see pystack.runtime.state.trace).

Run by hand as root:  python benchmarks/runtime_bench.py [--runs 200] [--shims 10]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def smaps(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
                out[parts[0][:-1]] = int(parts[1])
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--shims", type=int, default=10)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root")
    from pystack.runtime import Runtime
    from pystack.runtime.spec import default_spec
    from pystack.testimage import make_busybox_rootfs

    parent = f"pystack-bench-{uuid.uuid4().hex[:6]}"
    os.environ["PYSTACK_CGROUP_PARENT"] = parent
    work = Path(tempfile.mkdtemp(prefix="psrtb"))
    try:
        rootfs = make_busybox_rootfs(work / "bundle" / "rootfs")
        spec = default_spec(["/bin/true"], hostname="bench")
        (work / "bundle" / "config.json").write_text(json.dumps(spec))
        ovl = work / "ovl"
        (ovl / "rootfs").mkdir(parents=True)
        (ovl / "config.json").write_text(json.dumps(spec))
        rt = Runtime(work / "state")
        rt_bin = shutil.which("pystack-runtime") or "pystack-runtime"
        from pystack.runtime import launcher
        fast_bin = launcher.write(work / "pystack-runtime-fast")
        env = dict(os.environ)
        env.pop("PYTHONDONTWRITEBYTECODE", None)

        def lib(bundle: Path, overlay: bool) -> float:
            cid = uuid.uuid4().hex[:12]
            kw = {}
            if overlay:
                up, wk = work / f"u{cid}", work / f"w{cid}"
                up.mkdir()
                wk.mkdir()
                kw = {"rootfs_lowerdirs": [rootfs], "rootfs_upper": up, "rootfs_work": wk}
            t = time.perf_counter()
            rt.create(cid, bundle, **kw)
            rt.start(cid)
            code = rt.wait(cid)
            dt = time.perf_counter() - t
            rt.delete(cid)
            if overlay:
                shutil.rmtree(up)
                shutil.rmtree(wk)
            assert code == 0, code
            return dt

        cpu: dict[str, list[float]] = {}

        def cmd(name: str, argv: list[str], cwd: Path) -> float:
            """Wall time; the CPU time of the command's process tree (its rusage, which
            counts the children it reaped: runc's `runc init`, our container init) goes
            to ``cpu[name]``: unlike wall time, it hardly moves with the machine's load."""
            t = time.perf_counter()
            p = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            err = p.stderr.read()
            _, status, ru = os.wait4(p.pid, 0)
            dt = time.perf_counter() - t
            p.returncode = os.waitstatus_to_exitcode(status)
            p.stderr.close()
            assert p.returncode == 0, err
            cpu.setdefault(name, []).append(ru.ru_utime + ru.ru_stime)
            return dt

        b = work / "bundle"
        cases = {
            "library": lambda: lib(b, False),
            "library+ovl": lambda: lib(ovl, True),
            "pystack-runtime run": lambda: cmd(
                "pystack-runtime run",
                [rt_bin, "--root", str(work / "cli"), "run", uuid.uuid4().hex[:12]], b),
            "pystack-runtime (-S launcher)": lambda: cmd(
                "pystack-runtime (-S launcher)",
                [fast_bin, "--root", str(work / "cli"), "run", uuid.uuid4().hex[:12]], b),
            "runc run": lambda: cmd(
                "runc run",
                ["runc", "--root", str(work / "runc"), "run", uuid.uuid4().hex[:12]], b),
            "floor (unshare+chroot)": lambda: cmd(
                "floor (unshare+chroot)",
                ["unshare", "-fpinmu", "--mount-proc", "chroot", str(rootfs), "/bin/true"], b),
        }
        for fn in cases.values():  # warm caches (fork server, pyc, seccomp program)
            for _ in range(3):
                fn()
        cpu.clear()
        times: dict[str, list[float]] = {k: [] for k in cases}
        for _ in range(args.runs):
            for name, fn in cases.items():
                times[name].append(fn())
        floor = statistics.median(times["floor (unshare+chroot)"])
        runc = statistics.median(times["runc run"])
        print(f"start-to-exit of /bin/true, fresh netns, {args.runs} runs each, interleaved; "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cpus")
        print(f"{'':30} {'p50 ms':>8} {'p95 ms':>8} {'x floor':>8} {'x runc':>7} "
              f"{'cpu p50 ms':>11} {'cpu x runc':>10}")
        runc_cpu = statistics.median(cpu["runc run"])
        for name, v in times.items():
            p50 = statistics.median(v)
            c = (f"{statistics.median(cpu[name]) * 1e3:11.1f} "
                 f"{statistics.median(cpu[name]) / runc_cpu:10.2f}") if name in cpu else ""
            print(f"{name:30} {p50 * 1e3:8.1f} {pct(v, 95) * 1e3:8.1f} {p50 / floor:8.2f} "
                  f"{p50 / runc:7.2f} {c}".rstrip())

        # memory of running containers outside themselves: their shims
        ids = []
        for i in range(args.shims):
            cid = f"mem{i}"
            (work / "msp").mkdir(exist_ok=True)
            sb = work / f"mb{i}"
            sb.mkdir()
            (sb / "rootfs").mkdir()
            (sb / "config.json").write_text(json.dumps(default_spec(["sleep", "60"])))
            up, wk = work / f"mu{i}", work / f"mw{i}"
            up.mkdir()
            wk.mkdir()
            rt.create(cid, sb, log_path=work / f"{cid}.log", rootfs_lowerdirs=[rootfs],
                      rootfs_upper=up, rootfs_work=wk)
            rt.start(cid)
            ids.append(cid)
        time.sleep(0.5)
        uss, pss, rss = [], [], []
        for cid in ids:
            shim = rt.states.load(cid)["shim_pid"]
            m = smaps(shim)
            uss.append(m.get("Private_Clean", 0) + m.get("Private_Dirty", 0))
            pss.append(m.get("Pss", 0))
            rss.append(m.get("Rss", 0))
        print(f"shim per running container ({args.shims} running): "
              f"USS {statistics.mean(uss) / 1024:.2f} MiB, PSS {statistics.mean(pss) / 1024:.2f} MiB, "
              f"RSS {statistics.mean(rss) / 1024:.2f} MiB (shared with the fork server)")
        # what a Runtime keeps while idle: its spares (shims-to-be) and the container inits
        # they pre-forked, all sharing the fork server's pages
        fs = rt._fs.proc.pid
        idle = []
        for child in open(f"/proc/{fs}/task/{fs}/children").read().split():
            kids = open(f"/proc/{child}/task/{child}/children").read().split()
            if len(kids) == 1 and int(child) not in [rt.states.load(c)["shim_pid"] for c in ids]:
                for pid in (int(child), int(kids[0])):
                    m = smaps(pid)
                    idle.append(m.get("Private_Clean", 0) + m.get("Private_Dirty", 0))
        if idle:
            print(f"idle per Runtime ({len(idle) // 2} spares + their pre-forked inits): USS {sum(idle) / 1024:.2f} MiB")
        for cid in ids:
            rt.delete(cid, force=True)
        rt.close()
    finally:
        subprocess.run(["rm", "-rf", str(work)])
        for d in Path("/sys/fs/cgroup").glob(f"*/{parent}"):
            for child in d.iterdir():
                if child.is_dir():
                    child.rmdir()
            d.rmdir()


if __name__ == "__main__":
    main()
