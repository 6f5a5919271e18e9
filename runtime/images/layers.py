"""Safe unpacking of one layer tarball into its own, initially empty, directory.

Security code (DESIGN: ../shared/reference/runtime-security.md §2.1, §2.7, §3.2). Python's
``tarfile.extract*`` has a long list of escapes (CVE-2007-4559 and the PEP 706 filter
bypasses), so no path is ever handed to it. Each entry is applied by hand:

* names are cleaned lexically; absolute names and ``..`` that climb out are refused;
* the parent directory is reached by ``openat`` one component at a time with
  ``O_DIRECTORY|O_NOFOLLOW`` from a descriptor of the layer root, so a symlink planted
  by an earlier entry (or a directory replaced by a symlink) is never followed;
* files are created with ``O_CREAT|O_EXCL|O_NOFOLLOW`` relative to that descriptor and
  their attributes set through the file descriptor (``fchown``/``fchmod``/``futimens``);
* hardlink targets are resolved the same way and must already exist inside the layer
  (the link is made with ``linkat`` without following, so a link to a symlink is a link
  to the symlink itself);
* device nodes only as root; ``trusted.overlay.*`` xattrs from the archive are dropped
  (they would steer overlayfs);
* OCI whiteouts become overlayfs whiteouts: ``.wh.NAME`` a char device 0:0 and
  ``.wh..wh..opq`` the ``trusted.overlay.opaque=y`` xattr on its directory; the bare
  ``.wh.``/``.wh..``/``.wh...`` are errors;
* the decompressed stream is hashed (the layer's DiffID) and bounded in bytes and
  entries, decompressors run in-process (gzip, zstd, xz, bzip2, plain tar).

Directory modes and mtimes are applied last, deepest first, so that later entries can
still be created in them and their mtimes are not disturbed.
"""
from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
import tarfile
from collections import OrderedDict

from .errors import DigestMismatch, LayerError

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: the unpack helpers start without typing and pathlib
    from pathlib import Path
    from typing import Any, BinaryIO

WHITEOUT_PREFIX = ".wh."
OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = 1 << 20


# Plain classes, not dataclasses: ``dataclasses`` imports ``inspect`` and friends, which
# every unpack helper process would pay for at start.
_MAX_BYTES = int(os.environ.get("PYSTACK_LAYER_MAX_BYTES", 64 << 30))
_MAX_ENTRIES = int(os.environ.get("PYSTACK_LAYER_MAX_ENTRIES", 2_000_000))


class Limits:
    """Bounds against decompression and tar bombs (env overrides for small machines)."""

    def __init__(self, max_bytes: int = _MAX_BYTES, max_entries: int = _MAX_ENTRIES) -> None:
        self.max_bytes = max_bytes
        self.max_entries = max_entries

    def __repr__(self) -> str:
        return f"Limits(max_bytes={self.max_bytes}, max_entries={self.max_entries})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Limits) and (self.max_bytes, self.max_entries) == (other.max_bytes, other.max_entries)


class UnpackResult:
    def __init__(self, diff_id: str, size: int, entries: int, digest: str | None = None) -> None:
        self.diff_id = diff_id
        self.size = size        # bytes of the uncompressed tar stream
        self.entries = entries
        self.digest = digest    # of the compressed blob, when it was read from one

    def __repr__(self) -> str:
        return f"UnpackResult({self.diff_id!r}, {self.size}, {self.entries}, {self.digest!r})"


class _HashingReader:
    """Hashes and counts every byte read; refuses to read past ``limit``.

    ``threaded``: the hashing runs in a thread of its own (sha256 releases the GIL), beside
    the inflating and writing: a layer's unpack then spreads over two cores when one is
    idle, as at the end of a pull whose last layer unpacks alone."""

    def __init__(self, raw: BinaryIO, limit: int | None = None, what: str = "layer", hash: bool = True,
                 threaded: bool = False) -> None:
        self.raw = raw
        self.hasher: Any = (_ThreadedSha256() if threaded else hashlib.sha256()) if hash else _NoHash()
        self.count = 0
        self.limit = limit
        self.what = what

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.count += len(data)
        if self.limit is not None and self.count > self.limit:
            raise LayerError(f"{self.what} is larger than the limit of {self.limit} bytes uncompressed")
        self.hasher.update(data)
        return data

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass

    @property
    def digest(self) -> str:
        return "sha256:" + self.hasher.hexdigest()

    def close(self) -> None:
        if isinstance(self.hasher, _ThreadedSha256):
            self.hasher.close()


