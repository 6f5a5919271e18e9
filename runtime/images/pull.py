"""``pull``: resolve a reference on its registry (or a mirror), fetch and unpack.

Order of work, so that nothing partial becomes visible: manifest (by tag, then the
platform's manifest by digest), config, then every layer in parallel — download
(resuming a partial one with ``Range``), verify digest, unpack once per ChainID
(verifying the DiffID) — and only then the image record and tag. Layers already
unpacked and blobs already present are skipped.

Each byte of a layer is received, hashed and written once (into the blob's partial
file, kept for save/push and resumes); the layer's unpacker (a helper process of the
process-wide pool, ``unpacker``) reads that file back from the page cache while it
grows (``feed``), hashes the uncompressed stream for the DiffID and applies it to a temp
layer dir, which is renamed into place once both digests check out (see ``_Pull``).
"""
from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from . import manifest as mt
from .errors import DigestMismatch, ImageNotFound, RegistryError, RegistryUnreachable
from .progress import Progress
from .reference import Reference, parse
from .registry import RegistryClient, socket_error_types

if TYPE_CHECKING:
    from .layerpull import _Layer, _Pull
    from .store import Image, ImageStore

WORKERS = int(os.environ.get("PYSTACK_PULL_WORKERS", "4"))  # blob downloads at once
RETRIES = 5
# unpack while downloading (one pass over the bytes); PYSTACK_PULL_STREAM=0 downloads first
STREAM = os.environ.get("PYSTACK_PULL_STREAM", "1") != "0"
# unpack in helper processes (parallel across cores); PYSTACK_UNPACK_HELPER=0 uses threads
HELPER = os.environ.get("PYSTACK_UNPACK_HELPER", "1") != "0"
HELPER_MIN = 4 << 20  # smaller layers unpack in their own thread: not worth a helper's start


def endpoints(ref: Reference) -> list[tuple[RegistryClient, bool]]:
    """Mirrors first (with the registry's credentials only if the mirror is that host)."""
    from .config import load_config
    conf = load_config()
    out = []
    for url in conf.mirrors_for(ref.registry):
        host = url.split("://", 1)[-1].rstrip("/")
        if url.startswith("http://") and host not in conf.insecure:
            conf.insecure.append(host)
        out.append((RegistryClient(host, config=conf), True))
    out.append((RegistryClient(ref.api_host, config=conf, auth_host=ref.registry), False))
    return out


def pull(store: "ImageStore", text: str, *, platform: str | None = None,
         progress: Progress | None = None) -> "Image":
    ref = parse(text)
    progress = progress or Progress()
    want = mt.parse_platform(platform)
    last_exc: Exception | None = None
    for client, is_mirror in endpoints(ref):
        try:
            try:
                return _pull_from(store, client, ref, want, progress, explicit=platform is not None)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:  # a malformed document
                raise RegistryError(f"image {ref.familiar()}: malformed manifest or config from "
                                    f"{client.host}: {type(exc).__name__}: {exc}") from None
        except (RegistryUnreachable, ImageNotFound, RegistryError) as exc:
            if not is_mirror or isinstance(exc, DigestMismatch):
                raise
            last_exc = exc  # a mirror that fails is skipped, as Docker does
    raise last_exc or RegistryError(f"cannot pull {text}")


