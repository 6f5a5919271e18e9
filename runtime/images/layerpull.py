"""The layer phase of ``pull``: every layer's download streamed into the unpack pool.

Split from ``pull`` (which resolves the image and registers it); the knobs stay there
(``pull.WORKERS``, ``STREAM``, ``HELPER``, ``HELPER_MIN``) and are read at each pull.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import pull as _knobs
from .errors import DigestMismatch, LayerError
from .progress import Progress
from .pull import _download_locked
from .registry import RegistryClient

if TYPE_CHECKING:
    from .store import ImageStore


def _use_pool(desc: dict[str, Any]) -> bool:
    return (desc.get("size") or 0) >= _knobs.HELPER_MIN


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
        self.slots = threading.Semaphore(max(1, _knobs.WORKERS))
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
            self.pool = shared_pool(_knobs.HELPER)
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
        stream = _knobs.STREAM and self.pool is not None and _use_pool(l.desc)
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


def pull_layers(store: "ImageStore", client: RegistryClient, repo: str, descs: list[dict[str, Any]],
                 diff_ids: list[str], chains: list[str], label: str, progress: Progress) -> None:
    layers = []
    for i, desc in enumerate(descs):
        if store.has_layer(chains[i]):
            progress.layer(desc["digest"], "Already exists")
        else:
            layers.append(_Layer(i, len(descs), desc, diff_ids[i], chains[i], label))
    if layers:
        _Pull(store, client, repo, progress).run(layers)