class _NoHash:
    def update(self, data: bytes) -> None:
        pass

    def hexdigest(self) -> str:
        return ""


class _ThreadedSha256:
    """sha256 computed by a thread fed through a short queue (bounded: a hasher that falls
    behind holds the reader back instead of piling up chunks in memory). The chunks are
    immutable ``bytes``, so the reader may go on with the next one at once."""

    def __init__(self) -> None:
        import queue
        import threading
        self.h = hashlib.sha256()
        self.q: Any = queue.Queue(maxsize=8)
        self.t: Any = threading.Thread(target=self._run, name="sha256", daemon=True)
        self.t.start()
        self.hex: str | None = None

    def _run(self) -> None:
        while (data := self.q.get()) is not None:
            self.h.update(data)

    def update(self, data: bytes) -> None:
        if data:
            self.q.put(bytes(data) if not isinstance(data, bytes) else data)

    def hexdigest(self) -> str:
        if self.hex is None:
            self.close()
            self.hex = self.h.hexdigest()
        return self.hex

    def close(self) -> None:
        """Let the thread hash what is queued and stop (also on an error: no thread left)."""
        if self.t.is_alive():
            self.q.put(None)
            self.t.join()


def detect_compression(head: bytes) -> str:
    """``gzip``, ``zstd``, ``xz``, ``bzip2`` or ``none`` from the stream's first bytes."""
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "zstd"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    if head.startswith(b"BZh"):
        return "bzip2"
    return "none"


# PYSTACK_HASH_THREAD=1 hashes the DiffID in a thread beside the unpack. Off by default:
# it shortens a layer that unpacks alone by ~25% when a core is idle, but costs ~5% more
# CPU (the chunks are hashed on another core, out of its cache); pulls measured slower
# with it on this busy 2-core machine (median 0.72 s against 0.64 s, 12 rounds each)
HASH_THREAD = os.environ.get("PYSTACK_HASH_THREAD", "0") == "1"

_INFLATE_IN = 1 << 18   # compressed bytes handed to the inflater at once
_INFLATE_OUT = 1 << 20  # most uncompressed bytes one inflate call may produce (bounds memory)


def _inflate_module() -> Any:
    """The fastest inflater installed: ISA-L's (``isal``: ~25% less CPU than zlib-ng here),
    else zlib-ng's (~2x less than zlib 1.2), else the standard library's zlib.

    ``PYSTACK_INFLATE=zlib-ng`` or ``=zlib`` skips the faster ones (tests compare all)."""
    choice = os.environ.get("PYSTACK_INFLATE", "")
    if choice not in ("zlib", "zlib-ng"):
        try:
            from isal import isal_zlib
            return isal_zlib
        except ImportError:
            pass
    if choice != "zlib":
        try:
            from zlib_ng import zlib_ng
            return zlib_ng
        except ImportError:
            pass
    import zlib
    return zlib


class BadGzip(OSError):
    """Corrupt gzip data (an OSError, like gzip.BadGzipFile, so callers treat it alike)."""


