"""The networking state on disk: one JSON document guarded by a file lock.

Why one document: every change (allocate an address, publish a port) must check the
whole picture (other networks' subnets, other containers' ports) and commit atomically,
even when several containers start at once, from threads or from processes. A
``flock`` on a side file serialises writers; the document is replaced with
write-then-rename so that a crash never leaves half a file.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
from pathlib import Path
from typing import Any, Iterator

EMPTY: dict[str, Any] = {"networks": {}, "endpoints": {}, "ports": {}, "sandboxes": {}}


class StateStore:
    """Read and transactionally update ``<state_dir>/networking.json``."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = Path(state_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / "networking.json"
        self.lock_path = self.dir / "networking.lock"
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._current: dict[str, Any] | None = None
        self._tmp: tuple[Path, int] | None = None   # the open transaction's file
        self._tmp_unused = False                      # ... not renamed onto the document yet
        self._owner: int | None = None                # the thread in the outer transaction
        # the document as last read or written by this process: (stat key, text, parsed).
        # Every writer (any process) renames a new file onto the document, so its inode,
        # times and size say whether the text is still current: one stat instead of an
        # open, a read and a JSON parse per call (a start asks ~7 times).
        self._cached: tuple[tuple, bytes, dict[str, Any] | None] | None = None
        self._cache_lock = threading.Lock()

    @staticmethod
    def _key(st: os.stat_result) -> tuple:
        return (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)

    def _text(self) -> tuple[tuple | None, bytes]:
        """The document's current text (from the cache when the file did not change)."""
        try:
            key = self._key(os.stat(self.path))
        except FileNotFoundError:
            return None, b""
        cached = self._cached
        if cached is not None and cached[0] == key:
            return key, cached[1]
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None, b""
        try:
            key = self._key(os.fstat(fd))  # the file read, whatever replaced the path meanwhile
            chunks = []
            while True:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            os.close(fd)
        text = b"".join(chunks)
        with self._cache_lock:
            self._cached = (key, text, None)
        return key, text

    @staticmethod
    def _parse(text: bytes) -> dict[str, Any]:
        data = json.loads(text) if text else {}
        for key, value in EMPTY.items():
            data.setdefault(key, type(value)())
        return data

    def read(self) -> dict[str, Any]:
        """A snapshot of the state (a fresh copy; changing it changes nothing)."""
        return self._parse(self._text()[1])

    def view(self) -> dict[str, Any]:
        """The current state, shared with other callers: for reading only, never to be
        changed (one parse per version of the document instead of one per call)."""
        key, text = self._text()
        cached = self._cached
        if key is not None and cached is not None and cached[0] == key and cached[2] is not None:
            return cached[2]
        data = self._parse(text)
        if key is not None:
            with self._cache_lock:
                if self._cached is not None and self._cached[0] == key:
                    self._cached = (key, text, data)
        return data

    @contextlib.contextmanager
    def transaction(self) -> Iterator[dict[str, Any]]:
        """Lock, yield the state for changing in place, write it back if no exception.

        Re-entrant within a thread: an inner transaction shares the outer document.
        """
        # The file the document is written to is made before the locks are taken:
        # making an inode costs ext4 0.5-10 ms when files come and go fast (its
        # allocator skips recently deleted inodes), and every starting container
        # queues on these locks; inside them only write + rename are left.
        nested = self._owner == threading.get_ident()
        tmp, tmp_fd = self._new_tmp(nested)
        with self._thread_lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self._current  # type: ignore[misc]
                finally:
                    self._depth -= 1
                return
            self._tmp_unused = True
            try:
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except BaseException:
                os.close(tmp_fd)
                os.unlink(tmp)
                raise
            self._owner = threading.get_ident()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                self._current = self.read()
                self._depth = 1
                self._tmp = (tmp, tmp_fd)
                try:
                    yield self._current
                    self._write(self._current)
                finally:
                    self._depth = 0
                    self._current = None
                    self._tmp = None
            finally:
                self._owner = None
                os.close(fd)
                os.close(tmp_fd)
                if self._tmp_unused:  # an error: the document was not written
                    try:
                        os.unlink(tmp)
                    except FileNotFoundError:
                        pass

    def write_now(self, data: dict[str, Any]) -> None:
        """Inside a transaction: put the document on disk now (an intent that must be
        there before a kernel object is made); the transaction still writes at its end."""
        if not self._depth or data is not self._current:
            raise RuntimeError("write_now() outside of its transaction")
        self._write(data)

    def _new_tmp(self, nested: bool = False) -> tuple[Path, int]:
        """A new empty file beside the document, private to this thread's transaction
        (``nested``: none, -1; an inner transaction writes nothing of its own)."""
        tmp = self.path.with_suffix(f".tmp{os.getpid()}.{threading.get_ident()}")
        if nested:
            return tmp, -1
        return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)

    def _write(self, data: dict[str, Any]) -> None:
        # compact: with ``indent`` the json module falls back to its pure-Python
        # encoder, ten times slower, and this runs under the lock every start waits on
        text = json.dumps(data, separators=(",", ":")).encode()
        if self._tmp_unused and self._tmp is not None:
            self._write_fd(self._tmp, text)
            self._tmp_unused = False
            return
        # write_now() already used this transaction's file: the next write needs another
        held = self._new_tmp()
        try:
            self._write_fd(held, text)
        finally:
            os.close(held[1])

    def _write_fd(self, held: tuple[Path, int], text: bytes) -> None:
        tmp, fd = held  # a new, empty file (O_TRUNC)
        view = memoryview(text)
        while view:
            view = view[os.pwrite(fd, view, len(text) - len(view)):]
        os.replace(tmp, self.path)
        key = self._key(os.fstat(fd))  # after the rename, which sets the file's ctime
        with self._cache_lock:
            self._cached = (key, text, None)


HOST_LOCK = Path("/run/lock/pystack-networking.lock")


@contextlib.contextmanager
def host_lock() -> Iterator[None]:
    """A lock shared by every NetworkManager on the host, whatever its state dir.

    Two engines (or an engine and a test) choosing a subnet at the same moment would
    both see it free; holding this from the choice until the bridge owns the subnet
    makes the choice and the claim one step.
    """
    path = HOST_LOCK if HOST_LOCK.parent.is_dir() else Path("/tmp") / HOST_LOCK.name
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
