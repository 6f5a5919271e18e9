"""The unpack pool: helpers (and threads) reading a blob file while it is still written.

Real helper processes, real files, real eventfds; the writer side is driven by the test
the way a download drives it (write, flush, ``feed.more()``, then ``done()`` or
``abort()``). Pull-level cases stream through the pool from a real registry behind a
proxy that cuts a download, or ignores Range (the download starts over in a new file).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pystack.runtime.images.errors import LayerError
from pystack.runtime.images.feed import Aborted, Feed, GrowingReader, complete_feed
from pystack.runtime.images.layers import Limits
from pystack.runtime.images.store import ImageStore
from pystack.runtime.images.unpacker import MALLOC_TUNABLES, UnpackPool, helper_env

from .helpers import entry, gz, make_tar, sha, store_files
from .registryfix import Proxy

MODES = [pytest.param(True, id="helper-process"), pytest.param(False, id="thread")]


def _trickle(path: Path, blob: bytes, feed: Feed, *, step: int = 65536, stop_at: int | None = None) -> None:
    """Write ``blob`` into ``path`` as a download does, a piece at a time."""
    with open(path, "ab") as f:
        for i in range(0, len(blob) if stop_at is None else stop_at, step):
            f.write(blob[i:i + step])
            f.flush()
            feed.more()
            time.sleep(0.001)  # let the reader catch up and wait on the eventfd now and then
    if stop_at is None:
        feed.done()


@pytest.mark.parametrize("processes", MODES)
def test_pool_unpacks_a_blob_while_it_is_written(tmp_path: Path, processes: bool, monkeypatch) -> None:
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=2")
    assert helper_env()["GLIBC_TUNABLES"] == f"glibc.malloc.arena_max=2:{MALLOC_TUNABLES}"
    tar = make_tar([entry("d/big", data=os.urandom(3 << 20)), entry("d/small", data=b"hi")])
    blob = gz(tar)
    partial = tmp_path / "partial"
    partial.touch()
    pool = UnpackPool(2, processes=processes)
    feeds = [Feed(), complete_feed()]
    try:
        (tmp_path / "a").mkdir()
        job = pool.submit(partial, feeds[0], tmp_path / "a", diff_id=sha(tar), label="L", limits=Limits())
        _trickle(partial, blob, feeds[0])
        assert job.result(timeout=120).diff_id == sha(tar)
        # the same blob, already whole: the reader finds done at once
        (tmp_path / "b").mkdir()
        job = pool.submit(partial, feeds[1], tmp_path / "b", diff_id=sha(tar), label="L", limits=Limits())
        assert job.result(timeout=120).size == len(tar)
    finally:
        pool.close()
        for f in feeds:
            f.close()
    for d in "ab":
        assert (tmp_path / d / "d/small").read_bytes() == b"hi"
        assert (tmp_path / d / "d/big").read_bytes() == tar_member(tar, "d/big")


def tar_member(tar: bytes, name: str) -> bytes:
    import io
    import tarfile
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        return tf.extractfile(name).read()  # type: ignore[union-attr]


@pytest.mark.parametrize("processes", MODES)
def test_hostile_layer_in_the_pool_then_a_good_one(tmp_path: Path, processes: bool) -> None:
    """A layer that writes through a symlink fails as LayerError naming the label, nothing
    outside changes, and the same worker then unpacks the next layer."""
    outside = tmp_path / "outside"
    outside.mkdir()
    evil = gz(make_tar([entry("l", "symlink", link=str(outside)), entry("l/pwned", data=b"x" * 5000)]))
    good_tar = make_tar([entry("ok", data=b"fine")])
    (tmp_path / "evil").write_bytes(evil)
    (tmp_path / "good").write_bytes(gz(good_tar))
    pool = UnpackPool(1, processes=processes)
    feeds = [complete_feed(), complete_feed()]
    try:
        for d in ("t1", "t2"):
            (tmp_path / d).mkdir()
        bad = pool.submit(tmp_path / "evil", feeds[0], tmp_path / "t1", diff_id=None, label="L", limits=Limits())
        good = pool.submit(tmp_path / "good", feeds[1], tmp_path / "t2", diff_id=sha(good_tar), label="L", limits=Limits())
        with pytest.raises(LayerError, match="L: .*symlink"):
            bad.result(timeout=120)
        assert good.result(timeout=120).diff_id == sha(good_tar)
    finally:
        pool.close()
        for f in feeds:
            f.close()
    assert list(outside.iterdir()) == []
    assert (tmp_path / "t2/ok").read_bytes() == b"fine"


@pytest.mark.parametrize("processes", MODES)
def test_abort_stops_a_reader_waiting_for_more(tmp_path: Path, processes: bool) -> None:
    tar = make_tar([entry("f", data=os.urandom(1 << 20))])
    blob = gz(tar)
    partial = tmp_path / "partial"
    partial.touch()
    (tmp_path / "t").mkdir()
    pool = UnpackPool(1, processes=processes)
    feed = Feed()
    try:
        job = pool.submit(partial, feed, tmp_path / "t", diff_id=sha(tar), label="L", limits=Limits())
        _trickle(partial, blob, feed, stop_at=len(blob) // 2)
        feed.abort()
        with pytest.raises(Aborted):
            job.result(timeout=120)
    finally:
        pool.close()
        feed.close()


def test_an_idle_worker_stops_with_its_helper_and_a_new_job_starts_one(tmp_path: Path) -> None:
    tar = make_tar([entry("f", data=b"x")])
    (tmp_path / "blob").write_bytes(gz(tar))
    pool = UnpackPool(2, idle=0.2)
    feeds = [complete_feed(), complete_feed()]
    try:
        for n, feed in enumerate(feeds):
            (tmp_path / str(n)).mkdir()
            assert pool.submit(tmp_path / "blob", feed, tmp_path / str(n), diff_id=sha(tar), label="L",
                               limits=Limits()).result(timeout=120).diff_id == sha(tar)
            deadline = time.monotonic() + 60
            while (pool.workers or _children(os.getpid(), b"helper_main")) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert pool.workers == 0 and not _children(os.getpid(), b"helper_main")
    finally:
        pool.close()
        for f in feeds:
            f.close()


def test_pulls_share_the_process_pool(registry, store, tmp_path, monkeypatch) -> None:
    """Two pulls in a row: the second one's layers go to the helpers the first one started."""
    import pystack.runtime.images.pull as pull_mod
    from pystack.runtime.images.unpacker import shared_pool
    monkeypatch.setattr(pull_mod, "HELPER_MIN", 0)
    _two_layers(store, tmp_path)
    store.tag("two:1", f"{registry.host}/share/two:1")
    store.push(f"{registry.host}/share/two:1")
    ImageStore(tmp_path / "a").pull(f"{registry.host}/share/two:1")
    helpers = set(_children(os.getpid(), b"helper_main"))
    assert 1 <= len(helpers) <= shared_pool().size
    ImageStore(tmp_path / "b").pull(f"{registry.host}/share/two:1")
    assert set(_children(os.getpid(), b"helper_main")) == helpers


