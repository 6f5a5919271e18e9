"""``image import``: a directory or tarball becomes a one-layer image (``docker import``).

The layer is written as a gzip'd tar into the blob store while its uncompressed bytes
are hashed (the DiffID); it is then unpacked from that blob by the safe unpacker like
any pulled layer, so an imported image takes the very same path as a pulled one.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import stat
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from pystack.errors import UserError

from . import manifest as mt
from .changes import apply_changes
from .layers import PeekReader, decompressed

if TYPE_CHECKING:
    from .store import Image, ImageStore


class _DiffTee:
    """File-like: hashes (DiffID) and counts the tar bytes, passes them to the compressor."""

    def __init__(self, sink: Any) -> None:
        self.sink = sink
        self.hasher = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hasher.update(data)
        self.size += len(data)
        self.sink.write(data)
        return len(data)

    @property
    def diff_id(self) -> str:
        return "sha256:" + self.hasher.hexdigest()


def _xattr_filter(src: Path):
    """tarfile filter that records xattrs (PAX SCHILY.xattr.*), as docker/buildkit do."""
    def add(ti: tarfile.TarInfo) -> tarfile.TarInfo | None:
        path = src / ti.name
        try:
            names = os.listxattr(path, follow_symlinks=False)
        except OSError:
            names = []
        for name in names:
            if name.startswith("trusted.overlay.") or name.startswith("security.selinux"):
                continue
            try:
                value = os.getxattr(path, name, follow_symlinks=False)
            except OSError:
                continue
            ti.pax_headers["SCHILY.xattr." + name] = value.decode("utf-8", "surrogateescape")
        if ti.name in (".",):
            ti.name = "./"
        return ti
    return add


def write_layer_from_dir(src: Path, out: BinaryIO, level: int = 6) -> tuple[str, int]:
    """Tar ``src`` (sorted, PAX, xattrs) gzip'd into ``out``; returns (diff_id, tar size)."""
    gz = gzip.GzipFile(fileobj=out, mode="wb", compresslevel=level, mtime=0)
    tee = _DiffTee(gz)
    with tarfile.open(fileobj=tee, mode="w|", format=tarfile.PAX_FORMAT) as tf:  # type: ignore[call-overload]
        for entry in sorted(os.listdir(src)):
            tf.add(src / entry, arcname=entry, recursive=True, filter=_xattr_filter(src))
    gz.close()
    return tee.diff_id, tee.size


def write_layer_from_tarball(src: Path, out: BinaryIO, level: int = 6) -> tuple[str, int]:
    """Re-compress a (maybe compressed) tarball as gzip; returns (diff_id, tar size)."""
    gz = gzip.GzipFile(fileobj=out, mode="wb", compresslevel=level, mtime=0)
    tee = _DiffTee(gz)
    with open(src, "rb") as raw:
        head = raw.read(8)
        stream = decompressed(PeekReader(raw, head), head)  # type: ignore[arg-type]
        while chunk := stream.read(1 << 20):
            tee.write(chunk)
    gz.close()
    return tee.diff_id, tee.size


def build_config(diff_ids: list[str], changes: list[str], *, comment: str, platform: dict[str, str],
                 created_by: str = "pystack image import") -> dict[str, Any]:
    from .store import _now
    created = _now()
    config: dict[str, Any] = {
        "created": created, "architecture": platform["architecture"], "os": platform["os"],
        "config": apply_changes({}, changes),
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": created, "created_by": created_by, **({"comment": comment} if comment else {})}],
    }
    if platform.get("variant"):
        config["variant"] = platform["variant"]
    return config


def make_manifest(config_bytes: bytes, layers: list[dict[str, Any]]) -> bytes:
    return mt.canonical_json({
        "schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": mt.OCI_CONFIG, "digest": mt.digest_of(config_bytes), "size": len(config_bytes)},
        "layers": layers,
    })


def import_rootfs(store: "ImageStore", src: Path, ref: str | None, changes: list[str], *,
                  message: str = "", platform: str | None = None) -> "Image":
    from .reference import parse
    target = parse(ref) if ref else None
    if target is not None and target.digest:
        raise UserError(f"cannot import to a digest reference: {ref}")
    try:
        st = os.stat(src)
    except FileNotFoundError:
        raise UserError(f"import: {src}: no such file or directory") from None
    plat = mt.parse_platform(platform)
    config_section = apply_changes({}, changes)  # validate before any work
    del config_section
    try:
        return _import(store, src, st, target, ref, changes, message, plat)
    except Exception:
        store.gc(wait=False)  # the layer blob of a failed import is not an image
        raise


def _import(store: "ImageStore", src: Path, st: os.stat_result, target, ref: str | None, changes: list[str],
            message: str, plat: dict[str, str]) -> "Image":
    with store.adding():
        with store.blobs.writer() as w:
            if stat.S_ISDIR(st.st_mode):
                diff_id, _ = write_layer_from_dir(src, w)  # type: ignore[arg-type]
            else:
                try:
                    diff_id, _ = write_layer_from_tarball(src, w)  # type: ignore[arg-type]
                except (OSError, EOFError, ValueError) as exc:
                    raise UserError(f"import: {src}: cannot read tarball: {exc}") from None
            size = w.size
            layer_digest = w.commit()
        config = build_config([diff_id], changes, comment=message or f"Imported from {src}", platform=plat)
        config_bytes = mt.canonical_json(config)
        store.blobs.put(config_bytes)
        manifest = make_manifest(config_bytes, [{"mediaType": mt.OCI_LAYER_GZIP, "digest": layer_digest,
                                                 "size": size}])
        return store.register(manifest, tags=[target] if target else [],
                              label=f"import {ref or src}")
