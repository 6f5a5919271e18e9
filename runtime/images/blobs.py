"""Content-addressed blobs: ``blobs/sha256/<hex>``, written only after their digest checks.

Why this shape: an interrupted or concurrent write must never leave a blob whose bytes
differ from its name. Every writer streams into its own temp file under ``tmp/``,
hashes as it goes, compares digest and size, fsyncs, then ``rename``s into place; a
reader therefore sees a complete blob or none. Partial downloads are kept under a
name derived from the digest so a later pull can resume them with an HTTP Range.
"""
from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path
from typing import BinaryIO, Iterable

from .errors import DigestMismatch

CHUNK = 1 << 20
# fsync before rename: a power cut then cannot leave a short blob under a digest name
FSYNC = os.environ.get("PYSTACK_FSYNC", "1") != "0"


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def split_digest(digest: str) -> tuple[str, str]:
    algo, _, hexpart = digest.partition(":")
    if algo not in ("sha256", "sha512") or not hexpart or any(c not in "0123456789abcdef" for c in hexpart):
        raise DigestMismatch(f"unsupported or malformed digest {digest!r}")
    return algo, hexpart


class BlobWriter:
    """A temp file that hashes what is written; ``commit`` verifies and renames it."""

    def __init__(self, store: "BlobStore", *, expected: str | None = None,
                 expected_size: int | None = None, path: Path | None = None,
                 resume: bool = False) -> None:
        self.store = store
        self.expected = expected
        self.expected_size = expected_size
        self.path = path or store.tmp / f"w-{uuid.uuid4().hex}"
        algo = split_digest(expected)[0] if expected else "sha256"
        self.hasher = hashlib.new(algo)
        self.size = 0
        if resume and self.path.exists():
            with open(self.path, "rb") as f:  # rehash what is already there
                while chunk := f.read(CHUNK):
                    self.hasher.update(chunk)
                    self.size += len(chunk)
            self.file: BinaryIO = open(self.path, "ab")
        else:
            self.file = open(self.path, "wb")

    def write(self, data: bytes) -> int:
        if self.expected_size is not None and self.size + len(data) > self.expected_size:
            raise DigestMismatch(f"blob {self.expected} is larger than its declared size {self.expected_size}")
        self.hasher.update(data)
        self.size += len(data)
        return self.file.write(data)

    @property
    def digest(self) -> str:
        return f"{self.hasher.name}:{self.hasher.hexdigest()}"

    def commit(self) -> str:
        """Verify digest and size, then move into the store; returns the digest."""
        self.file.flush()
        if FSYNC:
            os.fsync(self.file.fileno())
        self.file.close()
        digest = self.digest
        try:
            if self.expected and digest != self.expected:
                raise DigestMismatch(f"digest mismatch: expected {self.expected}, got {digest}")
            if self.expected_size is not None and self.size != self.expected_size:
                raise DigestMismatch(f"size mismatch for {digest}: expected {self.expected_size}, got {self.size}")
            dest = self.store.path(digest)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(self.path, 0o644)
            os.replace(self.path, dest)  # same bytes if another writer won the race
        except BaseException:
            self.path.unlink(missing_ok=True)
            raise
        return digest

    def abort(self, keep: bool = False) -> None:
        """Drop the temp file (or keep it, for a resumable partial download)."""
        if not self.file.closed:
            self.file.close()
        if not keep:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> "BlobWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None or not self.file.closed:
            self.abort()


class BlobStore:
    """Blobs by digest under ``root/blobs``; temp files under ``root/tmp``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.tmp = self.root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        algo, hexpart = split_digest(digest)
        return self.root / "blobs" / algo / hexpart

    def exists(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def size(self, digest: str) -> int:
        return self.path(digest).stat().st_size

    def read(self, digest: str) -> bytes:
        try:
            return self.path(digest).read_bytes()
        except FileNotFoundError:
            raise DigestMismatch(f"blob {digest} is missing from the store") from None

    def writer(self, **kw) -> BlobWriter:
        return BlobWriter(self, **kw)

    def partial_path(self, digest: str) -> Path:
        """Where a resumable download of ``digest`` is kept between attempts."""
        return self.tmp / f"partial-{split_digest(digest)[1]}"

    def put(self, data: bytes, expected: str | None = None) -> str:
        with self.writer(expected=expected) as w:
            w.write(data)
            return w.commit()

    def put_file(self, src: BinaryIO, expected: str | None = None, expected_size: int | None = None) -> str:
        with self.writer(expected=expected, expected_size=expected_size) as w:
            while chunk := src.read(CHUNK):
                w.write(chunk)
            return w.commit()

    def all(self) -> Iterable[str]:
        base = self.root / "blobs"
        if not base.is_dir():
            return
        for algo_dir in base.iterdir():
            for f in algo_dir.iterdir():
                yield f"{algo_dir.name}:{f.name}"

    def delete(self, digest: str) -> None:
        self.path(digest).unlink(missing_ok=True)
