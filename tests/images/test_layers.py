"""Safe layer unpacking: hostile archives written by the test, whiteouts, attributes.

Each hostile case is replayed twice: straight into the unpacker (the error says why) and
through ``ImageStore.load`` of an OCI layout naming the image (the error names image
and layer, and the store holds nothing afterwards). The oracle for "no escape" is a
canary tree next to the target whose names, modes, owners, mtimes and contents must not
change.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from pystack.runtime.images.errors import DigestMismatch, LayerError
from pystack.runtime.images.layers import Limits, unpack
from pystack.runtime.images.store import ImageStore

from .helpers import entry, gz, make_tar, oci_layout, sha, store_files, tree_snapshot, zst


@pytest.fixture
def arena(tmp_path: Path):
    """target/ (empty layer dir) and outside/ (the canary tree an escape would touch)."""
    outside = tmp_path / "outside"
    (outside / "dir").mkdir(parents=True)
    (outside / "file").write_text("canary")
    os.chmod(outside / "file", 0o600)
    target = tmp_path / "target"
    target.mkdir()
    return target, outside


def _escapes(outside: Path) -> dict[str, list]:
    o = str(outside)
    return {
        "absolute name": [entry(f"{o}/pwned", data=b"x")],
        "dotdot name": [entry("../outside/pwned", data=b"x")],
        "nested dotdot": [entry("a/b/../../../outside/pwned", data=b"x")],
        "write through absolute symlink": [entry("link", "symlink", link=o), entry("link/pwned", data=b"x")],
        "write through relative symlink": [entry("link", "symlink", link="../outside"),
                                           entry("link/pwned", data=b"x")],
        "dir replaced by symlink": [entry("d", "dir"), entry("d/ok", data=b"1"), entry("d", "symlink", link=o),
                                    entry("d/pwned", data=b"x")],
        "symlink to file then overwrite": [entry("f", "symlink", link=f"{o}/file"), entry("f/x", data=b"x")],
        "hardlink to absolute outside": [entry("h", "hardlink", link=f"{o}/file")],
        "hardlink dotdot outside": [entry("h", "hardlink", link="../outside/file")],
        "hardlink through symlink dir": [entry("l", "symlink", link=o), entry("h", "hardlink", link="l/file")],
        "whiteout through symlink": [entry("l", "symlink", link=o), entry("l/.wh.file", data=b"")],
        "opaque through symlink": [entry("l", "symlink", link=o), entry("l/dir/.wh..wh..opq", data=b"")],
        "bare whiteout": [entry("d", "dir"), entry("d/.wh.", data=b"")],
        "whiteout of dot": [entry("d", "dir"), entry("d/.wh..", data=b"")],
        "whiteout of dotdot": [entry("d", "dir"), entry("d/.wh...", data=b"")],
        "whiteout root parent": [entry(".wh...", data=b"")],
    }


CASES = list(_escapes(Path("/x")).keys())


@pytest.mark.parametrize("case", CASES)
def test_hostile_entry_is_refused_and_nothing_outside_changes(arena, case: str) -> None:
    target, outside = arena
    before = tree_snapshot(outside)
    tar = make_tar(_escapes(outside)[case])
    with pytest.raises(LayerError) as exc:
        unpack(_reader(gz(tar)), target, label="image evil:1 layer 1/1")
    assert "image evil:1 layer 1/1" in str(exc.value)
    assert tree_snapshot(outside) == before
    assert not (outside / "pwned").exists()


def test_hardlink_to_escaping_symlink_links_the_symlink_itself(arena) -> None:
    """CVE-2021-32760's shape: link to a symlink pointing out, then a chmod'ing entry."""
    target, outside = arena
    before = tree_snapshot(outside)
    tar = make_tar([entry("s", "symlink", link=f"{outside}/file"), entry("h", "hardlink", link="s"),
                    entry("h", mode=0o777, data=b"overwrite")])
    unpack(_reader(tar), target)
    assert tree_snapshot(outside) == before
    assert os.readlink(target / "s") == f"{outside}/file"
    assert (target / "h").read_bytes() == b"overwrite" and not (target / "h").is_symlink()


def test_whiteouts_become_overlay_whiteouts(arena) -> None:
    target, _ = arena
    tar = make_tar([entry("etc", "dir"), entry("etc/.wh.hostname", data=b""), entry("data", "dir"),
                    entry("data/.wh..wh..opq", data=b""), entry("data/new", data=b"n")])
    unpack(_reader(tar), target)
    st = os.lstat(target / "etc/hostname")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert not (target / "etc/.wh.hostname").exists()
    assert os.getxattr(target / "data", "trusted.overlay.opaque") == b"y"
    assert (target / "data/new").read_text() == "n"
    assert not (target / "data/.wh..wh..opq").exists()


def test_attributes_are_kept(arena) -> None:
    target, _ = arena
    tar = make_tar([
        entry("bin", "dir", mode=0o750, uid=12, gid=34, mtime=1_500_000_000),
        entry("bin/su", data=b"#!", mode=0o4755, uid=0, gid=0, mtime=1_400_000_000),
        entry("bin/sg", data=b"#!", mode=0o2711, uid=5, gid=6),
        entry("bin/cap", data=b"c", xattrs={"user.comment": b"hello", "trusted.overlay.opaque": b"y"}),
        entry("bin/link", "hardlink", link="bin/su"),
        entry("bin/sym", "symlink", link="su", uid=7, gid=8, mtime=1_300_000_000),
        entry("tmp", "dir", mode=0o1777),
        entry("dev", "dir"), entry("dev/null", "char", mode=0o666, dev=(1, 3)),
        entry("dev/fifo", "fifo", mode=0o640),
    ])
    unpack(_reader(tar), target)
    st = os.lstat(target / "bin")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime) == (0o750, 12, 34, 1_500_000_000)
    su = os.lstat(target / "bin/su")
    assert stat.S_IMODE(su.st_mode) == 0o4755 and su.st_mtime == 1_400_000_000
    sg = os.lstat(target / "bin/sg")
    assert (stat.S_IMODE(sg.st_mode), sg.st_uid, sg.st_gid) == (0o2711, 5, 6)
    assert os.getxattr(target / "bin/cap", "user.comment") == b"hello"
    with pytest.raises(OSError):  # an archive may not steer overlayfs
        os.getxattr(target / "bin/cap", "trusted.overlay.opaque")
    assert os.lstat(target / "bin/link").st_ino == su.st_ino
    sym = os.lstat(target / "bin/sym")
    assert os.readlink(target / "bin/sym") == "su" and (sym.st_uid, sym.st_gid, sym.st_mtime) == (7, 8, 1_300_000_000)
    assert stat.S_IMODE(os.lstat(target / "tmp").st_mode) == 0o1777
    dev = os.lstat(target / "dev/null")
    assert stat.S_ISCHR(dev.st_mode) and dev.st_rdev == os.makedev(1, 3) and stat.S_IMODE(dev.st_mode) == 0o666
    assert stat.S_ISFIFO(os.lstat(target / "dev/fifo").st_mode)


@pytest.mark.parametrize("compress", [lambda t: t, gz, zst], ids=["plain", "gzip", "zstd"])
def test_compressions_and_diff_id(arena, compress) -> None:
    target, _ = arena
    tar = make_tar([entry("a", data=b"hello")])
    blob = compress(tar)
    result = unpack(_reader(blob), target, expected_diff_id=sha(tar), expected_digest=sha(blob))
    assert result.diff_id == sha(tar) and (target / "a").read_text() == "hello"


def test_diff_id_mismatch_is_refused(arena) -> None:
    target, _ = arena
    with pytest.raises(DigestMismatch, match="diff_id mismatch"):
        unpack(_reader(gz(make_tar([entry("a", data=b"x")]))), target, expected_diff_id=sha(b"other"))


def test_truncated_gzip(arena) -> None:
    target, _ = arena
    blob = gz(make_tar([entry(f"f{i}", data=os.urandom(2000)) for i in range(20)]))
    with pytest.raises(LayerError, match="corrupt or truncated"):
        unpack(_reader(blob[: len(blob) // 2]), target, label="L")


def test_tar_bomb_of_small_files_hits_the_entry_limit(arena) -> None:
    target, _ = arena
    tar = make_tar([entry(f"f{i}", data=b"") for i in range(3000)])
    with pytest.raises(LayerError, match="more than 1000 entries"):
        unpack(_reader(gz(tar)), target, limits=Limits(max_entries=1000))


def test_gzip_bomb_hits_the_size_limit(arena) -> None:
    target, _ = arena
    blob = gz(make_tar([entry("zeros", data=bytes(8 << 20))]))  # 8 MiB of zeros, ~8 KiB gzip'd
    with pytest.raises(LayerError, match="larger than the limit"):
        unpack(_reader(blob), target, limits=Limits(max_bytes=1 << 20))


# -- through the store: the error names image and layer, nothing is left --------------------

@pytest.mark.parametrize("case", ["write through absolute symlink", "hardlink dotdot outside", "whiteout of dotdot",
                                  "truncated gzip", "tar bomb"])
def test_store_load_of_hostile_image_leaves_nothing(tmp_path: Path, arena, case: str) -> None:
    target, outside = arena
    good = make_tar([entry("ok", data=b"fine")])
    if case == "truncated gzip":
        tar = make_tar([entry(f"f{i}", data=os.urandom(3000)) for i in range(10)])
        blob = gz(tar)[:5000]
    elif case == "tar bomb":
        tar = make_tar([entry(f"f{i}", data=b"") for i in range(2000)])
        blob = gz(tar)
    else:
        tar = make_tar(_escapes(outside)[case])
        blob = gz(tar)
    layout = oci_layout(tmp_path / "layout", "evil:1", [(gz(good), good), (blob, tar)])
    store = ImageStore(tmp_path / "store", limits=Limits(max_entries=1000))
    before = tree_snapshot(outside)
    with pytest.raises(LayerError) as exc:
        store.load(layout)
    msg = str(exc.value)
    assert "evil:1" in msg and "layer 2/2" in msg, msg
    assert tree_snapshot(outside) == before
    assert store_files(store.root) == {"blobs": [], "layers": [], "images": [], "tmp": [], "refs": []}


def _reader(data: bytes):
    import io
    return io.BytesIO(data)


def test_malformed_diff_id_cannot_name_a_directory(tmp_path: Path) -> None:
    """ChainID(L0) is the config's DiffID: a crafted one must not become a path."""
    import json

    from .helpers import OCI_MANIFEST, write_blob
    layout = tmp_path / "layout"
    tar = make_tar([entry("a", data=b"x")])
    cfg = json.dumps({"architecture": "amd64", "os": "linux",
                      "rootfs": {"type": "layers", "diff_ids": ["sha256:../../../escaped"]}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      **write_blob(layout, cfg)},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                       **write_blob(layout, tar)}]}).encode()
    md = write_blob(layout, manifest)
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": OCI_MANIFEST, **md, "annotations": {"io.containerd.image.name": "bad:1"}}]}))
    store = ImageStore(tmp_path / "store")
    with pytest.raises(LayerError, match="malformed diff_id"):
        store.load(layout)
    assert not (tmp_path / "escaped").exists()
    assert store_files(store.root) == {"blobs": [], "layers": [], "images": [], "tmp": [], "refs": []}


