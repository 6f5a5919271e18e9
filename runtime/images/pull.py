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
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import manifest as mt
from .errors import DigestMismatch, ImageNotFound, LayerError, RegistryError, RegistryUnreachable
from .progress import Progress
from .reference import Reference, parse
from .registry import RegistryClient, socket_error_types

if TYPE_CHECKING:
    from .store import Image, ImageStore

WORKERS = int(os.environ.get("PYSTACK_PULL_WORKERS", "4"))  # blob downloads at once
RETRIES = 5
# unpack while downloading (one pass over the bytes); PYSTACK_PULL_STREAM=0 downloads first
STREAM = os.environ.get("PYSTACK_PULL_STREAM", "1") != "0"
# unpack in helper processes (parallel across cores); PYSTACK_UNPACK_HELPER=0 uses threads
HELPER = os.environ.get("PYSTACK_UNPACK_HELPER", "1") != "0"
HELPER_MIN = 4 << 20  # smaller layers unpack in their own thread: not worth a helper's start


def _use_pool(desc: dict[str, Any]) -> bool:
    return (desc.get("size") or 0) >= HELPER_MIN


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

            _pull_layers(store, client, repo, doc["layers"], diff_ids, chains, label, progress)
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


class _Layer:
    """One layer of a pull in flight: its blob lock, temp layer dir, feed and unpack job."""

    def __init__(self, index: int, count: int, desc: dict[str, Any], diff_id: str, chain: str, label: str) -> None:
        self.desc = {**desc, "diff_id": diff_id}
        self.chain = chain
        self.label = f"{label} layer {index + 1}/{count} ({desc['digest'][:19]})"
        self.lock_fd = -1
        self.tmp: Path | None = None
        self.feed: Any = None
        self.job: Any = None          # Future of the UnpackResult
        self.downloaded = False       # this pull wrote the blob (a hostile one is deleted)