class GzipReader:
    """Reads a gzip stream (one or more members, zero padding between them, as gzip(1)
    and ``gzip.GzipFile`` accept) with big chunks and no per-chunk Python framing.

    The CRC32 and length trailer of every member are checked by the inflater (wbits=31);
    each inflate call yields at most ``_INFLATE_OUT`` bytes, so a gzip bomb never sits in
    memory. Truncation raises EOFError and bad data BadGzip, as ``gzip.GzipFile`` does.
    """

    def __init__(self, raw: BinaryIO, module: Any = None) -> None:
        self.raw = raw
        self.z = module or _inflate_module()
        self.d = self.z.decompressobj(31)
        self.in_member = True
        self.pending = b""  # compressed bytes after a member's end
        self.buf = b""
        self.pos = 0

    def _fill(self) -> bool:
        """Inflate more into ``buf``; False at the clean end of the stream."""
        while True:
            d = self.d
            if self.in_member and d.unconsumed_tail:
                data = d.unconsumed_tail
            elif self.pending:
                data, self.pending = self.pending, b""
            else:
                data = self.raw.read(_INFLATE_IN)
            if not self.in_member:
                if not data:
                    return False
                data = data.lstrip(b"\x00")
                if not data:
                    continue
                self.d = d = self.z.decompressobj(31)
                self.in_member = True
            try:
                out = d.decompress(data, _INFLATE_OUT)
            except self.z.error as exc:
                raise BadGzip(f"corrupt gzip data: {exc}") from None
            if d.eof:
                self.in_member = False
                self.pending = d.unused_data
            if out:
                self.buf, self.pos = out, 0
                return True
            if not data and self.in_member:
                raise EOFError("Compressed file ended before the end-of-stream marker was reached")

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            parts = [self.buf[self.pos:]]
            self.buf, self.pos = b"", 0
            while self._fill():
                parts.append(self.buf)
            self.buf = b""
            return b"".join(parts)
        if self.pos >= len(self.buf):
            if not n or not self._fill():
                return b""
        if self.pos == 0 and n >= len(self.buf):
            data, self.buf = self.buf, b""
            return data
        data = self.buf[self.pos:self.pos + n]
        self.pos += len(data)
        return data

    def close(self) -> None:
        pass


def decompressed(raw: BinaryIO, head: bytes) -> BinaryIO:
    """A reader of the uncompressed stream; decompressors are in-process (no helpers)."""
    kind = detect_compression(head)
    if kind == "gzip":
        return GzipReader(raw)  # type: ignore[return-value]
    if kind == "zstd":
        import zstandard
        return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)  # type: ignore[return-value]
    if kind == "xz":
        import lzma
        return lzma.LZMAFile(raw)  # type: ignore[return-value]
    if kind == "bzip2":
        import bz2
        return bz2.BZ2File(raw)  # type: ignore[return-value]
    return raw


class _Forward:
    """The uncompressed tar stream as a forward-only seekable file, so that ``tarfile``
    parses headers in its "r:" mode while file data is written straight from the
    inflater's buffers (``chunks``): no copies through tarfile's stream buffer and
    ``ExFileObject``. Seeking backwards is an error; seeking forwards reads (and so
    hashes and bounds) the bytes skipped."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.buf = b""
        self.pos = 0    # index of the next byte in buf
        self.off = 0    # stream offset of buf[pos]

    def tell(self) -> int:
        return self.off

    def _more(self) -> bool:
        self.buf, self.pos = self.raw.read(_CHUNK), 0
        return bool(self.buf)

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            parts = [self.buf[self.pos:]]
            while self._more():
                parts.append(self.buf)
            self.buf, self.pos = b"", 0
            data = b"".join(parts)
            self.off += len(data)
            return data
        avail = len(self.buf) - self.pos
        if n <= avail:  # the common case: a 512-byte header inside the buffer
            data = self.buf[self.pos:self.pos + n]
            self.pos += n
            self.off += n
            return data
        parts = []
        while n > 0:
            if self.pos >= len(self.buf) and not self._more():
                break
            piece = self.buf[self.pos:self.pos + n]
            self.pos += len(piece)
            self.off += len(piece)
            n -= len(piece)
            parts.append(piece)
        return b"".join(parts)

    def chunks(self, n: int) -> Any:
        """The next ``n`` bytes as memoryviews of the inflater's buffers (no copy)."""
        while n > 0:
            if self.pos >= len(self.buf) and not self._more():
                raise EOFError("unexpected end of data")
            take = min(n, len(self.buf) - self.pos)
            view = memoryview(self.buf)[self.pos:self.pos + take]
            self.pos += take
            self.off += take
            n -= take
            yield view

    def seek(self, where: int, whence: int = 0) -> int:
        if whence == 1:
            where += self.off
        elif whence != 0:
            raise OSError("seek from the end of a stream")
        skip = where - self.off
        if skip < 0:
            raise OSError("seek backwards in a stream")
        while skip > 0:
            if self.pos >= len(self.buf) and not self._more():
                break  # as a file: a seek past the end is allowed; the next read is short
            take = min(skip, len(self.buf) - self.pos)
            self.pos += take
            self.off += take
            skip -= take
        self.off += skip
        return self.off

    def seekable(self) -> bool:
        return True


