"""Media types, manifests, image indexes and platform selection (image-spec §3.1, §3.4).

Why one module: the registry client, archive loader and store all need to tell an
index from a manifest, Docker's names from OCI's, and pick this machine's platform.
"""
from __future__ import annotations

import hashlib
import json
import platform as _platform
from typing import Any

from .errors import ArchiveError, NoMatchingPlatform

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
LAYER_TYPES = (OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD, DOCKER_LAYER, DOCKER_LAYER_GZIP,
               "application/vnd.oci.image.layer.nondistributable.v1.tar",
               "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
               "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd", DOCKER_FOREIGN)
ACCEPT = ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST))
MAX_MANIFEST = 4 * 1048 * 1048  # containerd's bound


def canonical_json(obj: Any) -> bytes:
    """The bytes we write for documents we create (stable, so digests are reproducible)."""
    return json.dumps(obj, separators=(",", ":"), sort_keys=False).encode()


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def media_type_of(doc: dict[str, Any], fallback: str | None = None) -> str:
    """A document's media type: its field, else the HTTP Content-Type, else by shape."""
    mt = doc.get("mediaType") or fallback
    if mt in INDEX_TYPES or mt in MANIFEST_TYPES:
        return mt
    if "manifests" in doc:
        return OCI_INDEX
    if "layers" in doc and "config" in doc:
        return OCI_MANIFEST
    if doc.get("schemaVersion") == 1:
        raise ArchiveError("Docker schema 1 manifests are not supported (deprecated)")
    raise ArchiveError(f"unknown manifest media type {mt!r}")


def host_platform() -> dict[str, str]:
    """This machine in GOOS/GOARCH terms (``linux``/``amd64``, ``arm64`` ``v8``...)."""
    machine = _platform.machine().lower()
    arch, variant = {
        "x86_64": ("amd64", ""), "amd64": ("amd64", ""), "aarch64": ("arm64", "v8"),
        "arm64": ("arm64", "v8"), "armv7l": ("arm", "v7"), "armv6l": ("arm", "v6"),
        "i386": ("386", ""), "i686": ("386", ""), "ppc64le": ("ppc64le", ""),
        "s390x": ("s390x", ""), "riscv64": ("riscv64", ""),
    }.get(machine, (machine, ""))
    out = {"os": "linux", "architecture": arch}
    if variant:
        out["variant"] = variant
    return out


def parse_platform(text: str | None) -> dict[str, str]:
    """``linux/arm64/v8`` -> dict; None means this machine."""
    if not text:
        return host_platform()
    parts = text.split("/")
    if len(parts) < 2 or len(parts) > 3 or not all(parts):
        from pystack.errors import UserError
        raise UserError(f"invalid platform {text!r}: expected os/arch[/variant]")
    out = {"os": parts[0], "architecture": parts[1]}
    if len(parts) == 3:
        out["variant"] = parts[2]
    return out


def format_platform(p: dict[str, str]) -> str:
    return "/".join(x for x in (p.get("os"), p.get("architecture"), p.get("variant")) if x)


def _variants_ok(want: dict[str, str], have: dict[str, str]) -> bool:
    """containerd's rule: a machine also runs lower variants (arm v7 runs v6, v5)."""
    arch = want["architecture"]
    wv, hv = want.get("variant", ""), have.get("variant", "")
    if arch == "arm64":
        wv, hv = wv or "v8", hv or "v8"
    if wv == hv or not hv:
        return True
    if not wv:
        return False
    try:
        return int(hv.lstrip("v").split(".")[0]) <= int(wv.lstrip("v").split(".")[0])
    except ValueError:
        return False


def select_platform(index: dict[str, Any], want: dict[str, str]) -> dict[str, Any]:
    """The first index entry for ``want`` (exact variant first, then a lower one).

    Unknown media types (attestations, ...) are skipped, never an error (image-index.md).
    """
    candidates = [d for d in index.get("manifests", [])
                  if d.get("mediaType", OCI_MANIFEST) in MANIFEST_TYPES + INDEX_TYPES]
    exact, compatible = [], []
    for d in candidates:
        p = d.get("platform") or {}
        if p.get("os") != want["os"] or p.get("architecture") != want["architecture"]:
            continue
        if p.get("variant", "") == want.get("variant", "") or (
                want["architecture"] == "arm64" and (p.get("variant") or "v8") == (want.get("variant") or "v8")):
            exact.append(d)
        elif _variants_ok(want, p):
            compatible.append(d)
    chosen = exact or compatible
    if not chosen:
        offered = sorted({format_platform(d.get("platform") or {}) for d in candidates})
        raise NoMatchingPlatform(f"no matching manifest for {format_platform(want)} in the manifest list "
                                 f"entries (available: {', '.join(offered) or 'none'})")
    return chosen[0]
