"""Container records on disk: what the engine knows of each container, found again after a crash.

One folder per container under ``<root>/containers/<id>/`` holding ``record.json``
(written to a temp file and renamed: a kill -9 never leaves half a record; a flusher thread
fsyncs it right after, so the engine's event loop never waits for the disk; a power cut
can lose the last milliseconds of changes, never a whole record that was replaced). Names and
ids resolve as Docker's do: a full id, a unique id prefix, or a name with or without ``/``.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import threading
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from pystack.errors import Conflict, NotFound, UserError

NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
ID_RE = re.compile(r"^[0-9a-f]{64}$")


def now_rfc3339() -> str:
    """Docker's timestamp form, with nanosecond digits."""
    t = datetime.now(timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond:06d}000Z"


def new_id() -> str:
    return secrets.token_hex(32)


@dataclass
class ContainerRecord:
    """The persistent part of a container; run-time state comes from the runtime."""

    id: str
    name: str                                   # without the leading "/"
    created: str
    image: str                                  # the reference as given
    image_id: str
    config: dict[str, Any]                      # Docker's Config (after image defaults)
    host_config: dict[str, Any]
    networking_config: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)   # Status, ExitCode, StartedAt, FinishedAt, ...
    restart_count: int = 0
    network_settings: dict[str, Any] = field(default_factory=dict)
    mounts: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)   # engine-private (bundle path, log path...)

    @property
    def labels(self) -> dict[str, str]:
        return self.config.get("Labels") or {}


_FIELDS = tuple(f.name for f in fields(ContainerRecord))