def test_trickling_stream_is_unpacked(arena) -> None:
    """A reader that hands out one byte at a time (a slow network) still unpacks right."""
    target, _ = arena

    class Trickle:
        def __init__(self, data: bytes) -> None:
            self.data, self.pos = data, 0

        def read(self, n: int = -1) -> bytes:
            out = self.data[self.pos:self.pos + 1]
            self.pos += len(out)
            return out
    tar = make_tar([entry("a", data=b"hello" * 100)])
    for blob in (gz(tar), zst(tar)):
        dest = target / str(len(blob))
        dest.mkdir()
        assert unpack(Trickle(blob), dest, expected_diff_id=sha(tar)).diff_id == sha(tar)
        assert (dest / "a").read_bytes() == b"hello" * 100


def test_many_directories_and_deep_paths(arena) -> None:
    """More directories than the descriptor cache holds, and a path deeper than it: every
    entry lands where its name says (descriptors are never closed while in use)."""
    target, _ = arena
    deep = "/".join(f"d{i}" for i in range(200))
    entries = [entry(f"top{i}", "dir", mode=0o711) for i in range(300)]
    entries += [entry(f"top{i}/f", data=str(i).encode()) for i in range(300)]
    entries += [entry(f"{deep}/leaf", data=b"deep"), entry("top0/h", "hardlink", link=f"{deep}/leaf"),
                entry(f"{deep}/back", "hardlink", link="top1/f")]
    unpack(_reader(make_tar(entries)), target)
    assert all((target / f"top{i}/f").read_text() == str(i) for i in range(300))
    assert stat.S_IMODE(os.lstat(target / "top299").st_mode) == 0o711
    assert (target / deep / "leaf").read_text() == "deep" and (target / "top0/h").read_text() == "deep"
    assert (target / deep / "back").read_text() == "1"