class PeekReader:
    """Lets us sniff the first bytes of a non-seekable stream and still read them."""

    def __init__(self, raw: BinaryIO, head: bytes) -> None:
        self.raw, self.head = raw, head

    def read(self, n: int = -1) -> bytes:
        if self.head:
            if n < 0:
                data, self.head = self.head + self.raw.read(), b""
                return data
            data, self.head = self.head[:n], self.head[n:]
            if len(data) < n:
                data += self.raw.read(n - len(data))
            return data
        return self.raw.read(n)


def clean_name(name: str) -> list[str]:
    """Lexically cleaned components of an archive name; refuses names leaving the root."""
    if name.startswith("/"):
        raise LayerError(f"entry {name!r} has an absolute path")
    parts: list[str] = []
    for comp in name.split("/"):
        if comp in ("", "."):
            continue
        if comp == "..":
            if not parts:
                raise LayerError(f"entry {name!r} escapes the layer directory")
            parts.pop()
            continue
        if "\x00" in comp:
            raise LayerError(f"entry {name!r} has a NUL byte")
        parts.append(comp)
    return parts


class _DirAttrs:
    __slots__ = ("parts", "mode", "mtime_ns")

    def __init__(self, parts: tuple[str, ...], mode: int, mtime_ns: int) -> None:
        self.parts, self.mode, self.mtime_ns = parts, mode, mtime_ns


