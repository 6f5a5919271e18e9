"""Storage benchmark (run by hand, as root): ``python benchmarks/volume_bench.py [--quick]``.

1. Container I/O on a named volume and on a bind mount, against the same workload run on
   the host directly, as ratios (goal: within 5%: it is the same filesystem). The
   container is a busybox one run by runc with the mounts pystack's planner produces; the
   workload is the same busybox script on both sides, timed inside it (``/proc/uptime``,
   10 ms resolution) so container start-up is not counted.
   - seq: write N MiB with dd (fsync at the end), read it back (from the page cache)
   - small: create, read and delete M 4 KiB files
   - random: K random 4 KiB writes into a 100 MiB file (dd seek=, one process each)
2. Snapshot and restore of a volume of 1 GiB in 10,000 files, timed, on the state
   directory's filesystem (a full copy on ext4) and, when mkfs.xfs is there, on a
   loop-mounted XFS with reflink (blocks shared).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

USE_C = False
WORKLOAD = r"""
set -e
D="$1"; SEQ_MB="$2"; SMALL="$3"; RAND="$4"
t() { cut -d' ' -f1 /proc/uptime; }
a=$(t); dd if=/dev/zero of="$D/seq" bs=1M count="$SEQ_MB" conv=fsync 2>/dev/null; b=$(t)
dd if="$D/seq" of=/dev/null bs=1M 2>/dev/null; c=$(t); rm -f "$D/seq"
mkdir -p "$D/small"; i=0
while [ $i -lt "$SMALL" ]; do dd if=/dev/zero of="$D/small/f$i" bs=4k count=1 2>/dev/null; i=$((i+1)); done
cat "$D"/small/* > /dev/null; rm -rf "$D/small"; sync; d=$(t)
dd if=/dev/zero of="$D/rand" bs=1M count=100 2>/dev/null; e=$(t); i=0; s=12345
while [ $i -lt "$RAND" ]; do s=$(( (s * 1103515245 + 12345) % 2147483648 ));
  dd if=/dev/zero of="$D/rand" bs=4k count=1 seek=$((s % 25600)) conv=notrunc 2>/dev/null; i=$((i+1)); done
sync; f=$(t); rm -f "$D/rand"
echo "seq_write $a $b"; echo "seq_read $b $c"; echo "small $c $d"; echo "random $e $f"
"""


# Fork-free workload (compiled static with gcc when available, so that the numbers measure the
# filesystem path and not process creation, which differs with the caller's cgroup).
IOBENCH_C = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
int main(int argc, char **argv) {
    const char *d = argv[1]; long seq_mb = atol(argv[2]), small = atol(argv[3]), rnd = atol(argv[4]);
    static char buf[1 << 20]; char path[4096]; memset(buf, 'x', sizeof buf);
    snprintf(path, sizeof path, "%s/seq", d);
    double a = now(); int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    for (long i = 0; i < seq_mb; i++) if (write(fd, buf, sizeof buf) != sizeof buf) return 1;
    fsync(fd); close(fd); double b = now();
    fd = open(path, O_RDONLY); while (read(fd, buf, sizeof buf) > 0) {} close(fd); unlink(path); double c = now();
    for (long i = 0; i < small; i++) { snprintf(path, sizeof path, "%s/f%ld", d, i);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644); if (write(fd, buf, 4096) != 4096) return 1; close(fd); }
    for (long i = 0; i < small; i++) { snprintf(path, sizeof path, "%s/f%ld", d, i);
        fd = open(path, O_RDONLY); if (read(fd, buf, 4096) != 4096) return 1; close(fd); unlink(path); }
    double e = now();
    snprintf(path, sizeof path, "%s/rand", d); fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (ftruncate(fd, 100 << 20)) return 1; unsigned s = 12345; double f = now();
    for (long i = 0; i < rnd; i++) { s = s * 1103515245 + 12345; if (pwrite(fd, buf, 4096, (off_t)(s % 25600) * 4096) != 4096) return 1; }
    fsync(fd); double g = now();
    for (long i = 0; i < rnd; i++) { s = s * 1103515245 + 12345; if (pread(fd, buf, 4096, (off_t)(s % 25600) * 4096) != 4096) return 1; }
    double h = now(); close(fd); unlink(path);
    printf("seq_write %f %f\nseq_read %f %f\nsmall %f %f\nrand_write %f %f\nrand_read %f %f\n", a, b, b, c, c, e, f, g, g, h);
    return 0;
}
"""


def build_iobench(rootfs: Path) -> bool:
    """Compile the C workload into the rootfs (/bin/iobench); False when gcc/static libc are missing."""
    if shutil.which("gcc") is None:
        return False
    src = rootfs.parent / "iobench.c"
    src.write_text(IOBENCH_C)
    p = subprocess.run(["gcc", "-O2", "-static", "-o", str(rootfs / "bin/iobench"), str(src)], capture_output=True)
    return p.returncode == 0


def parse(out: str) -> dict[str, float]:
    res = {}
    for line in out.splitlines():
        name, a, b = line.split()
        res[name] = float(b) - float(a)
    return res


def host_run(rootfs: Path, data: Path, args: list[str]) -> dict[str, float]:
    # the same busybox applets as in the container (not the host's coreutils), same PATH order
    path = ":".join(str(rootfs / d) for d in ("usr/local/sbin", "usr/local/bin", "usr/sbin", "usr/bin", "sbin", "bin"))
    cmd = [str(rootfs / "bin/iobench")] if USE_C else [str(rootfs / "bin/busybox"), "sh", "-c", WORKLOAD, "sh"]
    p = subprocess.run([*cmd, str(data), *args], capture_output=True, text=True, check=True, env={"PATH": path})
    return parse(p.stdout)


def container_run(tmp: Path, rootfs: Path, mounts: list[dict], dest: str, args: list[str]) -> dict[str, float]:
    from pystack.runtime.spec import default_spec

    bundle = tmp / f"bundle-{uuid.uuid4().hex[:6]}"
    bundle.mkdir()
    shutil.copytree(rootfs, bundle / "rootfs", symlinks=True)
    cmd = ["/bin/iobench"] if USE_C else ["sh", "-c", WORKLOAD, "sh"]
    spec = default_spec([*cmd, dest, *args], seccomp=True)
    spec["mounts"].extend(mounts)
    (bundle / "config.json").write_text(json.dumps(spec))
    cid = f"psbench-{uuid.uuid4().hex[:8]}"
    state = tmp / "runc-state"
    try:
        p = subprocess.run(["runc", "--root", str(state), "run", "--bundle", str(bundle), cid],
                           capture_output=True, text=True, stdin=subprocess.DEVNULL)
    finally:
        subprocess.run(["runc", "--root", str(state), "delete", "-f", cid], capture_output=True)
        shutil.rmtree(bundle, ignore_errors=True)
    if p.returncode:
        raise SystemExit(f"container failed: {p.stderr}")
    return parse(p.stdout)


def io_bench(tmp: Path, rootfs: Path, args: list[str], rounds: int) -> None:
    from pystack.volumes.planner import plan_mounts
    from pystack.volumes.store import VolumeStore

    store = VolumeStore(tmp / "volumes")
    host_dir = tmp / "host"
    bind_dir = tmp / "bind"
    host_dir.mkdir()
    bind_dir.mkdir()
    results: dict[str, list[dict[str, float]]] = {"host": [], "volume": [], "bind": []}
    for _ in range(rounds):  # interleaved so that drift in the machine hits all three alike
        results["host"].append(host_run(rootfs, host_dir, args))
        with plan_mounts("bench-vol", binds=["benchvol:/data"], store=store, pin_root=tmp / "pins") as plan:
            results["volume"].append(container_run(tmp, rootfs, list(plan), "/data", args))
        with plan_mounts("bench-bind", binds=[f"{bind_dir}:/data"], store=store, pin_root=tmp / "pins") as plan:
            results["bind"].append(container_run(tmp, rootfs, list(plan), "/data", args))
    store.release_container("bench-vol")
    best = {k: {m: min(r[m] for r in v) for m in v[0]} for k, v in results.items()}
    print(f"\ncontainer I/O vs host (best of {rounds}; seq {args[0]} MiB, {args[1]} small files, "
          f"{args[2]} random 4 KiB ops; {'C workload' if USE_C else 'busybox shell workload: forks per op'})")
    print(f"{'workload':<12}{'host s':>9}{'volume s':>10}{'ratio':>8}{'bind s':>9}{'ratio':>8}")
    for m in best["host"]:
        h, v, b = best["host"][m], best["volume"][m], best["bind"][m]
        print(f"{m:<12}{h:>9.2f}{v:>10.2f}{v / h if h else float('nan'):>8.3f}{b:>9.2f}"
              f"{b / h if h else float('nan'):>8.3f}")


def plan_bench(tmp: Path, n: int = 100) -> None:
    """Cost of plan_mounts (a bind, two volumes, a tmpfs) and of closing it, per container."""
    from pystack.volumes.planner import plan_mounts
    from pystack.volumes.store import VolumeStore

    store = VolumeStore(tmp / "plan-volumes")
    (tmp / "plan-host").mkdir()
    t_plan = t_close = 0.0
    for i in range(n):
        t0 = time.perf_counter()
        plan = plan_mounts(f"c{i}", binds=[f"{tmp}/plan-host:/h:ro", "vol1:/data", "vol2:/d2"], tmpfs={"/t": ""},
                           store=store, pin_root=tmp / "plan-pins")
        t1 = time.perf_counter()
        plan.close()
        t2 = time.perf_counter()
        store.release_container(f"c{i}")
        t_plan += t1 - t0
        t_close += t2 - t1
    print(f"\nplan_mounts (1 bind, 2 volumes, 1 tmpfs): {t_plan / n * 1000:.2f} ms, close (detach 3 staging "
          f"mounts): {t_close / n * 1000:.2f} ms   [{_fs(tmp)}]")


def make_files(data: Path, total_mb: int, files: int) -> None:
    size = total_mb * (1 << 20) // files
    block = os.urandom(size)
    for i in range(files):
        d = data / f"d{i % 100:02d}"
        d.mkdir(exist_ok=True)
        (d / f"f{i:05d}").write_bytes(block[i % 7:] + block[:i % 7])  # distinct contents, same size


def snapshot_bench(root: Path, label: str, total_mb: int, files: int) -> None:
    from pystack.volumes.store import VolumeStore

    store = VolumeStore(root / "volumes")
    rec = store.create("bigvol")
    make_files(Path(rec.mountpoint), total_mb, files)
    os.sync()
    t0 = time.perf_counter()
    info = store.snapshot("bigvol", "t1")
    os.sync()
    t1 = time.perf_counter()
    shutil.rmtree(Path(rec.mountpoint) / "d00")
    t2 = time.perf_counter()
    store.restore("bigvol", "t1")
    os.sync()
    t3 = time.perf_counter()
    print(f"{label:<28}{total_mb:>6} MiB {files:>6} files  snapshot {t1 - t0:7.2f}s  restore {t3 - t2:7.2f}s  "
          f"({info.method})")
    store.remove("bigvol")
    store.remove_snapshot("bigvol", "t1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes, to check the benchmark runs")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dir", default="/var/tmp", help="where to work (its filesystem is what is measured)")
    ap.add_argument("--only", choices=["io", "snapshot"], help="run one part only")
    opts = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("volume_bench: run as root (runc and mounts)")
    from pystack.testimage import make_busybox_rootfs

    seq_mb, small, rand, total_mb, files = (64, 300, 200, 64, 1000) if opts.quick else (512, 5000, 20000, 1024, 10000)
    with tempfile.TemporaryDirectory(prefix="psvolbench-", dir=opts.dir) as tmpd:
        tmp = Path(tmpd)
        rootfs = make_busybox_rootfs(tmp / "rootfs")
        global USE_C
        USE_C = build_iobench(rootfs)
        if opts.only != "snapshot":
            io_bench(tmp, rootfs, [str(seq_mb), str(small), str(rand)], 1 if opts.quick else opts.rounds)
        if opts.only == "io":
            return
        if opts.only != "snapshot":
            plan_bench(tmp)
        print("\nsnapshot / restore")
        snapshot_bench(tmp / "native", f"{opts.dir} ({_fs(tmp)})", total_mb, files)
        if shutil.which("mkfs.xfs"):
            img, mnt = tmp / "xfs.img", tmp / "xfs"
            mnt.mkdir()
            with open(img, "wb") as f:
                f.truncate(max(3 * total_mb, 400) << 20)
            subprocess.run(["mkfs.xfs", "-q", "-m", "reflink=1", str(img)], check=True)
            subprocess.run(["mount", "-o", "loop", str(img), str(mnt)], check=True)
            try:
                snapshot_bench(mnt, "loop XFS (reflink)", total_mb, files)
            finally:
                subprocess.run(["umount", str(mnt)], check=True)


def _fs(path: Path) -> str:
    from pystack.volumes._sys import fs_name

    return fs_name(str(path))


if __name__ == "__main__":
    sys.exit(main())