# -- the gzip reader (GzipReader: isal or zlib-ng when installed, else zlib) ---------------------------

def _inflaters() -> list:
    import zlib
    mods = [pytest.param(zlib, id="zlib")]
    try:
        from zlib_ng import zlib_ng
        mods.append(pytest.param(zlib_ng, id="zlib-ng"))
    except ImportError:
        mods.append(pytest.param(None, id="zlib-ng", marks=pytest.mark.skip(reason="zlib-ng not installed")))
    try:
        from isal import isal_zlib
        mods.append(pytest.param(isal_zlib, id="isal"))
    except ImportError:
        mods.append(pytest.param(None, id="isal", marks=pytest.mark.skip(reason="isal not installed")))
    return mods


@pytest.fixture(params=_inflaters())
def inflater(request, monkeypatch):
    """Every unpack in the test inflates with this module."""
    from pystack.runtime.images import layers
    monkeypatch.setattr(layers, "_inflate_module", lambda: request.param)
    return request.param


def test_gzip_multi_member_and_zero_padding_unpack_like_gzip(arena, inflater) -> None:
    """A layer gzip'd as several members (pigz/concatenated), padded with zeros between."""
    import gzip
    target, _ = arena
    big = os.urandom(3 << 20) + b"text " * 400_000  # more than one inflate call's output
    tar = make_tar([entry("big", data=big), entry("small", data=b"hi")])
    blob = gzip.compress(tar[:1_000_000]) + bytes(300) + gzip.compress(tar[1_000_000:])
    result = unpack(_reader(blob), target, expected_diff_id=sha(tar), expected_digest=sha(blob))
    assert result.diff_id == sha(tar) and result.size == len(tar)
    assert (target / "big").read_bytes() == big and (target / "small").read_bytes() == b"hi"