def test_growing_reader_reads_to_the_end_only_after_done(tmp_path: Path) -> None:
    """b"" means the end only once the writer said done; before that a read waits."""
    path = tmp_path / "blob"
    path.write_bytes(b"abc")
    feed = Feed()
    reader = GrowingReader(os.open(path, os.O_RDONLY), os.dup(feed.fd))
    try:
        assert reader.read(10) == b"abc"
        got: list[bytes] = []
        t = threading.Thread(target=lambda: got.append(reader.read(10)))
        t.start()
        t.join(0.2)
        assert t.is_alive()  # waiting: the file has no more bytes yet
        with open(path, "ab") as f:
            f.write(b"de")
        feed.more()
        t.join(60)
        assert got == [b"de"]
        feed.done()
        assert reader.read(10) == b""
    finally:
        reader.close()
        feed.close()


HELPER_PARENT = r"""
import os, sys, time
from pathlib import Path
from pystack.runtime.images.feed import Feed
from pystack.runtime.images.layers import Limits
from pystack.runtime.images.unpacker import UnpackPool
tmp = Path(sys.argv[1])
(tmp / "partial").write_bytes(b"\x1f\x8b")  # a gzip stream that never goes on
pool = UnpackPool(2)  # two helpers: one started, one forked by it
jobs = []
for n in range(2):
    (tmp / f"t{n}").mkdir()
    jobs.append(pool.submit(tmp / "partial", Feed(), tmp / f"t{n}", diff_id=None, label="L", limits=Limits()))
print("ready", flush=True)
time.sleep(600)
"""