class RecordStore:
    """All container records of one engine root."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._cache: dict[str, ContainerRecord] = {}
        self._lock = threading.RLock()  # the engine saves from its event loop and its threads
        self._flusher = _Flusher()
        # folders of removed containers, kept for new ones (see make_dir)
        self.spare_root = self.root.parent / (self.root.name + "-spare")
        try:
            self._spares = [p.name for p in self.spare_root.iterdir() if ID_RE.match(p.name)]
        except FileNotFoundError:
            self._spares = []
        self._spare_lock = threading.Lock()
        self.keep_files = lambda: True  # the engine says when bind-mounted files may be reused
        for path in self.root.iterdir():
            record_file = path / "record.json"
            if ID_RE.match(path.name) and record_file.exists():
                try:
                    self._cache[path.name] = ContainerRecord(**json.loads(record_file.read_text()))
                except (ValueError, TypeError):
                    continue  # a record cut half-way by a crash before its first rename: ignore

    def dir(self, container_id: str) -> Path:
        if not ID_RE.match(container_id):
            raise UserError(f"invalid container id {container_id!r}")
        return self.root / container_id

    def save(self, record: ContainerRecord, first: bool = False) -> None:
        """Write ``record`` to disk (temp file + rename: a kill never leaves half of it).

        ``first``: the container's first record, written straight to ``record.json``
        (one new inode, no rename) by a create whose intent marker is still set: a
        record cut by a crash is then rolled back with the rest of the create. Every
        inode made costs ext4 0.1-0.7 ms when files come and go fast, and each rename
        frees one that later allocations must skip for a while."""
        d = self.dir(record.id)
        # one C-encoder pass over the fields (asdict() deep-copies first, and
        # json.dump() encodes chunk by chunk in Python: ten times the CPU)
        data = json.dumps({name: getattr(record, name) for name in _FIELDS}).encode()
        path = d / "record.json"
        with self._lock:
            if first:
                self._write_new(path, data, exclusive=False)  # (a recycled folder's is empty)
            else:
                tmp = d / "record.json.tmp"
                try:
                    self._write_new(tmp, data, exclusive=False)
                except FileNotFoundError:  # the folder went (a removal): as before, make it
                    d.mkdir(exist_ok=True, mode=0o700)
                    self._write_new(tmp, data, exclusive=False)
                # the replaced record's inode becomes the next save's temp file (a hard
                # link kept across the rename): no inode made, none freed, per save
                prev = d / "record.json.prev"
                kept = _link(path, prev)
                os.replace(tmp, path)
                if kept:
                    os.replace(prev, tmp)
            self._cache[record.id] = record
        self._flusher.add(path)

    @staticmethod
    def _write_new(path: Path, data: bytes, exclusive: bool = True) -> None:
        write_file(path, data, exclusive=exclusive, mode=0o666)

    def sync_later(self, path: Path) -> None:
        """Have ``path`` (a file just renamed into place) fsynced by the flusher."""
        self._flusher.add(Path(path))

    def flush(self) -> None:
        """Wait until every saved record is on stable storage (engine shutdown)."""
        self._flusher.flush()

    def add(self, record: ContainerRecord, save: bool = True) -> None:
        """Save a new record; the name must be free (checked and taken in one step).

        ``save=False``: only take the name (in memory); the caller saves the record
        with ``save(record, first=True)`` once it is complete."""
        if not NAME_RE.match(record.name):
            raise UserError(f"Invalid container name ({record.name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        with self._lock:
            for other in self._cache.values():
                if other.name == record.name:
                    raise Conflict(f'Conflict. The container name "/{record.name}" is already in use by '
                                   f'container "{other.id}". You have to remove (or rename) that container '
                                   f'to be able to reuse that name.')
            if save:
                self.save(record)
            else:
                self._cache[record.id] = record

    def make_dir(self, container_id: str) -> bool:
        """Make the folder of a new container: a spare one (a removed container's, its
        ``upper``, ``work`` and ``rootfs`` inside) renamed, else a new one. True when
        recycled. On ext4 without a journal (as here) making an inode costs 0.1-10 ms
        while files come and go fast (the allocator skips every inode freed in the last
        minutes); a rename makes none, and the removal before freed none."""
        d = self.dir(container_id)
        while True:
            with self._spare_lock:
                name = self._spares.pop() if self._spares else None
            if name is None:
                d.mkdir(mode=0o700)
                return False
            try:
                os.rename(self.spare_root / name, d)
                return True
            except OSError:
                continue  # gone (another engine on this root? a hand): the next one

    def remove(self, container_id: str) -> None:
        d = self.dir(container_id)
        with self._lock:
            self._cache.pop(container_id, None)
        # the record first: a kill during the rmtree must not leave a record whose intent
        # file is already gone (a "removing" container nobody finishes); the intent, if
        # any, stays until the directory goes, so recovery finishes the removal. An empty
        # record.json is no record (a folder being recycled keeps the file's inode).
        try:
            os.truncate(d / "record.json", 0)
        except FileNotFoundError:
            pass
        except OSError:
            try:
                (d / "record.json").unlink()
            except FileNotFoundError:
                pass
        if not self._recycle(d):
            shutil.rmtree(d, ignore_errors=True)

    MAX_SPARES = 128
    _KEEP_DIRS = ("upper", "work", "rootfs")

    def _recycle(self, d: Path) -> bool:
        """Empty ``d`` down to what a new container reuses and move it to the spares;
        False to have it deleted instead. Every step is idempotent: a kill half-way
        leaves a folder with an empty record.json that recovery removes again."""
        with self._spare_lock:
            if len(self._spares) >= self.MAX_SPARES:
                return False
        keep_files = ("record.json", "record.json.tmp", "config.json")
        if self.keep_files():
            # bind-mounted into the container: reused only when no other container can
            # hold them (network_mode container:X mounts X's), else new ones
            keep_files += ("hostname", "hosts", "resolv.conf")
        try:
            if not d.is_dir():
                return False
            for entry in os.scandir(d):
                if entry.name in self._KEEP_DIRS and entry.is_dir(follow_symlinks=False):
                    if entry.name == "upper":
                        _empty_dir(entry.path)
                    continue
                if entry.name in keep_files and entry.is_file(follow_symlinks=False):
                    os.truncate(entry.path, 0)
                    continue
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)
            for sub in self._KEEP_DIRS:
                if not os.path.isdir(d / sub):
                    return False
            for name in os.listxattr(d):
                os.removexattr(d, name)
            self.spare_root.mkdir(mode=0o700, exist_ok=True)
            os.rename(d, self.spare_root / d.name)
        except OSError:
            return False
        with self._spare_lock:
            self._spares.append(d.name)
        return True

    def rename(self, record: ContainerRecord, new_name: str) -> None:
        new_name = new_name.lstrip("/")
        if not NAME_RE.match(new_name):
            raise UserError(f"Invalid container name ({new_name})")
        with self._lock:
            if any(o.name == new_name and o.id != record.id for o in self._cache.values()):
                raise Conflict(f'Conflict. The container name "/{new_name}" is already in use')
            record.name = new_name
            self.save(record)

    def get(self, ref: str) -> ContainerRecord:
        """By full id, name (with or without '/'), or unique id prefix — Docker's order."""
        with self._lock:
            if ref in self._cache:
                return self._cache[ref]
            values = list(self._cache.values())
        name = ref.lstrip("/")
        for record in values:
            if record.name == name:
                return record
        if ref and re.fullmatch(r"[0-9a-f]+", ref):
            found = [r for r in values if r.id.startswith(ref)]
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise UserError(f"multiple IDs found with provided prefix: {ref}")
        raise NotFound(f"No such container: {ref}")

    def __iter__(self) -> Iterator[ContainerRecord]:
        with self._lock:
            values = list(self._cache.values())
        return iter(sorted(values, key=lambda r: r.created, reverse=True))

    def __len__(self) -> int:
        return len(self._cache)