@pytest.mark.parametrize("damage", ["crc", "length", "garbage after", "cut in trailer", "cut in second member"])
def test_damaged_gzip_is_a_layer_error(arena, inflater, damage: str) -> None:
    """The gzip trailer (CRC32, length) is checked, and nothing but zeros may follow a member."""
    import gzip
    target, _ = arena
    tar = make_tar([entry("f", data=os.urandom(100_000))])
    blob = bytearray(gzip.compress(tar))
    if damage == "crc":
        blob[-8] ^= 1
    elif damage == "length":
        blob[-1] ^= 1
    elif damage == "garbage after":
        blob += b"\x00\x00garbage"
    elif damage == "cut in trailer":
        blob = blob[:-3]
    else:
        blob = blob + gzip.compress(b"x" * 1000)[:20]
    with pytest.raises(LayerError, match="L: corrupt or truncated layer"):
        unpack(_reader(bytes(blob)), target, label="L")


def test_gzip_bomb_output_is_bounded_per_read(inflater) -> None:
    """One read of a gzip bomb never inflates more than _INFLATE_OUT bytes into memory."""
    import gzip
    from pystack.runtime.images.layers import _INFLATE_OUT, GzipReader
    reader = GzipReader(_reader(gzip.compress(bytes(64 << 20))), inflater)
    assert len(reader.read(10)) == 10
    assert len(reader.buf) <= _INFLATE_OUT
    total = 10
    while chunk := reader.read(1 << 20):
        assert len(reader.buf) <= _INFLATE_OUT
        total += len(chunk)
    assert total == 64 << 20


def test_inflate_module_choice(monkeypatch) -> None:
    """isal, else zlib-ng, when importable; PYSTACK_INFLATE=zlib-ng / =zlib skip the faster ones."""
    import zlib
    from pystack.runtime.images.layers import _inflate_module
    monkeypatch.setenv("PYSTACK_INFLATE", "zlib")
    assert _inflate_module() is zlib
    try:
        from zlib_ng import zlib_ng
    except ImportError:
        zlib_ng = zlib
    monkeypatch.setenv("PYSTACK_INFLATE", "zlib-ng")
    assert _inflate_module() is zlib_ng
    monkeypatch.delenv("PYSTACK_INFLATE")
    try:
        from isal import isal_zlib
    except ImportError:
        assert _inflate_module() is zlib_ng
    else:
        assert _inflate_module() is isal_zlib