def _children(pid: int, cmdline_has: bytes = b"") -> list[int]:
    """Live (not zombie) children of ``pid`` whose command line contains ``cmdline_has``."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    cmdline = f.read()
            except (OSError, IndexError, ValueError):
                continue
            if int(fields[1]) == pid and fields[0] != "Z" and cmdline_has in cmdline:
                out.append(int(d))
    return out


def _gone_or_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"  # exited; its new parent reaps it
    except FileNotFoundError:
        return True


def test_helpers_exit_when_their_puller_is_killed(tmp_path: Path) -> None:
    """Helpers waiting for blob bytes that will never come (the started one and the one it
    forked) stop once the puller dies (their sockets close): no orphan unpackers after a
    SIGKILLed pull."""
    proc = subprocess.Popen([sys.executable, "-c", HELPER_PARENT, str(tmp_path)], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        helpers: list[int] = []
        deadline = time.monotonic() + 60
        while len(helpers) < 2 and time.monotonic() < deadline:
            started = _children(proc.pid, b"helper_main")
            helpers = started + [pid for h in started for pid in _children(h, b"helper_main")]
            time.sleep(0.05)
        assert len(helpers) == 2, helpers
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 60
    while not all(_gone_or_zombie(pid) for pid in helpers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(_gone_or_zombie(pid) for pid in helpers)


def _two_layers(store: ImageStore, tmp_path: Path):
    """A 2-layer image (random and text files, ~1.4 MB) built by the test, in ``store``."""
    from .helpers import oci_layout
    tars = [make_tar([entry(f"l{n}", "dir"), entry(f"l{n}/rnd", data=os.urandom(600_000)),
                      entry(f"l{n}/txt", data=b"text " * 20_000)]) for n in range(2)]
    return store.load(oci_layout(tmp_path / "layout", "two:1", [(gz(t), t) for t in tars]))[0]


@pytest.mark.parametrize("proxy_kw", [{"cut_first_blob": True}, {"ignore_range": True, "cut_first_blob": True}],
                         ids=["cut-then-resumed", "cut-then-range-ignored"])
@pytest.mark.parametrize("helper", [True, False], ids=["helper-process", "thread"])
def test_streamed_pull_survives_a_cut_download(registry, store, tmp_path, monkeypatch, proxy_kw, helper) -> None:
    """A layer streaming into the pool whose download is cut: resumed with Range (the
    unpacker just reads on), or started over from byte 0 because the server ignores Range
    (the half-unpacked dir is dropped and the layer unpacked from the complete blob)."""
    import pystack.runtime.images.pull as pull_mod
    monkeypatch.setattr(pull_mod, "HELPER_MIN", 0)
    monkeypatch.setattr(pull_mod, "HELPER", helper)
    img = _two_layers(store, tmp_path)
    ref = f"{registry.host}/cut/big:1"
    store.tag("two:1", ref)
    store.push(ref)
    proxy = Proxy(registry.host, **proxy_kw)
    try:
        fresh = ImageStore(tmp_path / "fresh")
        got = fresh.pull(f"{proxy.host}/cut/big:1")
    finally:
        proxy.stop()
    assert got.id == img.id and proxy.cut_done
    ranges = [h.get("Range") for m, p, h in proxy.requests if "/blobs/" in p and h.get("Range")]
    assert ranges and ranges[0] != "bytes=0-"
    for a, b in zip(fresh.prepare(got), store.prepare(img)):
        assert sorted(p.name for p in a.rglob("*")) == sorted(p.name for p in b.rglob("*"))
        for f in b.rglob("*"):
            if f.is_file():
                assert (a / f.relative_to(b)).read_bytes() == f.read_bytes()
    files = store_files(fresh.root)
    assert files["tmp"] == [] and len(files["layers"]) == 2


@pytest.mark.parametrize("threaded", [True, False], ids=["hash-thread", "hash-inline"])
def test_diff_id_hashed_in_a_thread_or_inline(tmp_path: Path, monkeypatch, threaded: bool) -> None:
    """Both ways give the DiffID; a failing unpack leaves no hashing thread behind."""
    from pystack.runtime.images import layers
    monkeypatch.setattr(layers, "HASH_THREAD", threaded)
    tar = make_tar([entry("big", data=os.urandom(3 << 20)), entry("t", data=b"text " * 100_000)])
    blob = gz(tar)
    before = threading.active_count()
    cases = [("ok", blob, sha(tar), None), ("wrong-diff-id", blob, "sha256:" + "0" * 64, layers.DigestMismatch),
             ("truncated", blob[:100_000], sha(tar), LayerError)]
    for name, data, diff_id, error in cases:
        (tmp_path / name).mkdir()
        (tmp_path / f"{name}.blob").write_bytes(data)
        with open(tmp_path / f"{name}.blob", "rb") as f:
            if error is None:
                assert layers.unpack(f, tmp_path / name, expected_diff_id=diff_id).diff_id == sha(tar)
            else:
                with pytest.raises(error):
                    layers.unpack(f, tmp_path / name, expected_diff_id=diff_id)
    assert threading.active_count() == before