def _pull_from(store: "ImageStore", client: RegistryClient, ref: Reference, want: dict[str, str],
               progress: Progress, explicit: bool = False) -> "Image":
    repo = ref.repository
    label = f"image {ref.familiar()}"
    progress.message(f"{ref.tag or ref.digest}: Pulling from {ref.familiar_name}")
    try:
        with store.adding():
            data, media, top_digest = client.get_manifest(repo, ref.digest or ref.tag or "latest")
            if media in mt.INDEX_TYPES:
                chosen = mt.select_platform(json.loads(data), want)
                data, media, _ = client.get_manifest(repo, chosen["digest"])
                if media in mt.INDEX_TYPES:
                    raise RegistryError(f"{label}: nested image indexes are not supported")
            doc = json.loads(data)
            for d in doc.get("layers", []):
                if d.get("mediaType") not in mt.LAYER_TYPES:
                    raise RegistryError(f"{label}: unsupported layer media type {d.get('mediaType')}")
                if d.get("urls"):
                    d.pop("urls")  # foreign URLs are never fetched (ContainerDrip)
            cfg = doc["config"]
            if not store.blobs.exists(cfg["digest"]):
                _download(store, client, repo, cfg, Progress())
            config = json.loads(store.blobs.read(cfg["digest"]))
            if explicit and media in mt.MANIFEST_TYPES and (
                    config.get("os") != want["os"] or config.get("architecture") != want["architecture"]):
                from .errors import NoMatchingPlatform
                actual = mt.format_platform({"os": config.get("os", "?"), "architecture": config.get("architecture", "?"),
                                             "variant": config.get("variant", "")})
                raise NoMatchingPlatform(f"image with reference {ref.familiar()} was found but does not match the "
                                         f"specified platform: wanted {mt.format_platform(want)}, actual: {actual}")
            diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
            from .store import chain_ids
            chains = chain_ids(diff_ids)
            if len(chains) != len(doc["layers"]):
                raise RegistryError(f"{label}: config and manifest disagree on the number of layers")

            from .layerpull import pull_layers
            pull_layers(store, client, repo, doc["layers"], diff_ids, chains, label, progress)
            store.blobs.put(data)
            try:
                was_there = store.resolve(str(ref)).id == cfg["digest"]
            except ImageNotFound:
                was_there = False
            image = store.register(data, tags=[ref] if ref.tag and not ref.digest else [],
                                   repo_digest=f"{ref.name}@{top_digest}", label=label)
    except Exception:
        store.gc(wait=False)  # verified blobs of a failed pull are not an image: drop them
        raise
    store.add_source(image.id, repo)
    progress.message(f"Digest: {top_digest}")
    if was_there:
        progress.message(f"Status: Image is up to date for {ref.familiar()}")
    else:
        progress.message(f"Status: Downloaded newer image for {ref.familiar()}")
    return image


def _download(store: "ImageStore", client: RegistryClient, repo: str, desc: dict[str, Any],
              progress: Progress) -> None:
    """Download one blob to the store, resuming a partial download with Range."""
    import fcntl
    digest = desc["digest"]
    lock_fd = os.open(f"{store.blobs.partial_path(digest)}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)  # one downloader per blob across processes
        if not store.blobs.exists(digest):
            _download_locked(store, client, repo, desc, progress)
    finally:
        os.close(lock_fd)


def _download_locked(store: "ImageStore", client: RegistryClient, repo: str, desc: dict[str, Any],
                     progress: Progress, layer: "_Layer | None" = None, pull: "_Pull | None" = None) -> None:
    """Download, verify and commit one blob; with ``layer``, its unpacker reads the partial
    file as it grows (told through the layer's feed after every write)."""
    digest, size = desc["digest"], desc.get("size")
    partial = store.blobs.partial_path(digest)
    writer = store.blobs.writer(expected=digest, expected_size=size, path=partial, resume=True)
    feed = None
    if layer is not None and pull is not None:
        pull.start_stream(layer, partial)
        feed = layer.feed
    failures = 0
    try:
        while True:
            offset = writer.size
            if size is not None and offset == size:
                break
            resp = client.get_blob(repo, digest, offset)
            try:
                if resp.status == 200 and offset:
                    writer.abort()  # the server ignored Range: start over
                    writer = store.blobs.writer(expected=digest, expected_size=size, path=partial)
                    if feed is not None and layer is not None and pull is not None:
                        pull.stop_stream(layer)  # its reader has the old file
                        feed = None
                elif resp.status == 206:
                    start = (resp.header("Content-Range") or "").removeprefix("bytes ").split("-")[0]
                    if start != str(offset):
                        raise RegistryError(f"blob {digest}: server resumed at {start}, not {offset}")
                while True:
                    chunk = resp.read_some(1 << 20)
                    if not chunk:
                        break
                    writer.write(chunk)
                    if feed is not None:
                        writer.file.flush()
                        feed.more()
                    if pull is not None and pull.failed.is_set():
                        from .feed import Aborted
                        raise Aborted("another layer failed")
                    progress.layer(digest, "Downloading", writer.size, size)
                if size is None or writer.size == size:
                    break
                raise ConnectionError("connection closed early")
            except DigestMismatch:
                raise
            except socket_error_types() as exc:
                failures += 1
                if failures > RETRIES:
                    raise RegistryUnreachable(f"download of {digest} failed: {exc}") from None
                writer.file.flush()
            finally:
                resp.close()
        if feed is not None:
            writer.file.flush()
            feed.done()  # the unpacker reads the rest while the blob is fsynced and verified
        writer.commit()
    except DigestMismatch:
        if feed is not None:
            feed.abort()
        writer.abort()  # bad bytes are never resumed
        raise
    except BaseException:
        if feed is not None:
            feed.abort()
        writer.abort(keep=True)  # keep what we have for a later resume
        raise
