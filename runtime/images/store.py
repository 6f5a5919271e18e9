"""``ImageStore``: images by reference and id over content-addressed blobs and layer dirs.

Layout under ``root`` (OCI image-layout in spirit)::

    blobs/sha256/<hex>        manifests, configs, compressed layers (verified on write)
    layers/<chain-id hex>/    diff/ (the unpacked layer) + layer.json; one per ChainID,
                              shared by every image using it; created by rename from .tmp-*
    images/<id hex>.json      image record: manifest digest, layers, repo digests
    refs.json                 {"docker.io/library/busybox:latest": "sha256:<id>"}
    lock, gc.lock, tmp/

Why: an image id is its config digest (as in Docker), so importing, loading or pulling
the same image twice yields one record; a layer is keyed by ChainID so that the same
diff on top of different parents is not confused. Metadata changes happen under an
exclusive ``flock`` on ``lock`` and are written temp-then-rename; operations that add
blobs hold ``gc.lock`` shared so a concurrent ``prune`` cannot delete them mid-way.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator

from pystack.errors import Conflict, UserError

from . import manifest as mt
from .blobs import BlobStore
from .errors import ImageNotFound, LayerError
from .layers import Limits, unpack_file
from .reference import Reference, parse


@dataclass
class Image:
    """An image in the store; ``config`` is the whole OCI image config document."""

    id: str
    repo_tags: list[str]
    repo_digests: list[str]
    config: dict[str, Any]
    size: int
    created: str
    manifest_digest: str = ""
    layers: list[dict[str, Any]] = field(default_factory=list)  # descriptors + diff_id, chain_id

    @property
    def short_id(self) -> str:
        return self.id.split(":", 1)[1][:12]

    @property
    def container_config(self) -> dict[str, Any]:
        """The ``config`` section: Env, Cmd, Entrypoint, WorkingDir, User, ExposedPorts..."""
        return self.config.get("config") or {}

    @property
    def platform(self) -> str:
        return mt.format_platform({"os": self.config.get("os", "linux"),
                                   "architecture": self.config.get("architecture", ""),
                                   "variant": self.config.get("variant", "")})


def chain_ids(diff_ids: list[str]) -> list[str]:
    """ChainID(L0)=DiffID(L0); ChainID(L0..n)=sha256(ChainID(L0..n-1) + " " + DiffID(n))."""
    out: list[str] = []
    for d in diff_ids:
        if not isinstance(d, str) or not _DIGEST_RE.match(d):  # names a directory: never trust it
            raise LayerError(f"malformed diff_id {d!r} in image config")
        out.append(d if not out else mt.digest_of(f"{out[-1]} {d}".encode()))
    return out


_DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")


_FS_IOC_GETFLAGS, _FS_IOC_SETFLAGS, _FS_TOPDIR_FL = 0x80086601, 0x40086602, 0x00020000


def spread_subdirs(path: Path) -> None:
    """Mark ``path`` as a top of directory hierarchies (ext4's ``chattr +T``), so that each
    new layer dir below it is placed by the Orlov allocator in a block group with many free
    inodes, and the layer's files and dirs follow it there.

    Why: without it a layer lands in the (busy) group of its parent, and ext4 without a
    journal (as on this VM) skips every inode freed in the last minutes there, reading its
    inode-table block each time: after a few thousand deletions nearby each new file cost
    ~100-250 us of CPU, ~0.1 s of a 500-file pull (``__ext4_new_inode`` ->
    ``recently_deleted`` in perf), and with the flag ~7 us. An allocation hint only;
    file systems without it (tmpfs, overlayfs, xfs) refuse the ioctl, which is ignored.
    """
    import fcntl
    import struct
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return
    try:
        buf = bytearray(4)  # an int, as chattr passes it (the kernel reads an int, not a long)
        fcntl.ioctl(fd, _FS_IOC_GETFLAGS, buf)
        flags = struct.unpack("i", buf)[0]
        if not flags & _FS_TOPDIR_FL:
            fcntl.ioctl(fd, _FS_IOC_SETFLAGS, struct.pack("i", flags | _FS_TOPDIR_FL))
    except OSError:
        pass
    finally:
        os.close(fd)


def _now() -> str:
    """RFC 3339 with Go's RFC3339Nano trimming (``.15685Z``, not ``.156850Z``).

    Go tools (skopeo, docker) re-serialise configs when converting; writing the time as
    they would keeps the config's bytes, and so the image id, the same across tools.
    """
    text = datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "")
    head, _, frac = text.partition(".")
    frac = frac.rstrip("0")
    return f"{head}.{frac}Z" if frac else f"{head}Z"


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


class ImageStore:
    """The image store; see the module docstring and docs/contracts.md."""

    def __init__(self, root: Path | str, *, limits: Limits | None = None) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)  # CVE-2021-41091: setuid files in layers stay unreachable
        self.blobs = BlobStore(self.root)
        self.layers_dir = self.root / "layers"
        self.images_dir = self.root / "images"
        self.layers_dir.mkdir(exist_ok=True)
        spread_subdirs(self.layers_dir)
        self.images_dir.mkdir(exist_ok=True)
        self.refs_path = self.root / "refs.json"
        self.limits = limits or Limits()

    # -- locking -------------------------------------------------------------------------
    @contextlib.contextmanager
    def _flock(self, name: str, kind: int) -> Iterator[None]:
        fd = os.open(self.root / name, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, kind)
            yield
        finally:
            os.close(fd)

    def locked(self) -> contextlib.AbstractContextManager[None]:
        """Exclusive lock for metadata changes (refs, image records)."""
        return self._flock("lock", fcntl.LOCK_EX)

    def adding(self) -> contextlib.AbstractContextManager[None]:
        """Held while blobs/layers are added but not yet referenced: prune waits."""
        return self._flock("gc.lock", fcntl.LOCK_SH)

    # -- records ---------------------------------------------------------------------------
    def _refs(self) -> dict[str, str]:
        try:
            return json.loads(self.refs_path.read_text())
        except FileNotFoundError:
            return {}

    def _record_path(self, image_id: str) -> Path:
        return self.images_dir / f"{image_id.split(':', 1)[1]}.json"

    def _record(self, image_id: str) -> dict[str, Any] | None:
        try:
            return json.loads(self._record_path(image_id).read_text())
        except FileNotFoundError:
            return None

    def _records(self) -> dict[str, dict[str, Any]]:
        out = {}
        for p in self.images_dir.glob("*.json"):
            try:
                rec = json.loads(p.read_text())
            except (OSError, ValueError):
                continue
            out[rec["id"]] = rec
        return out

    def _image(self, rec: dict[str, Any], refs: dict[str, str] | None = None) -> Image:
        refs = self._refs() if refs is None else refs
        tags = sorted(parse(r).familiar() for r, i in refs.items() if i == rec["id"])
        config = json.loads(self.blobs.read(rec["id"]))
        return Image(id=rec["id"], repo_tags=tags,
                     repo_digests=sorted(parse(d).familiar() for d in rec.get("repo_digests", [])),
                     config=config, size=sum(l.get("unpacked_size", 0) for l in rec["layers"]),
                     created=config.get("created") or rec.get("created", ""),
                     manifest_digest=rec["manifest"], layers=rec["layers"])

    # -- queries ---------------------------------------------------------------------------
    def list(self) -> list[Image]:
        """All images, newest first (as ``docker images``)."""
        refs = self._refs()
        images = [self._image(r, refs) for r in self._records().values()]
        return sorted(images, key=lambda i: i.created, reverse=True)

    def resolve(self, ref_or_id: str) -> Image:
        """By full/short id, ``name[:tag]`` or ``name@digest``; NotFound names the reference."""
        image_id = self._resolve_id(ref_or_id)
        rec = self._record(image_id)
        if rec is None:
            raise ImageNotFound(f"No such image: {ref_or_id}")
        return self._image(rec)

    def exists(self, ref_or_id: str) -> bool:
        try:
            self._resolve_id(ref_or_id)
            return True
        except (ImageNotFound, UserError):
            return False

    def _resolve_id(self, text: str) -> str:
        hexpart = text.removeprefix("sha256:")
        if all(c in "0123456789abcdef" for c in hexpart) and hexpart and (
                text.startswith("sha256:") or len(hexpart) >= 4):
            matches = [p.stem for p in self.images_dir.glob(f"{hexpart}*.json")]
            if len(matches) == 1:
                return f"sha256:{matches[0]}"
            if len(matches) > 1:
                raise UserError(f"ambiguous image id prefix {text!r}")
            if text.startswith("sha256:") or len(hexpart) == 64:
                raise ImageNotFound(f"No such image: {text}")
        ref = parse(text)
        if ref.digest:
            key = f"{ref.name}@{ref.digest}"
            for rec in self._records().values():
                if key in rec.get("repo_digests", []):
                    return rec["id"]
            raise ImageNotFound(f"No such image: {text}")
        image_id = self._refs().get(str(ref))
        if image_id is None:
            raise ImageNotFound(f"No such image: {text}")
        return image_id

    # -- layers ----------------------------------------------------------------------------
    def layer_dir(self, chain_id: str) -> Path:
        return self.layers_dir / chain_id.split(":", 1)[1]

    def has_layer(self, chain_id: str) -> bool:
        return (self.layer_dir(chain_id) / "layer.json").exists()

    def unpack_layer(self, desc: dict[str, Any], chain_id: str, label: str) -> dict[str, Any]:
        """Unpack the stored blob of ``desc`` once into layers/<chain> (in this process,
        verifying the DiffID); returns its layer.json. Pulls unpack through
        ``new_layer_tmp``/``publish_layer`` and a pool of helpers instead."""
        final = self.layer_dir(chain_id)
        if (final / "layer.json").exists():
            return json.loads((final / "layer.json").read_text())
        with self.adding():
            tmp = self.new_layer_tmp()
            try:
                result = unpack_file(self.blobs.path(desc["digest"]), tmp / "diff",
                                     expected_diff_id=desc.get("diff_id"),  # blob verified when written
                                     limits=self.limits, label=label)
                return self.publish_layer(tmp, desc, chain_id, result)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise

    def new_layer_tmp(self) -> Path:
        """An empty ``.tmp-*`` layer dir with its ``diff/``: unpacked into, then published
        by rename (gc removes those a killed process left). Call under ``adding()``."""
        tmp = self.layers_dir / f".tmp-{uuid.uuid4().hex}"
        (tmp / "diff").mkdir(parents=True)
        return tmp

    def publish_layer(self, tmp: Path, desc: dict[str, Any], chain_id: str, result: Any) -> dict[str, Any]:
        """Rename the unpacked ``tmp`` into layers/<chain>, once its blob and DiffID are
        verified; if another process got there first, theirs is as good and ``tmp`` goes."""
        final = self.layer_dir(chain_id)
        meta = {"chain_id": chain_id, "diff_id": result.diff_id, "digest": desc["digest"],
                "size": result.size, "entries": result.entries}
        (tmp / "layer.json").write_text(json.dumps(meta))
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / "layer.json").exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
        return meta

    def prepare(self, image: Image | str) -> list[Path]:
        """The unpacked layer dirs of ``image``, topmost first (overlay lowerdir order)."""
        img = self.resolve(image) if isinstance(image, str) else image
        dirs = []
        for desc in img.layers:
            if not self.has_layer(desc["chain_id"]):  # pruned meanwhile: unpack again
                self.unpack_layer(desc, desc["chain_id"], f"image {img.repo_tags[:1] or img.short_id}")
            dirs.append(self.layer_dir(desc["chain_id"]) / "diff")
        return list(reversed(dirs))

    # -- registering -----------------------------------------------------------------------
    def register(self, manifest_bytes: bytes, *, tags: Iterable[str | Reference] = (),
                 repo_digest: str | None = None, label: str = "image") -> Image:
        """Record an image whose manifest, config and layer blobs are all in the store.

        Unpacks missing layers (verifying digests and diff_ids) before anything becomes
        visible, so a failure leaves no image, tag or layer dir behind.
        """
        with self.adding():
            return self._register(manifest_bytes, tags, repo_digest, label)

    def _register(self, manifest_bytes: bytes, tags: Iterable[str | Reference],
                  repo_digest: str | None, label: str) -> Image:
        manifest = json.loads(manifest_bytes)
        manifest_digest = self.blobs.put(manifest_bytes)
        config_digest = manifest["config"]["digest"]
        config = json.loads(self.blobs.read(config_digest))
        diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
        if len(diff_ids) != len(manifest["layers"]):
            raise LayerError(f"{label}: the config lists {len(diff_ids)} diff_ids for "
                             f"{len(manifest['layers'])} layers")
        layers = []
        for n, (desc, diff_id, chain) in enumerate(zip(manifest["layers"], diff_ids, chain_ids(diff_ids))):
            d = {"mediaType": desc.get("mediaType", mt.OCI_LAYER_GZIP), "digest": desc["digest"],
                 "size": desc.get("size"), "diff_id": diff_id, "chain_id": chain}
            meta = self.unpack_layer(d, chain, f"{label} layer {n + 1}/{len(diff_ids)} ({desc['digest'][:19]})")
            d["unpacked_size"] = meta["size"]
            layers.append(d)
        with self.locked():
            rec = self._record(config_digest) or {"id": config_digest, "repo_digests": [],
                                                 "created": _now(), "sources": []}
            if not self.blobs.exists(manifest_digest):  # a concurrent gc won: refuse, retry
                raise UserError(f"{label}: store changed during the operation, retry")
            rec["manifest"] = manifest_digest
            rec["layers"] = layers
            if repo_digest and repo_digest not in rec["repo_digests"]:
                rec["repo_digests"].append(repo_digest)
            _write_json(self._record_path(config_digest), rec)
            refs = self._refs()
            for t in tags:
                refs[str(t if isinstance(t, Reference) else parse(t))] = config_digest
            _write_json(self.refs_path, refs)
        return self.resolve(config_digest)

    def add_source(self, image_id: str, repo_name: str) -> None:
        """Remember that a registry repository holds this image's blobs (for blob mounts)."""
        with self.locked():
            rec = self._record(image_id)
            if rec is not None and repo_name not in rec.setdefault("sources", []):
                rec["sources"].append(repo_name)
                _write_json(self._record_path(image_id), rec)

    def add_repo_digest(self, image_id: str, repo_digest: str) -> None:
        with self.locked():
            rec = self._record(image_id)
            if rec is not None and repo_digest not in rec["repo_digests"]:
                rec["repo_digests"].append(repo_digest)
                _write_json(self._record_path(image_id), rec)

    def record(self, image_id: str) -> dict[str, Any]:
        rec = self._record(image_id)
        if rec is None:
            raise ImageNotFound(f"No such image: {image_id}")
        return rec

    # -- user operations ---------------------------------------------------------------------
    def import_rootfs(self, src: Path | str, ref: str | None = None, changes: Iterable[str] = (),
                      *, message: str = "", platform: str | None = None) -> Image:
        """Make a one-layer image of a directory or tarball, like ``docker import``."""
        from .imports import import_rootfs
        return import_rootfs(self, Path(src), ref, list(changes), message=message, platform=platform)

    def tag(self, src: str, ref: str) -> None:
        image_id = self._resolve_id(src)
        target = parse(ref)
        if target.digest:
            raise UserError(f"refusing to create a tag with a digest reference: {ref}")
        with self.locked():
            refs = self._refs()
            refs[str(target)] = image_id
            _write_json(self.refs_path, refs)

    def remove(self, ref: str, force: bool = False) -> list[dict[str, str]]:
        """Untag, and delete the image when nothing names it any more (``docker rmi``)."""
        image_id = self._resolve_id(ref)
        out: list[dict[str, str]] = []
        with self.locked():
            refs = self._refs()
            rec = self._record(image_id)
            tags = [r for r, i in refs.items() if i == image_id]
            by_name = None
            try:
                parsed = parse(ref)
                if str(parsed) in refs or parsed.digest:
                    by_name = parsed
            except UserError:
                pass
            if by_name is not None and not by_name.digest and (len(tags) > 1):
                del refs[str(by_name)]
                _write_json(self.refs_path, refs)
                return [{"Untagged": by_name.familiar()}]
            if by_name is None and len(tags) > 1 and not force:
                raise Conflict(f"conflict: unable to delete {ref} (must be forced) - image is "
                               f"referenced in multiple repositories")
            for t in tags:
                del refs[t]
                out.append({"Untagged": parse(t).familiar()})
            for d in (rec or {}).get("repo_digests", []):
                out.append({"Untagged": parse(d).familiar()})
            _write_json(self.refs_path, refs)
            self._record_path(image_id).unlink(missing_ok=True)
            out.append({"Deleted": image_id})
        self.gc()
        return out

    def prune(self, all: bool = False, keep: Iterable[str] = ()) -> dict[str, Any]:
        """Delete dangling images (all unused with ``all``), then unreferenced layers/blobs."""
        keep = set(keep)
        deleted: list[dict[str, str]] = []
        with self.locked():
            refs = self._refs()
            tagged = set(refs.values())
            for image_id in list(self._records()):
                if image_id in keep or (image_id in tagged and not all):
                    continue
                for r in [r for r, i in refs.items() if i == image_id]:
                    del refs[r]
                    deleted.append({"Untagged": parse(r).familiar()})
                self._record_path(image_id).unlink(missing_ok=True)
                deleted.append({"Deleted": image_id})
            _write_json(self.refs_path, refs)
        reclaimed = self.gc()
        return {"ImagesDeleted": deleted or None, "SpaceReclaimed": reclaimed}

    def gc(self, wait: bool = True) -> int:
        """Remove layer dirs and blobs no image references; returns bytes reclaimed.

        ``wait=False`` (cleanup after a failed operation) gives up at once when another
        process is adding content: its blobs would look unreferenced; a later prune collects.
        """
        reclaimed = 0
        try:
            gc_lock = self._flock("gc.lock", fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            gc_lock.__enter__()
        except BlockingIOError:
            return 0
        try:
            with self.locked():
                reclaimed = self._collect()
        finally:
            gc_lock.__exit__(None, None, None)
        return reclaimed

    def _collect(self) -> int:
        """Under both locks: delete what no image record references."""
        import time
        reclaimed = 0
        records = self._records().values()
        live_chains = {l["chain_id"].split(":", 1)[1] for r in records for l in r["layers"]}
        live_blobs = {b for r in records for b in (r["id"], r["manifest"], *(l["digest"] for l in r["layers"]))}
        for d in self.layers_dir.iterdir():
            if d.name not in live_chains:
                try:
                    reclaimed += json.loads((d / "layer.json").read_text()).get("size", 0)
                except (OSError, ValueError):
                    pass
                shutil.rmtree(d, ignore_errors=True)
        for digest in list(self.blobs.all()):
            if digest not in live_blobs:
                reclaimed += self.blobs.size(digest)
                self.blobs.delete(digest)
        for f in self.blobs.tmp.iterdir():
            # partial downloads are kept for a resume, but not for ever; no puller runs
            # beside gc, so their lock files can go
            if not f.name.startswith("partial-") or f.name.endswith(".lock") or \
                    f.stat().st_mtime < time.time() - 86400:
                f.unlink(missing_ok=True)
        return reclaimed

    def pull(self, ref: str, platform: str | None = None, progress: Any = None, **kw: Any) -> Image:
        from .pull import pull
        return pull(self, ref, platform=platform, progress=progress, **kw)

    def push(self, ref: str, progress: Any = None, **kw: Any) -> str:
        from .push import push
        return push(self, ref, progress=progress, **kw)

    def load(self, archive: Path | str, progress: Any = None) -> list[Image]:
        from .archive import load
        return load(self, Path(archive), progress=progress)

    def save(self, refs: list[str], out: Path | str) -> None:
        from .archive import save
        save(self, refs, Path(out))