def _link(src: Path, dst: Path) -> bool:
    try:
        os.link(src, dst)
        return True
    except FileExistsError:  # left by a kill between the link and its rename
        try:
            os.unlink(dst)
            os.link(src, dst)
            return True
        except OSError:
            return False
    except OSError:
        return False


def write_file(path: str | os.PathLike, data: bytes, exclusive: bool = False, mode: int = 0o644) -> None:
    """Create (``exclusive``: only a new file) or overwrite ``path`` with ``data``: one open,
    whole writes, no pathlib and no text layer (the engine writes these per container)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | (os.O_EXCL if exclusive else os.O_TRUNC)
    fd = os.open(path, flags, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def _empty_dir(path: str) -> None:
    """Remove everything inside ``path`` and give it back a new folder's attributes.

    ``path`` is an overlay's upper dir: it *is* the container's ``/`` (the merged root takes
    its owner, mode, times and xattrs), so a ``chmod``/``chown``/``setfattr`` of ``/`` by the
    previous container must not reach the next one: root-owned, 0755, now, no xattrs, as
    ``os.mkdir(path, 0o755)`` makes it."""
    for entry in os.scandir(path):
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)
    for name in os.listxattr(path):
        os.removexattr(path, name)
    os.chown(path, 0, 0)
    os.chmod(path, 0o755)
    os.utime(path)


class _Flusher:
    """fsync()s saved files in a background thread, each path once per batch.

    Saves happen on the engine's event loop; an fsync there (1-30 ms on a busy disk) held
    up every other request. The rename already makes a save atomic for a crashed engine."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._pending: set[Path] = set()
        self._busy = False
        self._thread: threading.Thread | None = None

    def add(self, path: Path) -> None:
        with self._cond:
            self._pending.add(path)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="record-fsync", daemon=True)
                self._thread.start()
            self._cond.notify()

    def flush(self) -> None:
        with self._cond:
            while self._pending or self._busy:
                if self._thread is None:
                    break
                self._cond.wait(1.0)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending:
                    self._cond.wait()
                batch, self._pending = self._pending, set()
                self._busy = True
            for path in batch:
                try:
                    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                except OSError:
                    continue  # removed meanwhile
                try:
                    os.fsync(fd)
                except OSError:
                    pass
                finally:
                    os.close(fd)
            with self._cond:
                self._busy = False
                self._cond.notify_all()
