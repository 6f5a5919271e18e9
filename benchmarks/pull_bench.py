"""Pull benchmark: pystack pull vs ``skopeo copy`` from a local registry; unpack vs umoci.

Builds a ~200 MB (uncompressed), 4-layer image of mixed files (text-like and random,
many small and a few large), pushes it to Debian's docker-registry started on
127.0.0.1, then in the same run times:

* ``pystack pull`` into an empty store (download + verify + unpack every layer) against
  ``skopeo copy docker://... oci:DIR`` (download + verify only), as a ratio, twice per
  round: "cold", the process's unpack helpers stopped first (the pull starts them, as
  the first pull of a process does), and "warm", the helpers the previous pull left
  running (as in an engine that pulled within the last ``PYSTACK_UNPACK_IDLE`` seconds);
* pystack's download + verify alone (``pull._download``, no unpack: skopeo's work);
* unpacking the same layers with pystack's safe unpacker in one process, one layer after
  the other, against ``umoci unpack``, as MB/s of uncompressed layer data.

CPU seconds (user + system) are counted for this process, its waited-for children
(skopeo, umoci) and its live descendants other than the registry (the unpack helpers):
the machine's load disturbs them much less than wall time. Before each timed step the
page cache is written back (``sync``), and skopeo goes first every other round. The load
average is printed before and after: compare only numbers of the same run.

Run by hand, as root: ``/opt/pystack/venv/bin/python benchmarks/pull_bench.py [--mb 200]
[--rounds 5]``. Prints numbers only; nothing here asserts a time.
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.images.registryfix import start_registry  # noqa: E402


def build_tree(root: Path, mb: int, seed: int) -> None:
    """~mb MB of files: half compressible text, half random; sizes from 1 kB to 8 MB."""
    rnd = random.Random(seed)
    words = [bytes(rnd.choices(b"abcdefghijklmnopqrstuvwxyz", k=rnd.randint(2, 9))) for _ in range(2000)]
    total, n = 0, 0
    while total < mb * 1_000_000:
        d = root / f"d{n % 37}" / f"s{n % 11}"
        d.mkdir(parents=True, exist_ok=True)
        size = rnd.choice([1_000, 4_000, 16_000, 64_000, 256_000, 1_000_000, 8_000_000])
        if n % 2:
            data = rnd.randbytes(size)
        else:
            data = b" ".join(rnd.choices(words, k=size // 6))[:size]
        (d / f"f{n}").write_bytes(data)
        total += len(data)
        n += 1


def download_only(dest: Path, ref: str) -> None:
    """pystack's download + verify of every blob, no unpack: what ``skopeo copy`` does.

    The same code as a pull (manifest, config, then the layer blobs in parallel through
    ``pull._download``: resumable, digest- and size-checked, fsynced, renamed into place).
    """
    import json
    from concurrent.futures import ThreadPoolExecutor
    from pystack.runtime.images import pull as pl
    from pystack.runtime.images.progress import Progress
    from pystack.runtime.images.reference import parse
    from pystack.runtime.images.store import ImageStore
    store, r = ImageStore(dest), parse(ref)
    client = pl.endpoints(r)[-1][0]
    data, _, _ = client.get_manifest(r.repository, r.tag or "latest")
    doc = json.loads(data)
    pl._download(store, client, r.repository, doc["config"], Progress())
    with ThreadPoolExecutor(max_workers=pl.WORKERS) as pool:
        for f in [pool.submit(pl._download, store, client, r.repository, d, Progress()) for d in doc["layers"]]:
            f.result()


CPU: dict[str, list[float]] = {}
NOT_COUNTED: set[int] = set()  # the registry: it serves skopeo and pystack alike


def _live_children_cpu() -> float:
    """CPU seconds of this process's live descendants (the unpack helpers a pull keeps,
    and the ones their first interpreter forked), the registry excepted."""
    tick, procs = os.sysconf("SC_CLK_TCK"), {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            procs[int(d)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    total, ours = 0.0, {os.getpid()}
    grew = True
    while grew:
        grew = False
        for pid, (ppid, cpu) in procs.items():
            if ppid in ours and pid not in ours and pid not in NOT_COUNTED:
                ours.add(pid)
                total += cpu
                grew = True
    return total


def cpu_seconds() -> float:
    """User+system CPU of this process, its waited-for children (skopeo, umoci, helpers
    that exited) and its live descendants but the registry (helpers kept for the next pull)."""
    import resource
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime + _live_children_cpu()


def settle() -> None:
    """Before each timed step: write back what the previous one left dirty (a pull does not
    fsync the files it unpacks, as Docker does not), so that no step pays for another's
    writeback."""
    os.sync()


def timed(fn, what: str = "") -> float:
    c = cpu_seconds()
    t = time.perf_counter()
    fn()
    elapsed = time.perf_counter() - t
    if what:
        CPU.setdefault(what, []).append(cpu_seconds() - c)
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    # the unpack helpers are fresh interpreters: give them the .pyc an installed package has
    # (with PYTHONDONTWRITEBYTECODE set, each would compile layers.py from source again)
    import compileall
    compileall.compile_dir(str(Path(__file__).resolve().parents[1] / "runtime" / "images"), quiet=1)
    from pystack.runtime.images.store import ImageStore
    tmp = Path(tempfile.mkdtemp(prefix="pull-bench-"))
    reg = start_registry(tmp)
    NOT_COUNTED.add(reg.proc.pid)
    load_before = os.getloadavg()
    try:
        src = ImageStore(tmp / "src")
        layers_dir = tmp / "trees"
        # a multi-layer image: import each tree, then stack them as one image's layers
        blobs = []
        for i in range(args.layers):
            tree = layers_dir / f"l{i}"
            build_tree(tree, args.mb // args.layers, i)
            img = src.import_rootfs(tree, f"bench-part:{i}")
            d = img.layers[0]
            blobs.append((src.blobs.path(d["digest"]).read_bytes(), None, d["diff_id"]))
        layout = tmp / "layout"
        layout.mkdir()
        import json
        from tests.images.helpers import write_blob
        config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                             "rootfs": {"type": "layers", "diff_ids": [b[2] for b in blobs]}}).encode()
        cdesc = write_blob(layout, config)
        manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                               "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **cdesc},
                               "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                           **write_blob(layout, b[0])} for b in blobs]}).encode()
        mdesc = write_blob(layout, manifest)
        (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", **mdesc,
             "annotations": {"org.opencontainers.image.ref.name": "1"}}]}))
        ref = f"{reg.host}/bench/big:1"
        subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", f"oci:{layout}:1", f"docker://{ref}"],
                       check=True, capture_output=True)
        compressed = sum(len(b[0]) for b in blobs)
        src_store = ImageStore(tmp / "warm")
        uncompressed = None

        from pystack.runtime.images.unpacker import shutdown_shared
        rounds = []
        for r in range(args.rounds):
            dest, oci = tmp / f"pystack-{r}", tmp / f"skopeo-{r}"

            def cold() -> float:
                shutdown_shared()  # cold: the pull starts its helpers
                settle()
                t = timed(lambda: ImageStore(dest).pull(ref), "pull (cold)")
                nonlocal uncompressed
                if uncompressed is None:
                    uncompressed = sum(l["unpacked_size"] for l in ImageStore(dest).resolve(ref).layers)
                shutil.rmtree(dest)
                return t

            def skopeo() -> float:
                settle()
                t = timed(lambda: subprocess.run(["skopeo", "copy", "--src-tls-verify=false", f"docker://{ref}",
                                                  f"oci:{oci}:1"], check=True, capture_output=True), "skopeo")
                shutil.rmtree(oci)
                return t
            # every other round skopeo goes first: neither side always runs after the other
            if r % 2 == 0:
                t_py = cold()
                t_sk = skopeo()
            else:
                t_sk = skopeo()
                t_py = cold()
            settle()
            t_warm = timed(lambda: ImageStore(dest).pull(ref), "pull (warm)")  # the cold pull's helpers
            shutil.rmtree(dest)
            settle()
            t_dl = timed(lambda: download_only(dest, ref), "download")
            shutil.rmtree(dest)
            rounds.append((t_py, t_sk, t_dl, t_warm))
        shutdown_shared()
        # unpack only: pystack's unpacker over the skopeo oci dir's blobs vs umoci unpack
        from pystack.runtime.images.layers import unpack_file
        oci = tmp / "skopeo-0"
        subprocess.run(["skopeo", "copy", "--src-tls-verify=false", f"docker://{ref}", f"oci:{oci}:1"],
                       check=True, capture_output=True)

        def ours() -> None:
            for i, (blob, _, diff_id) in enumerate(blobs):
                d = tmp / "unpack-ours" / str(i)
                d.mkdir(parents=True)
                p = tmp / f"blob{i}"
                p.write_bytes(blob) if not p.exists() else None
                unpack_file(p, d, expected_diff_id=diff_id)
        for i, (blob, _, _) in enumerate(blobs):
            (tmp / f"blob{i}").write_bytes(blob)
        t_ours = t_umoci = float("inf")
        for _ in range(max(1, args.rounds // 2)):
            t_ours = min(t_ours, timed(ours, "unpack"))
            shutil.rmtree(tmp / "unpack-ours")
            t_umoci = min(t_umoci, timed(lambda: subprocess.run(
                ["umoci", "unpack", "--image", f"{oci}:1", str(tmp / "umoci-bundle")],
                check=True, capture_output=True), "umoci"))
            shutil.rmtree(tmp / "umoci-bundle")
        mb_unc = (uncompressed or 0) / 1e6
        print(f"image: {args.layers} layers, {compressed / 1e6:.1f} MB compressed, {mb_unc:.1f} MB uncompressed")
        from pystack.runtime.images.layers import _inflate_module
        load_after = os.getloadavg()
        print(f"inflate: {_inflate_module().__name__}; load average before {load_before[0]:.2f} "
              f"({load_before[1]:.2f} over 5 min), after {load_after[0]:.2f} ({load_after[1]:.2f}); "
              f"{os.cpu_count()} CPUs")
        for i, (t_py, t_sk, t_dl, t_warm) in enumerate(rounds):
            print(f"round {i + 1}: pystack pull (download+verify+unpack) cold {t_py:.2f}s, warm {t_warm:.2f}s | "
                  f"skopeo copy (download+verify) {t_sk:.2f}s | ratio skopeo/pystack cold {t_sk / t_py:.2f}, "
                  f"warm {t_sk / t_warm:.2f} | pystack download+verify only {t_dl:.2f}s (ratio {t_sk / t_dl:.2f})")

        def med(xs: list[float]) -> float:
            return sorted(xs)[len(xs) // 2]
        best_py, best_sk, best_dl, best_warm = (min(r[k] for r in rounds) for k in range(4))
        med_py, med_sk, med_dl, med_warm = (med([r[k] for r in rounds]) for k in range(4))
        print(f"best of {len(rounds)}: pystack cold {best_py:.2f}s, warm {best_warm:.2f}s, skopeo {best_sk:.2f}s, "
              f"ratio skopeo/pystack cold {best_sk / best_py:.2f}, warm {best_sk / best_warm:.2f}; "
              f"pystack download+verify only {best_dl:.2f}s, ratio {best_sk / best_dl:.2f}")
        print(f"median of {len(rounds)}: pystack cold {med_py:.2f}s, warm {med_warm:.2f}s, skopeo {med_sk:.2f}s, "
              f"ratio of medians cold {med_sk / med_py:.2f}, warm {med_sk / med_warm:.2f}; per round (median): "
              f"cold {med([r[1] / r[0] for r in rounds]):.2f}, warm {med([r[1] / r[3] for r in rounds]):.2f}")
        print("CPU seconds (user+sys, median of rounds; less sensitive to the machine's load than wall time): "
              + ", ".join(f"{k} {med(v):.2f}" for k, v in CPU.items()))
        print(f"unpack, one process, best of {max(1, args.rounds // 2)}: pystack {mb_unc / t_ours:.0f} MB/s "
              f"({t_ours:.2f}s) | umoci unpack {mb_unc / t_umoci:.0f} MB/s ({t_umoci:.2f}s) | "
              f"ratio umoci/pystack time {t_umoci / t_ours:.2f}")
        del src_store
    finally:
        reg.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