class _Pull:
    """The layer phase of a pull: a thread per layer (downloads limited to ``WORKERS`` at
    once), unpacks in a pool of helpers reading each blob file as it grows.

    Why this shape: the blob is written once, hashed once, and read back by the unpacker
    from the page cache while the download goes on; the connection never waits for the
    unpacker and the blob's fsync overlaps the unpack. A layer dir is published (renamed
    into place) only once both its blob digest and its DiffID are verified. Each layer
    thread holds the blob's lock from before its download until its layer is published,
    so concurrent pullers of the same layer (other processes) wait and then reuse it,
    and it never holds a download slot while it waits for a lock (no lock-order cycle).
    """

    def __init__(self, store: "ImageStore", client: RegistryClient, repo: str, progress: Progress) -> None:
        import threading
        self.store, self.client, self.repo, self.progress = store, client, repo, progress
        self.slots = threading.Semaphore(max(1, WORKERS))
        self.failed = threading.Event()
        self.feeds_lock = threading.Lock()
        self.feeds: list[Any] = []
        self.pool: Any = None

    def new_feed(self, complete: bool = False) -> Any:
        from .feed import Feed
        feed = Feed()
        if complete:
            feed.done()
        with self.feeds_lock:
            self.feeds.append(feed)
            if self.failed.is_set():
                feed.abort()
        return feed

    def fail(self) -> None:
        """Another layer failed: every unpack still going stops soon (their errors are Aborted)."""
        with self.feeds_lock:
            self.failed.set()
            for feed in self.feeds:
                feed.abort()

    def run(self, layers: list[_Layer]) -> None:
        from concurrent.futures import ThreadPoolExecutor
        if any(_use_pool(l.desc) for l in layers):
            from .unpacker import shared_pool
            self.pool = shared_pool(HELPER)
        try:
            with ThreadPoolExecutor(max_workers=len(layers), thread_name_prefix="layer") as threads:
                futures = [threads.submit(self.layer, l) for l in layers]
                errors = [f.exception() for f in futures]
        finally:
            for feed in self.feeds:
                feed.close()
        from .feed import Aborted
        failures = [e for e in errors if e is not None]
        if failures:  # the first in layer order that is a cause, not another layer's Aborted
            raise next((e for e in failures if not isinstance(e, Aborted)), failures[0])

    def layer(self, l: _Layer) -> None:
        import fcntl
        store, key = self.store, l.desc["digest"]
        l.lock_fd = os.open(f"{store.blobs.partial_path(key)}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(l.lock_fd, fcntl.LOCK_EX)  # one puller per blob and layer, across processes
            if store.has_layer(l.chain):  # another process published it while we waited
                self.progress.layer(key, "Already exists")
                return
            l.tmp = store.new_layer_tmp()
            if not store.blobs.exists(key):
                self.progress.layer(key, "Pulling fs layer", 0, l.desc.get("size"))
                with self.slots:
                    if self.failed.is_set():
                        from .feed import Aborted
                        raise Aborted("another layer failed")
                    self.download(l)
                self.progress.layer(key, "Download complete", l.desc.get("size"), l.desc.get("size"))
            if l.job is None:
                self.progress.layer(key, "Extracting")
                self.unpack_stored(l)
            try:
                result = l.job.result()
            except LayerError:
                if l.downloaded:
                    store.blobs.delete(key)  # verified: the registry serves it, and it is hostile
                raise
            store.publish_layer(l.tmp, l.desc, l.chain, result)
            l.tmp = None
            self.progress.layer(key, "Pull complete")
        except BaseException:
            self.fail()
            raise
        finally:
            if l.job is not None and not l.job.done():
                if l.feed is not None:
                    l.feed.abort()
                try:
                    l.job.result()
                except BaseException:
                    pass
            if l.tmp is not None:
                import shutil
                shutil.rmtree(l.tmp, ignore_errors=True)
            os.close(l.lock_fd)  # lock files are removed by gc, which no puller runs beside

    def unpack_stored(self, l: _Layer) -> None:
        """Unpack the verified blob in the store: in the pool, or here if it is small."""
        path = self.store.blobs.path(l.desc["digest"])
        if self.pool is not None and _use_pool(l.desc):
            l.feed = self.new_feed(complete=True)
            l.job = self.pool.submit(path, l.feed, l.tmp / "diff", diff_id=l.desc["diff_id"], label=l.label,
                                     limits=self.store.limits)
            return
        from concurrent.futures import Future
        from .layers import unpack_file
        l.job = Future()
        try:
            l.job.set_result(unpack_file(path, l.tmp / "diff", expected_diff_id=l.desc["diff_id"],
                                         limits=self.store.limits, label=l.label))
        except Exception as exc:
            l.job.set_exception(exc)

    def download(self, l: _Layer) -> None:
        """Download the blob (resuming a partial one), streaming it into the pool's unpacker
        as it arrives when the layer is big enough; commit (verify, fsync, rename) it."""
        stream = STREAM and self.pool is not None and _use_pool(l.desc)
        try:
            _download_locked(self.store, self.client, self.repo, l.desc, self.progress,
                             layer=l if stream else None, pull=self)
        except DigestMismatch as exc:
            raise DigestMismatch(f"{l.label}: {exc}") from None
        l.downloaded = True

    def start_stream(self, l: _Layer, partial: Path) -> None:
        """The partial file exists: its unpacker starts reading it."""
        l.feed = self.new_feed()
        l.job = self.pool.submit(partial, l.feed, l.tmp / "diff", diff_id=l.desc["diff_id"], label=l.label,
                                 limits=self.store.limits)

    def stop_stream(self, l: _Layer) -> None:
        """The download starts over in a new file: drop what was unpacked so far; the
        layer is unpacked from the blob once it is complete."""
        import shutil
        if l.job is None:
            return
        l.feed.abort()
        try:
            l.job.result()
        except BaseException:
            pass
        l.job = l.feed = None
        shutil.rmtree(l.tmp, ignore_errors=True)
        l.tmp = self.store.new_layer_tmp()


def _pull_layers(store: "ImageStore", client: RegistryClient, repo: str, descs: list[dict[str, Any]],
                 diff_ids: list[str], chains: list[str], label: str, progress: Progress) -> None:
    layers = []
    for i, desc in enumerate(descs):
        if store.has_layer(chains[i]):
            progress.layer(desc["digest"], "Already exists")
        else:
            layers.append(_Layer(i, len(descs), desc, diff_ids[i], chains[i], label))
    if layers:
        _Pull(store, client, repo, progress).run(layers)


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
                     progress: Progress, layer: _Layer | None = None, pull: _Pull | None = None) -> None:
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
