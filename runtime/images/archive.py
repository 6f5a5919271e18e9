"""``image load`` / ``image save``: Docker ``save`` archives and OCI archives/layouts.

Save writes what Docker 25+ writes: an OCI image layout (``oci-layout``, ``index.json``,
``blobs/sha256/...``) plus Docker's ``manifest.json``, so ``docker load``, ``skopeo``
(``docker-archive:`` and ``oci-archive:``) and ``umoci`` all read it.

Load reads either form (and older Docker archives with ``<id>/layer.tar`` entries, which
may be symlinks to each other), from a tar file (plain or compressed) or an OCI layout
directory. Archive members are only ever *read* by name; nothing is extracted, so the
archive itself cannot write anywhere; the layers then go through the safe unpacker.
"""
from __future__ import annotations

import json
import os
import posixpath
import tarfile
import uuid
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO

from pystack.errors import UserError

from . import manifest as mt
from .errors import ArchiveError
from .layers import Limits, PeekReader, decompressed, detect_compression
from .reference import parse

if TYPE_CHECKING:
    from .store import Image, ImageStore


class _Source:
    """Read-only access to files of an archive (tar) or layout (dir) by relative name."""

    def __init__(self, path: Path, tmp: Path) -> None:
        self.path = path
        self.tar: tarfile.TarFile | None = None
        self.members: dict[str, tarfile.TarInfo] = {}
        self._tmpfile: Path | None = None
        if path.is_dir():
            return
        with open(path, "rb") as f:
            head = f.read(8)
        if detect_compression(head) != "none":  # random access needs a plain tar
            self._tmpfile = tmp / f"load-{uuid.uuid4().hex}.tar"
            limit = Limits().max_bytes  # a gzip bomb must not fill the disk (CVE-2017-14992)
            try:
                with open(path, "rb") as raw, open(self._tmpfile, "wb") as out:
                    h = raw.read(8)
                    stream = decompressed(PeekReader(raw, h), h)  # type: ignore[arg-type]
                    total = 0
                    while chunk := stream.read(1 << 20):
                        total += len(chunk)
                        if total > limit:
                            raise ArchiveError(f"{self.path}: larger than {limit} bytes uncompressed")
                        out.write(chunk)
            except (OSError, EOFError) as exc:
                self._tmpfile.unlink(missing_ok=True)
                raise ArchiveError(f"{self.path}: corrupt compressed archive: {exc}") from None
            except BaseException:
                self._tmpfile.unlink(missing_ok=True)
                raise
            path = self._tmpfile
        try:
            self.tar = tarfile.open(path, "r:")
        except tarfile.TarError as exc:
            raise ArchiveError(f"{self.path}: not an image archive: {exc}") from None
        for m in self.tar.getmembers():
            self.members[posixpath.normpath(m.name.lstrip("/"))] = m

    def close(self) -> None:
        if self.tar is not None:
            self.tar.close()
        if self._tmpfile is not None:
            self._tmpfile.unlink(missing_ok=True)

    def exists(self, name: str) -> bool:
        name = posixpath.normpath(name)
        if self.tar is None:
            return self._dir_path(name).is_file()
        return name in self.members

    def _dir_path(self, name: str) -> Path:
        parts = [p for p in name.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise ArchiveError(f"archive path {name!r} leaves the archive")
        p = self.path.joinpath(*parts)
        real = p.resolve()
        if not str(real).startswith(str(self.path.resolve()) + os.sep):
            raise ArchiveError(f"archive path {name!r} leaves the layout directory")
        return real

    def open(self, name: str) -> IO[bytes]:
        name = posixpath.normpath(name)
        if self.tar is None:
            try:
                return open(self._dir_path(name), "rb")
            except FileNotFoundError:
                raise ArchiveError(f"{self.path}: {name} is missing") from None
        for _ in range(16):  # follow symlinks between members, lexically, inside the archive
            m = self.members.get(name)
            if m is None:
                raise ArchiveError(f"{self.path}: {name} is missing from the archive")
            if m.issym() or m.islnk():
                base = posixpath.dirname(name) if m.issym() else ""
                name = posixpath.normpath(posixpath.join(base, m.linkname))
                if name.startswith(".."):
                    raise ArchiveError(f"{self.path}: link {m.name} leaves the archive")
                continue
            if not m.isreg():
                raise ArchiveError(f"{self.path}: {name} is not a regular file")
            f = self.tar.extractfile(m)
            assert f is not None
            return f
        raise ArchiveError(f"{self.path}: too many links at {name}")

    def read(self, name: str, limit: int = mt.MAX_MANIFEST) -> bytes:
        with self.open(name) as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise ArchiveError(f"{self.path}: {name} is too large")
        return data

    def json(self, name: str) -> Any:
        try:
            return json.loads(self.read(name))
        except ValueError as exc:
            raise ArchiveError(f"{self.path}: {name} is not valid JSON: {exc}") from None


def _blob_name(digest: str) -> str:
    algo, _, hexpart = digest.partition(":")
    return f"blobs/{algo}/{hexpart}"


def load(store: "ImageStore", path: Path, progress: Any = None) -> list["Image"]:
    """Load every image of the archive/layout; all or nothing per image."""
    if not path.exists():
        raise UserError(f"open {path}: no such file or directory")
    try:
        src = _Source(path, store.blobs.tmp)
    except OSError as exc:
        raise ArchiveError(f"open {path}: {exc.strerror or exc}") from None
    try:
        with store.adding():
            try:
                if src.exists("manifest.json"):
                    return _load_docker(store, src)
                if src.exists("index.json"):
                    return _load_oci(store, src)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:  # malformed JSON documents
                raise ArchiveError(f"{path}: malformed image archive: {type(exc).__name__}: {exc}") from None
            raise ArchiveError(f"{path}: neither a docker save archive (manifest.json) "
                               "nor an OCI layout (index.json)")
    except BaseException:
        src.close()
        store.gc(wait=False)  # drop blobs of an image that did not make it
        raise
    finally:
        src.close()


def _copy_blob(store: "ImageStore", src: _Source, name: str, expected: str | None = None,
               expected_size: int | None = None) -> tuple[str, int, bytes]:
    """Copy one archive member into the blob store; returns (digest, size, first bytes)."""
    with src.open(name) as f:
        head = f.read(8)
        with store.blobs.writer(expected=expected, expected_size=expected_size) as w:
            w.write(head)
            while chunk := f.read(1 << 20):
                w.write(chunk)
            size = w.size
            return w.commit(), size, head


def _load_docker(store: "ImageStore", src: _Source) -> list["Image"]:
    entries = src.json("manifest.json")
    if not isinstance(entries, list):
        raise ArchiveError(f"{src.path}: manifest.json is not a list")
    images = []
    for entry in entries:
        tags = entry.get("RepoTags") or []
        label = f"image {tags[0] if tags else entry.get('Config', '?')}"
        config_bytes = src.read(entry["Config"])
        config_digest = store.blobs.put(config_bytes)
        layers = []
        for name in entry.get("Layers", []):
            digest, size, head = _copy_blob(store, src, name)
            kind = detect_compression(head)
            media = {"gzip": mt.OCI_LAYER_GZIP, "zstd": mt.OCI_LAYER_ZSTD, "none": mt.OCI_LAYER}.get(kind)
            if media is None:
                raise ArchiveError(f"{label}: layer {name} uses {kind}, which registries do not accept")
            layers.append({"mediaType": media, "digest": digest, "size": size})
        manifest = mt.canonical_json({
            "schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
            "config": {"mediaType": mt.OCI_CONFIG, "digest": config_digest, "size": len(config_bytes)},
            "layers": layers})
        images.append(store.register(manifest, tags=tags, label=label))
    return images


def _load_oci(store: "ImageStore", src: _Source) -> list["Image"]:
    index = src.json("index.json")
    images = []
    for desc in index.get("manifests", []):
        ann = desc.get("annotations") or {}
        name = ann.get("io.containerd.image.name") or ann.get("org.opencontainers.image.ref.name")
        tags = []
        if name:
            try:
                tags = [parse(name)]
            except UserError:
                tags = []  # a bare tag ("latest") without a name: load untagged, like docker
        label = f"image {name or desc.get('digest')}"
        images.append(_load_oci_descriptor(store, src, desc, tags, label))
    return images


def _load_oci_descriptor(store: "ImageStore", src: _Source, desc: dict[str, Any], tags: list,
                         label: str) -> "Image":
    data = src.read(_blob_name(desc["digest"]))
    if mt.digest_of(data) != desc["digest"]:
        raise ArchiveError(f"{label}: manifest digest mismatch")
    doc = json.loads(data)
    kind = mt.media_type_of(doc, desc.get("mediaType"))
    if kind in mt.INDEX_TYPES:
        chosen = mt.select_platform(doc, mt.host_platform())
        return _load_oci_descriptor(store, src, chosen, tags, label)
    for d in (doc["config"], *doc["layers"]):
        if not store.blobs.exists(d["digest"]):
            _copy_blob(store, src, _blob_name(d["digest"]), d["digest"], d.get("size"))
    return store.register(data, tags=tags, label=label)


def save(store: "ImageStore", refs: list[str], out: Path | None, stream: BinaryIO | None = None) -> None:
    """Write the images of ``refs`` as one archive (atomically when ``out`` is a path)."""
    images = []
    for ref in refs:
        img = store.resolve(ref)
        tags = img.repo_tags  # saved by id or digest: every tag, as docker save does
        try:
            named = parse(ref)
            if not named.digest and named.familiar() in img.repo_tags:
                tags = [named.familiar()]  # saved by tag: that tag only
        except UserError:
            pass
        images.append((img, tags))
    tmp = None
    if stream is None:
        assert out is not None
        tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            fobj: BinaryIO = open(tmp, "wb")
        except OSError as exc:
            raise UserError(f"save: cannot write {out}: {exc.strerror}") from None
    else:
        fobj = stream
    try:
        with tarfile.open(fileobj=fobj, mode="w|", format=tarfile.PAX_FORMAT) as tf:  # type: ignore[call-overload]
            written: set[str] = set()

            def add_bytes(name: str, data: bytes) -> None:
                ti = tarfile.TarInfo(name)
                ti.size, ti.mode, ti.mtime = len(data), 0o644, 0
                import io
                tf.addfile(ti, io.BytesIO(data))

            def add_blob(digest: str) -> None:
                if digest in written:
                    return
                written.add(digest)
                path = store.blobs.path(digest)
                ti = tf.gettarinfo(str(path), arcname=_blob_name(digest))
                ti.uid = ti.gid = 0
                ti.uname = ti.gname = ""
                ti.mtime = 0
                with open(path, "rb") as f:
                    tf.addfile(ti, f)

            add_bytes("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
            index, docker_manifest = [], []
            for img, tags in images:
                rec = store.record(img.id)
                for blob in (rec["manifest"], img.id, *(l["digest"] for l in rec["layers"])):
                    add_blob(blob)
                msize = store.blobs.size(rec["manifest"])
                for t in tags or [None]:
                    d = {"mediaType": mt.OCI_MANIFEST, "digest": rec["manifest"], "size": msize}
                    if t:
                        full = parse(t)
                        d["annotations"] = {"io.containerd.image.name": str(full),
                                            "org.opencontainers.image.ref.name": full.tag or "latest"}
                    index.append(d)
                docker_manifest.append({"Config": _blob_name(img.id), "RepoTags": tags,
                                        "Layers": [_blob_name(l["digest"]) for l in rec["layers"]]})
            add_bytes("index.json", mt.canonical_json({"schemaVersion": 2, "mediaType": mt.OCI_INDEX,
                                                       "manifests": index}))
            add_bytes("manifest.json", json.dumps(docker_manifest).encode())
        if tmp is not None:
            fobj.close()
            assert out is not None
            os.replace(tmp, out)
    except BaseException:
        if tmp is not None:
            fobj.close()
            tmp.unlink(missing_ok=True)
        raise
