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

    def read(self) -> dict[str, Any]:
        """A snapshot of the state (a fresh copy; changing it changes nothing)."""
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            data = {}
        for key, value in EMPTY.items():
            data.setdefault(key, type(value)())
        return data

    @contextlib.contextmanager
    def transaction(self) -> Iterator[dict[str, Any]]:
        """Lock, yield the state for changing in place, write it back if no exception.

        Re-entrant within a thread: an inner transaction shares the outer document.
        """
        with self._thread_lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self._current  # type: ignore[misc]
                finally:
                    self._depth -= 1
                return
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                self._current = self.read()
                self._depth = 1
                try:
                    yield self._current
                    self._write(self._current)
                finally:
                    self._depth = 0
                    self._current = None
            finally:
                os.close(fd)

    def write_now(self, data: dict[str, Any]) -> None:
        """Inside a transaction: put the document on disk now (an intent that must be
        there before a kernel object is made); the transaction still writes at its end."""
        if not self._depth or data is not self._current:
            raise RuntimeError("write_now() outside of its transaction")
        self._write(data)

    def _write(self, data: dict[str, Any]) -> None:
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        # compact: with ``indent`` the json module falls back to its pure-Python
        # encoder, ten times slower, and this runs under the lock every start waits on
        tmp.write_text(json.dumps(data, sort_keys=True, separators=(",", ":")))
        os.replace(tmp, self.path)


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
