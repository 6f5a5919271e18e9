"""``pull``: resolve a reference on its registry (or a mirror), fetch and unpack.

Order of work, so that nothing partial becomes visible: manifest (by tag, then the
platform's manifest by digest), config, then every layer in parallel — download
(resuming a partial one with ``Range``), verify digest, unpack once per ChainID
(verifying the DiffID) — and only then the image record and tag. Layers already
unpacked and blobs already present are skipped.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from . import manifest as mt
from .errors import DigestMismatch, ImageNotFound, LayerError, RegistryError, RegistryUnreachable
from .progress import Progress
from .reference import Reference, parse
from .registry import RegistryClient, socket_error_types

if TYPE_CHECKING:
    from .store import Image, ImageStore

WORKERS = int(os.environ.get("PYSTACK_PULL_WORKERS", "4"))
RETRIES = 5
# unpack while downloading (one pass over the bytes); PYSTACK_PULL_STREAM=0 downloads first
STREAM = os.environ.get("PYSTACK_PULL_STREAM", "1") != "0"
# unpack in helper processes (parallel across cores); PYSTACK_UNPACK_HELPER=0 uses threads
HELPER = os.environ.get("PYSTACK_UNPACK_HELPER", "1") != "0"
HELPER_MIN = 4 << 20  # smaller layers unpack in-thread: a helper costs ~0.1 s to start


def _use_helper(desc: dict[str, Any]) -> bool:
    return HELPER and (desc.get("size") or 0) >= HELPER_MIN


class _Broken(Exception):
    """The connection broke while streaming: fall back to a resumed download."""


class _Tee:
    """Reads the blob from the response and copies every byte into the blob writer."""

    def __init__(self, resp: Any, writer: Any, progress: Progress, digest: str, size: int | None) -> None:
        self.resp, self.writer, self.progress, self.digest, self.size = resp, writer, progress, digest, size

    def read(self, n: int = -1) -> bytes:
        try:
            data = self.resp.read_some(n if n > 0 else 1 << 20)
        except socket_error_types() as exc:
            raise _Broken(str(exc)) from None
        if not data and self.size is not None and self.writer.size < self.size:
            raise _Broken("connection closed early")
        self.writer.write(data)
        self.progress.layer(self.digest, "Downloading", self.writer.size, self.size)
        return data


def _stream_layer(store: "ImageStore", client: RegistryClient, repo: str, desc: dict[str, Any], chain: str,
                  label: str, progress: Progress) -> bool:
    """Download and unpack in one pass; False when the caller must use the resumable path."""
    import fcntl
    digest = desc["digest"]
    partial = store.blobs.partial_path(digest)
    lock_fd = os.open(f"{partial}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        if store.blobs.exists(digest) or partial.exists():
            return False  # present now, or a partial to resume: the classic path does it
        resp = client.get_blob(repo, digest)
        writer = store.blobs.writer(expected=digest, expected_size=desc.get("size"), path=partial)
        try:
            tee = _Tee(resp, writer, progress, digest, desc.get("size"))
            if _use_helper(desc):
                def runner(dest: Path) -> Any:
                    from .unpacker import HelperUnpack
                    helper = HelperUnpack(dest, expected_diff_id=desc.get("diff_id"), limits=store.limits, label=label)
                    try:
                        while data := tee.read(1 << 20):
                            helper.write(data)
                    except BaseException:
                        helper.kill()
                        raise
                    return helper.finish()
                store.unpack_layer(desc, chain, label, runner=runner, before_publish=writer.commit)
            else:
                store.unpack_layer(desc, chain, label, stream=tee, before_publish=writer.commit)
        except _Broken:
            writer.abort(keep=True)  # resume from here
            return False
        except LayerError as exc:
            # corrupt in transit, or a bad layer? The rest of the bytes and the digest decide.
            try:
                tee = _Tee(resp, writer, Progress(), digest, desc.get("size"))
                while tee.read(1 << 20):
                    pass
                writer.commit()
            except DigestMismatch as mismatch:
                raise DigestMismatch(f"{label}: {mismatch}") from None
            except (_Broken, RegistryError):
                writer.abort()
                raise exc from None
            store.blobs.delete(digest)  # the blob is what the registry serves, and it is hostile
            raise
        except BaseException:
            writer.abort()
            raise
        finally:
            resp.close()
        return True
    finally:
        os.close(lock_fd)  # lock files are removed by gc, which no puller runs beside


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

            def fetch(i: int) -> None:
                desc, chain = doc["layers"][i], chains[i]
                key = desc["digest"]
                if store.has_layer(chain):
                    progress.layer(key, "Already exists")
                    return
                layer_label = f"{label} layer {i + 1}/{len(chains)} ({desc['digest'][:19]})"
                full = {**desc, "diff_id": diff_ids[i]}
                if not store.blobs.exists(desc["digest"]):
                    progress.layer(key, "Pulling fs layer", 0, desc.get("size"))
                    if STREAM and _stream_layer(store, client, repo, full, chain, layer_label, progress):
                        progress.layer(key, "Pull complete")
                        return
                    _download(store, client, repo, desc, progress)
                    progress.layer(key, "Download complete", desc.get("size"), desc.get("size"))
                progress.layer(key, "Extracting")
                store.unpack_layer(full, chain, layer_label, helper=_use_helper(desc))
                progress.layer(key, "Pull complete")

            with ThreadPoolExecutor(max_workers=max(1, WORKERS)) as pool:
                futures = [pool.submit(fetch, i) for i in range(len(chains))]
                errors = [f.exception() for f in futures]
            for exc in errors:
                if exc is not None:
                    raise exc
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
                     progress: Progress) -> None:
    digest, size = desc["digest"], desc.get("size")
    partial = store.blobs.partial_path(digest)
    writer = store.blobs.writer(expected=digest, expected_size=size, path=partial, resume=True)
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
                elif resp.status == 206:
                    start = (resp.header("Content-Range") or "").removeprefix("bytes ").split("-")[0]
                    if start != str(offset):
                        raise RegistryError(f"blob {digest}: server resumed at {start}, not {offset}")
                while True:
                    chunk = resp.read_some(1 << 20)
                    if not chunk:
                        break
                    writer.write(chunk)
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
        writer.commit()
    except DigestMismatch:
        writer.abort()  # bad bytes are never resumed
        raise
    except BaseException:
        writer.abort(keep=True)  # keep what we have for a later resume
        raise
