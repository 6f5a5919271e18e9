"""Builders the image tests share: tar layers from entry lists, OCI layouts, stores.

Hostile layers are written entry by entry with ``tarfile`` (never from a real tree), so
each test states exactly which bytes an attacker would send.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path
from typing import Iterable

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def entry(name: str, kind: str = "file", data: bytes = b"", *, link: str = "", mode: int | None = None,
          uid: int = 0, gid: int = 0, mtime: int = 1_600_000_000, xattrs: dict[str, bytes] | None = None,
          dev: tuple[int, int] = (0, 0)) -> tuple[tarfile.TarInfo, bytes | None]:
    ti = tarfile.TarInfo(name)
    ti.type = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
               "hardlink": tarfile.LNKTYPE, "char": tarfile.CHRTYPE, "block": tarfile.BLKTYPE,
               "fifo": tarfile.FIFOTYPE}[kind]
    ti.mode = mode if mode is not None else (0o755 if kind == "dir" else 0o644)
    ti.uid, ti.gid, ti.mtime = uid, gid, mtime
    ti.linkname = link
    ti.devmajor, ti.devminor = dev
    if xattrs:
        ti.pax_headers = {f"SCHILY.xattr.{k}": v.decode("utf-8", "surrogateescape") for k, v in xattrs.items()}
    if kind == "file":
        ti.size = len(data)
        return ti, data
    return ti, None


def make_tar(entries: Iterable[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for ti, data in entries:
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def zst(data: bytes) -> bytes:
    import zstandard
    return zstandard.ZstdCompressor().compress(data)


def write_blob(layout: Path, data: bytes) -> dict:
    d = sha(data)
    p = layout / "blobs" / "sha256" / d.split(":")[1]
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return {"digest": d, "size": len(data)}


def image_manifest(layout: Path, layers: list[tuple[bytes, bytes]], *, arch: str = "amd64", os_: str = "linux",
                   variant: str | None = None, config_extra: dict | None = None,
                   media: str = "application/vnd.oci.image.layer.v1.tar+gzip") -> tuple[bytes, dict]:
    """layers: (blob bytes, uncompressed tar) pairs. Returns (manifest bytes, config)."""
    config = {"architecture": arch, "os": os_, "created": "2026-01-01T00:00:00Z",
              "config": {"Cmd": ["sh"]}, "rootfs": {"type": "layers", "diff_ids": [sha(t) for _, t in layers]},
              **(config_extra or {})}
    if variant:
        config["variant"] = variant
    cfg_bytes = json.dumps(config).encode()
    cdesc = write_blob(layout, cfg_bytes)
    ldescs = [{"mediaType": media, **write_blob(layout, blob)} for blob, _ in layers]
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **cdesc},
                           "layers": ldescs}).encode()
    write_blob(layout, manifest)
    return manifest, config


def oci_layout(layout: Path, name: str, layers: list[tuple[bytes, bytes]], **kw) -> Path:
    """An OCI image layout directory holding one image named ``name``."""
    layout.mkdir(parents=True, exist_ok=True)
    manifest, _ = image_manifest(layout, layers, **kw)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": sha(manifest), "size": len(manifest),
         "annotations": {"io.containerd.image.name": name}}]}))
    return layout


def tree_snapshot(root: Path) -> dict[str, tuple]:
    """Everything about a tree that an escape could change: names, types, modes, content."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            st = os.lstat(p)
            content = p.read_bytes() if p.is_file() and not p.is_symlink() else (
                os.readlink(p) if p.is_symlink() else None)
            out[str(p.relative_to(root))] = (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns, content)
    return out


def store_files(root: Path) -> dict[str, list[str]]:
    """What the image store holds, by area (for "nothing partial left" checks)."""
    out = {}
    for area in ("blobs", "layers", "images", "tmp"):
        base = root / area
        found = (base.iterdir() if area == "layers" else (p for p in base.rglob("*") if p.is_file())) \
            if base.exists() else []
        out[area] = sorted(str(p.relative_to(base)) for p in found if not p.name.endswith(".lock"))
    refs = root / "refs.json"
    out["refs"] = sorted(json.loads(refs.read_text())) if refs.exists() else []
    return out


def run_cli(args: list[str], env: dict[str, str], input: bytes | None = None) -> subprocess.CompletedProcess:
    """``pystack ARGS`` as a user runs it: the image commands go through the engine, which the
    CLI starts on first use (``pystack.compose.autostart``) for this PYSTACK_ROOT, with its
    socket in ``<root>.run/`` (stopped by ``stop_engines`` in teardown)."""
    full = {**os.environ, **env}
    full.pop("PYSTACK_HOST", None)
    if "PYSTACK_RUN" not in env:
        full["PYSTACK_RUN"] = full["PYSTACK_ROOT"].rstrip("/") + ".run"
    return subprocess.run(["/opt/pystack/venv/bin/pystack", *args], env=full,
                          capture_output=True, input=input, timeout=120)


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting for its (sub)reaper."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def stop_engines(base: Path, timeout: float = 20.0) -> list[int]:
    """Stop (by PID, SIGTERM then SIGKILL) every pystackd the CLI started under ``base``."""
    import signal
    import time
    stopped = []
    for pid_file in base.rglob("pystackd.pid"):
        try:
            pid = int(pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if b"pystackd" not in cmdline and b"pystack.engine.daemon" not in cmdline:
            continue
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _running(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _running(pid):
            os.kill(pid, signal.SIGKILL)
        stopped.append(pid)
    return stopped