class _Unpacker:
    def __init__(self, root_fd: int) -> None:
        self.root_fd = root_fd
        self.is_root = os.geteuid() == 0
        self.cache: "OrderedDict[tuple[str, ...], int]" = OrderedDict()
        self.dirs: dict[tuple[str, ...], _DirAttrs] = {}

    # -- directory walking -------------------------------------------------------------
    def open_dir(self, parts: tuple[str, ...], create: bool = True) -> int:
        """A descriptor of the directory ``parts`` under the root, never via a symlink."""
        if not parts:
            return self.root_fd
        fd = self.cache.get(parts)
        if fd is not None:
            self.cache.move_to_end(parts)
            return fd
        parent = self.open_dir(parts[:-1], create)
        name = parts[-1]
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                raise LayerError(f"{'/'.join(parts)!r} does not exist in this layer") from None
            os.mkdir(name, 0o755, dir_fd=parent)  # an implicit parent, as tar does
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise LayerError(f"{'/'.join(parts)!r} is a symlink or not a directory: "
                                 "refusing to write through it") from None
            raise
        self.cache[parts] = fd
        return fd

    def trim(self) -> None:
        """Close the least recently used descriptors; only between entries, so no caller
        holds one (closing a parent mid-entry could let its number be reused)."""
        while len(self.cache) > 128:
            os.close(self.cache.popitem(last=False)[1])

    def forget(self, parts: tuple[str, ...]) -> None:
        """Drop cached descriptors at or below ``parts`` (it is being replaced)."""
        for key in [k for k in self.cache if k[:len(parts)] == parts]:
            os.close(self.cache.pop(key))
        for key in [k for k in self.dirs if k[:len(parts)] == parts]:
            del self.dirs[key]

    def close(self) -> None:
        for fd in self.cache.values():
            os.close(fd)
        self.cache.clear()

    def lstat(self, parent: int, name: str) -> os.stat_result | None:
        try:
            return os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def remove(self, parent: int, parts: tuple[str, ...], keep_dir: bool = False) -> bool:
        """Remove what is at ``parts`` (not following links); True if a dir was kept."""
        st = self.lstat(parent, parts[-1])
        if st is None:
            return False
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return True
            self.forget(parts)
            shutil.rmtree(parts[-1], dir_fd=parent)
        else:
            os.unlink(parts[-1], dir_fd=parent)
        return False

    # -- entries -------------------------------------------------------------------------
    def apply(self, tf: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        self.trim()
        parts = tuple(clean_name(m.name))
        mtime_ns = int(m.mtime * 1_000_000_000) if m.mtime else 0
        if not parts:  # "./": the layer root itself
            if m.isdir():
                self.dirs[()] = _DirAttrs((), m.mode, mtime_ns)
                self.chown_fd(self.root_fd, m)
            return
        base = parts[-1]
        parent = self.open_dir(parts[:-1])
        if base.startswith(WHITEOUT_PREFIX):
            self.whiteout(parent, parts, m)
            return
        if m.isdir():
            if not self.remove(parent, parts, keep_dir=True):
                os.mkdir(base, 0o700, dir_fd=parent)
            fd = self.open_dir(parts, create=False)
            self.chown_fd(fd, m)
            self.set_xattrs(fd, m)
            self.dirs[parts] = _DirAttrs(parts, m.mode, mtime_ns)
            return
        self.remove(parent, parts)
        if m.isreg():
            fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o600, dir_fd=parent)
            try:
                if m.sparse is None and isinstance(tf.fileobj, _Forward) and tf.fileobj.tell() == m.offset_data:
                    for view in tf.fileobj.chunks(m.size):
                        _write_all(fd, view)
                else:  # a sparse file: tarfile maps its holes
                    src = tf.extractfile(m)
                    if src is not None:
                        while chunk := src.read(_CHUNK):
                            _write_all(fd, chunk)
                self.chown_fd(fd, m)
                os.fchmod(fd, stat.S_IMODE(m.mode))  # after chown, which clears setuid
                self.set_xattrs(fd, m)
                os.utime(fd, ns=(mtime_ns, mtime_ns))
            finally:
                os.close(fd)
        elif m.issym():
            os.symlink(m.linkname, base, dir_fd=parent)  # never followed by us
            if self.is_root:
                os.chown(base, m.uid, m.gid, dir_fd=parent, follow_symlinks=False)
            os.utime(base, ns=(mtime_ns, mtime_ns), dir_fd=parent, follow_symlinks=False)
        elif m.islnk():
            target = tuple(clean_name(m.linkname))
            if not target:
                raise LayerError(f"hardlink {m.name!r} points at the layer root")
            tparent = self.open_dir(target[:-1], create=False)
            st = self.lstat(tparent, target[-1])
            if st is None:
                raise LayerError(f"hardlink {m.name!r} -> {m.linkname!r}: target is not in this layer")
            if stat.S_ISDIR(st.st_mode):
                raise LayerError(f"hardlink {m.name!r} -> {m.linkname!r}: target is a directory")
            os.link(target[-1], base, src_dir_fd=tparent, dst_dir_fd=parent, follow_symlinks=False)
        elif m.ischr() or m.isblk():
            if not self.is_root:
                raise LayerError(f"device node {m.name!r} needs root")
            kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
            os.mknod(base, kind | 0o600, os.makedev(m.devmajor, m.devminor), dir_fd=parent)
            self.attrs_by_name(parent, base, m, mtime_ns)
        elif m.isfifo():
            os.mkfifo(base, 0o600, dir_fd=parent)
            self.attrs_by_name(parent, base, m, mtime_ns)
        else:
            raise LayerError(f"entry {m.name!r} has an unsupported type {m.type!r}")

    def attrs_by_name(self, parent: int, base: str, m: tarfile.TarInfo, mtime_ns: int) -> None:
        """Attributes of a just-created node that cannot be opened (fifo, device)."""
        fd = os.open(base, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        try:
            proc = f"/proc/self/fd/{fd}"  # operates on exactly the node we created
            if self.is_root:
                os.chown(proc, m.uid, m.gid)
            os.chmod(proc, stat.S_IMODE(m.mode))
            os.utime(proc, ns=(mtime_ns, mtime_ns))
        finally:
            os.close(fd)

    def whiteout(self, parent: int, parts: tuple[str, ...], m: tarfile.TarInfo) -> None:
        base = parts[-1]
        if base == OPAQUE:
            os.setxattr(parent, OPAQUE_XATTR, b"y")
            return
        name = base[len(WHITEOUT_PREFIX):]
        if name in ("", ".", ".."):
            raise LayerError(f"invalid whiteout {m.name!r}")
        if not self.is_root:
            raise LayerError(f"whiteout {m.name!r} needs root (overlay whiteouts are device nodes)")
        target = parts[:-1] + (name,)
        self.remove(parent, target)
        os.mknod(name, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=parent)

    def chown_fd(self, fd: int, m: tarfile.TarInfo) -> None:
        if self.is_root:
            os.fchown(fd, m.uid, m.gid)

    def set_xattrs(self, fd: int, m: tarfile.TarInfo) -> None:
        for key, value in m.pax_headers.items():
            if not key.startswith("SCHILY.xattr."):
                continue
            name = key[len("SCHILY.xattr."):]
            if name.startswith("trusted.overlay.") or name.startswith("security.selinux"):
                continue  # never let an archive steer overlayfs or relabel the host
            try:
                os.setxattr(fd, name, value.encode("utf-8", "surrogateescape"))
            except OSError as exc:
                if exc.errno not in (errno.ENOTSUP, errno.EPERM):
                    raise

    def finish_dirs(self) -> None:
        """Modes and mtimes of directories, deepest first (children no longer change them)."""
        for parts in sorted(self.dirs, key=len, reverse=True):
            self.trim()
            attrs = self.dirs[parts]
            fd = self.open_dir(parts, create=False)
            os.fchmod(fd, stat.S_IMODE(attrs.mode))
            os.utime(fd, ns=(attrs.mtime_ns, attrs.mtime_ns))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def unpack(raw: BinaryIO, dest: Path, *, expected_diff_id: str | None = None,
           expected_digest: str | None = None, limits: Limits | None = None,
           label: str = "layer") -> UnpackResult:
    """Apply the layer stream ``raw`` (compressed or not) to the empty directory ``dest``.

    Raises LayerError (or DigestMismatch) prefixed with ``label``; the caller removes
    ``dest`` on failure, so nothing partial survives.
    """
    limits = limits or Limits()
    outer = _HashingReader(raw, hash=expected_digest is not None)  # digest of the blob as stored
    head = b""
    while len(head) < 8:  # a network stream may hand out fewer bytes per read
        more = outer.read(8 - len(head))
        if not more:
            break
        head += more
    inner = _HashingReader(decompressed(PeekReader(outer, head), head), limits.max_bytes, label,  # type: ignore[arg-type]
                           threaded=HASH_THREAD)
    root_fd = os.open(dest, _DIR_FLAGS)
    u = _Unpacker(root_fd)
    entries = 0
    try:
        try:
            with tarfile.open(fileobj=_Forward(inner), mode="r:", errorlevel=2) as tf:  # type: ignore[call-overload]
                while (m := tf.next()) is not None:
                    tf.members.clear()  # tarfile keeps every member: not needed, and it feeds the GC
                    entries += 1
                    if entries > limits.max_entries:
                        raise LayerError(f"more than {limits.max_entries} entries (tar bomb?)")
                    u.apply(tf, m)
            inner.drain()
            outer.drain()
            u.finish_dirs()
        except LayerError as exc:
            raise LayerError(f"{label}: {exc}") from None
        except (tarfile.TarError, EOFError, OSError, ValueError, OverflowError) as exc:
            raise LayerError(f"{label}: corrupt or truncated layer: {exc}") from None
        except Exception as exc:  # zlib.error, zstd.ZstdError, lzma.LZMAError...
            if type(exc).__module__ in ("zlib", "zlib_ng", "igzip_lib", "isal_zlib", "zstandard", "zstd", "_lzma", "lzma", "_bz2", "gzip"):
                raise LayerError(f"{label}: corrupt or truncated layer: {exc}") from None
            raise
    finally:
        inner.close()
        u.close()
        os.close(root_fd)
    if expected_digest and outer.digest != expected_digest:
        raise DigestMismatch(f"{label}: blob digest mismatch: expected {expected_digest}, got {outer.digest}")
    if expected_diff_id and inner.digest != expected_diff_id:
        raise DigestMismatch(f"{label}: diff_id mismatch: expected {expected_diff_id}, got {inner.digest}")
    return UnpackResult(inner.digest, inner.count, entries, outer.digest if expected_digest else None)


def unpack_file(path: Path, dest: Path, **kw) -> UnpackResult:
    with open(path, "rb") as f:
        return unpack(f, dest, **kw)
