"""Named and anonymous volumes on disk: ``<root>/<name>/_data`` plus a small JSON record.

Layout (like Docker's ``/var/lib/docker/volumes``)::

    <root>/.lock                       one flock serialises every change
    <root>/<name>/volume.json          name, driver, driver_opts, labels, created
    <root>/<name>/_data/               the data (a tmpfs is mounted here for type: tmpfs)
    <root>/<name>/users/<container-id> one empty file per container using the volume
    <root>/_snapshots/<name>/<tag>/    see snapshot.py (``_`` cannot start a volume name)

Users are recorded per container id so that ``remove`` can refuse a volume in use even
after the engine was killed and restarted; ``sync_users`` drops records of containers the
engine no longer knows.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from pystack.errors import Conflict, NotFound, UserError
from pystack.volumes import local_driver

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
ANON_LABEL = "com.docker.volume.anonymous"
_CID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


def validate_name(name: str) -> str:
    """Docker's rule for local volume names; a path or '..' can never get through."""
    if isinstance(name, str) and len(name) == 1 and name.isalnum() and name.isascii():
        raise UserError(f"create {name}: volume name is too short, names should be at least two "
                        f"alphanumeric characters")
    if not isinstance(name, str) or not NAME_RE.match(name) or name in (".", ".."):
        raise UserError(f"{name!r} includes invalid characters for a local volume name, only "
                        f"\"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host "
                        f"directory, use absolute path")
    return name


def validate_container_id(cid: str) -> str:
    """Container ids name files (use records, staging dirs): no '/', no '..'."""
    if not isinstance(cid, str) or not _CID_RE.match(cid) or cid in (".", ".."):
        raise UserError(f"invalid container id {cid!r}")
    return cid


_validate_cid = validate_container_id


@dataclass
class VolumeRecord:
    """One volume, as ``docker volume inspect`` shows it (``to_api``)."""

    name: str
    driver: str = "local"
    driver_opts: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    created_at: str = ""
    mountpoint: str = ""
    users: list[str] = field(default_factory=list)

    @property
    def anonymous(self) -> bool:
        return ANON_LABEL in self.labels

    @property
    def options(self) -> local_driver.LocalOptions:
        return local_driver.parse_opts(self.name, self.driver_opts)

    @property
    def data_path(self) -> str:
        """Where the bytes are: the bound host device for ``o: bind`` volumes, else ``_data``."""
        opts = self.options
        return opts.device if opts.kind == "bind" else self.mountpoint

    def to_api(self) -> dict:
        """The Docker Engine API's Volume object."""
        # empty maps are null, as dockerd (API 1.41) sends them
        return {"CreatedAt": self.created_at, "Driver": self.driver, "Labels": dict(self.labels) or None,
                "Mountpoint": self.mountpoint, "Name": self.name,
                "Options": dict(self.driver_opts) or None, "Scope": "local"}


class VolumeStore:
    """The engine's volumes; every method is safe to call from several processes at once."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    # -- plumbing ---------------------------------------------------------------------------

    def _ensure_root(self) -> None:
        if not self.root.is_dir():
            self.root.mkdir(parents=True, exist_ok=True)
            os.chmod(self.root, 0o700)  # CVE-2021-41091: host users must not traverse volume data

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        self._ensure_root()
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _dir(self, name: str) -> Path:
        return self.root / validate_name(name)

    def _read(self, name: str) -> VolumeRecord:
        vdir = self._dir(name)
        try:
            meta = json.loads((vdir / "volume.json").read_text())
        except FileNotFoundError:
            raise NotFound(f"no such volume: {name}") from None
        users_dir = vdir / "users"
        users = sorted(p.name for p in users_dir.iterdir()) if users_dir.is_dir() else []
        return VolumeRecord(name=meta["name"], driver=meta.get("driver", "local"),
                            driver_opts=meta.get("driver_opts") or {}, labels=meta.get("labels") or {},
                            created_at=meta.get("created_at", ""), mountpoint=str(vdir / "_data"),
                            users=users)

    # -- the contract -----------------------------------------------------------------------

    def create(self, name: str | None = None, driver: str | None = "local",
               driver_opts: dict[str, str] | None = None, labels: dict[str, str] | None = None) -> VolumeRecord:
        """Create a volume, or return the existing one of that name (Docker is idempotent here).

        ``name=None`` makes an anonymous volume: 64 random hex digits and the label
        ``com.docker.volume.anonymous``.
        """
        return self._create(name, driver, driver_opts, labels, None)[0]

    def acquire_or_create(self, name: str | None, container_id: str, driver: str | None = "local",
                          driver_opts: dict[str, str] | None = None,
                          labels: dict[str, str] | None = None) -> tuple[VolumeRecord, bool]:
        """Create when missing and record the user in one locked step, so that a concurrent
        ``prune`` can never remove a fresh (still unused) volume in between. Returns
        (record, created)."""
        _validate_cid(container_id)
        return self._create(name, driver, driver_opts, labels, container_id)

    def _create(self, name: str | None, driver: str | None, driver_opts: dict[str, str] | None,
                labels: dict[str, str] | None, user: str | None) -> tuple[VolumeRecord, bool]:
        driver = driver or "local"
        labels = dict(labels or {})
        if name is None or name == "":
            name = secrets.token_hex(32)
            labels.setdefault(ANON_LABEL, "")
        validate_name(name)
        if driver != "local":
            raise UserError(f"volume {name}: driver {driver!r} is not supported (pystack has only 'local')")
        opts = dict(driver_opts or {})
        parsed = local_driver.parse_opts(name, opts)
        with self._lock():
            try:
                existing = self._read(name)
            except NotFound:
                existing = None
            if existing is not None:
                if existing.driver != driver:
                    raise Conflict(f"volume {name} already exists with driver {existing.driver}")
                return (self._acquire_locked(name, user) if user else existing), False
            if parsed.kind == "bind" and not os.path.isdir(parsed.device):
                raise UserError(f"volume {name}: device {parsed.device}: no such directory")
            tmp = self.root / f".new-{name}-{secrets.token_hex(4)}"
            tmp.mkdir(mode=0o700)
            try:
                (tmp / "_data").mkdir(mode=0o755)
                (tmp / "users").mkdir(mode=0o700)
                meta = {"name": name, "driver": driver, "driver_opts": opts, "labels": labels,
                        # RFC 3339 in local time, "Z" for UTC, as dockerd writes it
                        "created_at": datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")
                        .replace("+00:00", "Z")}
                (tmp / "volume.json").write_text(json.dumps(meta, indent=1))
                if user:
                    # The user is recorded before the volume becomes visible: a kill between
                    # the two can no longer leave an anonymous volume that nobody owns.
                    (tmp / "users" / user).touch()
                os.rename(tmp, self.root / name)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            return (self._acquire_locked(name, user) if user else self._read(name)), True

    def get(self, name: str) -> VolumeRecord:
        """The volume ``name``; :class:`NotFound` ("no such volume: NAME") otherwise."""
        return self._read(name)

    def exists(self, name: str) -> bool:
        try:
            self._read(name)
            return True
        except NotFound:
            return False

    def list(self, filters: dict[str, list[str] | str] | None = None) -> list[VolumeRecord]:
        """All volumes, filtered as ``docker volume ls --filter`` does (name, label, dangling, driver)."""
        if not self.root.is_dir():
            return []
        out = []
        for entry in sorted(self.root.iterdir()):
            if not NAME_RE.match(entry.name) or not (entry / "volume.json").exists():
                continue
            try:
                rec = self._read(entry.name)
            except (NotFound, ValueError, KeyError):
                continue
            if _matches(rec, filters or {}):
                out.append(rec)
        return out

    def remove(self, name: str, force: bool = False) -> None:
        """Remove a volume and its data. Refused while a container uses it, even with ``force``
        (which only makes a missing volume not an error), as Docker does."""
        with self._lock():
            try:
                rec = self._read(name)
            except NotFound:
                if force:
                    return
                raise
            if rec.users:
                raise Conflict(f"remove {name}: volume is in use - [{', '.join(rec.users)}]")
            self._delete(rec)

    def _delete(self, rec: VolumeRecord) -> None:
        vdir = self._dir(rec.name)
        local_driver.unmount(rec.mountpoint)
        graveyard = self.root / f".rm-{rec.name}-{secrets.token_hex(4)}"
        os.rename(vdir, graveyard)  # atomic: the name is free at once, data removal may take time
        shutil.rmtree(graveyard, ignore_errors=True)

    def prune(self, all: bool = False, filters: dict[str, list[str] | str] | None = None) -> tuple[list[str], int]:
        """Remove unused volumes: anonymous ones only, or every unused one with ``all``
        (Docker 23+'s ``volume prune`` and ``--all``). Returns (names, bytes reclaimed)."""
        removed, reclaimed = [], 0
        with self._lock():
            for rec in self.list(filters):
                if rec.users or (not all and not rec.anonymous):
                    continue
                reclaimed += _du(rec.mountpoint) if rec.options.kind != "bind" else 0
                self._delete(rec)
                removed.append(rec.name)
        return removed, reclaimed

    # -- users (the engine says which containers use a volume) ------------------------------

    def acquire(self, name: str, container_id: str) -> VolumeRecord:
        """Record ``container_id`` as a user of ``name`` and make its data available (mounting
        a tmpfs volume at its first user). Returns the record with the data path to mount."""
        _validate_cid(container_id)
        with self._lock():
            return self._acquire_locked(name, container_id)

    def _acquire_locked(self, name: str, container_id: str) -> VolumeRecord:
        rec = self._read(name)
        opts = rec.options
        if opts.kind == "bind" and not os.path.isdir(opts.device):
            raise UserError(f"volume {name}: device {opts.device}: no such directory")
        if opts.needs_host_mount and not local_driver.is_mounted(rec.mountpoint):
            local_driver.mount_tmpfs(opts, rec.mountpoint)
        (self._dir(name) / "users" / container_id).touch()
        return self._read(name)

    def release(self, name: str, container_id: str) -> None:
        """Forget one user; a tmpfs volume is unmounted (its content gone) after the last."""
        _validate_cid(container_id)
        with self._lock():
            try:
                rec = self._read(name)
            except NotFound:
                return
            with contextlib.suppress(FileNotFoundError):
                (self._dir(name) / "users" / container_id).unlink()
            rec = self._read(name)
            if not rec.users and rec.options.needs_host_mount:
                local_driver.unmount(rec.mountpoint)

    def release_container(self, container_id: str, remove_anonymous: bool = False) -> list[str]:
        """Forget ``container_id`` everywhere (it was removed); returns the volumes it used.

        With ``remove_anonymous`` (``docker rm -v``, ``compose down -v``/``rm -v``), its
        anonymous volumes that no other container uses are removed too; named ones never.
        """
        used = [rec for rec in self.list() if container_id in rec.users]
        for rec in used:
            if remove_anonymous and rec.anonymous:
                self._release_and_remove(rec.name, container_id)
            else:
                self.release(rec.name, container_id)
        return [rec.name for rec in used]

    def _release_and_remove(self, name: str, container_id: str) -> None:
        """Forget the user and remove the anonymous volume in one locked step (a kill between
        a release and a separate remove used to leak the volume). Another container still
        using it (``volumes_from``) keeps it, as Docker does."""
        with self._lock():
            try:
                rec = self._read(name)
            except NotFound:
                return
            others = [u for u in rec.users if u != container_id]
            if others:
                with contextlib.suppress(FileNotFoundError):
                    (self._dir(name) / "users" / container_id).unlink()
                return
            self._delete(rec)  # the user record goes with the directory

    def recover(self) -> list[str]:
        """After a crash (engine or CLI killed mid-operation): finish or undo what was half
        done, so no volume is left without its data. Returns one line per repair. Call it
        at engine start, before serving (it also sweeps copy-up overlays in progress).

        Every change is a rename of a complete directory, so there is always a consistent
        side to go back to: an interrupted create or remove leaves ``.new-*``/``.rm-*`` (gone
        with), an interrupted restore leaves ``_data.old-*`` (put back when ``_data`` is
        missing, deleted when the swap had finished) and ``_data.restore-*`` (deleted).
        """
        from pystack.volumes.pins import cleanup_pins

        repairs: list[str] = []
        if not self.root.is_dir():
            return repairs
        with self._lock():
            cleanup_pins(self.root / ".scratch")  # copy-up overlays of a killed planner
            for entry in sorted(self.root.iterdir()):
                if entry.name.startswith((".new-", ".rm-")):
                    shutil.rmtree(entry, ignore_errors=True)
                    repairs.append(f"removed unfinished {entry.name}")
                elif NAME_RE.match(entry.name) and entry.is_dir():
                    repairs += self._recover_volume(entry)
            snaps = self.root / "_snapshots"
            if snaps.is_dir():
                for vdir in snaps.iterdir():
                    for tdir in vdir.iterdir() if vdir.is_dir() else []:
                        if tdir.name.startswith((".new-", ".rm-")):
                            shutil.rmtree(tdir, ignore_errors=True)
                            repairs.append(f"removed unfinished snapshot {vdir.name}/{tdir.name}")
        return repairs

    def _recover_volume(self, vdir: Path) -> list[str]:
        repairs = []
        data = vdir / "_data"
        olds = sorted(vdir.glob("_data.old-*"))
        if not data.exists() and olds:
            os.rename(olds.pop(0), data)
            repairs.append(f"volume {vdir.name}: interrupted restore rolled back")
        for leftover in [*olds, *vdir.glob("_data.restore-*")]:
            shutil.rmtree(leftover, ignore_errors=True)
            repairs.append(f"volume {vdir.name}: removed {leftover.name}")
        try:
            rec = self._read(vdir.name)
            if rec.options.needs_host_mount and not rec.users and local_driver.is_mounted(rec.mountpoint):
                local_driver.unmount(rec.mountpoint)  # mounted, then killed before the user was recorded
                repairs.append(f"volume {vdir.name}: unused tmpfs unmounted")
        except (NotFound, UserError, ValueError, KeyError):
            pass
        return repairs

    def sync_users(self, live_container_ids: set[str]) -> None:
        """After an engine restart: drop user records of containers that no longer exist."""
        for rec in self.list():
            for cid in rec.users:
                if cid not in live_container_ids:
                    self.release(rec.name, cid)

    def users(self, name: str) -> list[str]:
        return self._read(name).users

    # -- snapshots --------------------------------------------------------------------------

    def snapshot(self, name: str, tag: str):
        """Freeze a copy of the volume's data under ``tag`` (reflink where possible); see snapshot.py.

        The store lock is not held while copying (a full copy can take seconds and must not
        stop containers from starting); the snapshot appears atomically when complete."""
        from pystack.volumes import snapshot

        return snapshot.take(self, self._read(name), tag)

    def restore(self, name: str, tag: str):
        """Put the volume's data back as it was at ``snapshot(name, tag)``; refused while in use."""
        from pystack.volumes import snapshot

        meta = snapshot.read_meta(self, name, tag)
        if not self.exists(name):  # restoring a removed volume brings it back as it was
            self.create(name, meta.get("driver", "local"), meta.get("driver_opts"), meta.get("labels"))
        return snapshot.restore(self, name, tag)  # takes the store lock only for the swap

    def snapshots(self, name: str | None = None):
        from pystack.volumes import snapshot

        return snapshot.list_snapshots(self, name)

    def remove_snapshot(self, name: str, tag: str) -> None:
        from pystack.volumes import snapshot

        with self._lock():
            snapshot.remove(self, name, tag)


def _matches(rec: VolumeRecord, filters: dict[str, list[str] | str]) -> bool:
    for key, raw in filters.items():
        values = [raw] if isinstance(raw, str) else list(raw)
        if not values:
            continue
        if key == "name":
            if not any(v in rec.name for v in values):
                return False
        elif key == "driver":
            if rec.driver not in values:
                return False
        elif key == "label":
            for v in values:
                k, eq, want = v.partition("=")
                if k not in rec.labels or (eq and rec.labels[k] != want):
                    return False
        elif key == "label!":
            for v in values:
                k, eq, want = v.partition("=")
                if k in rec.labels and (not eq or rec.labels[k] == want):
                    return False
        elif key == "dangling":
            want = values[0].lower() in ("true", "1")
            if want != (not rec.users):
                return False
        else:
            raise UserError(f"invalid filter {key!r}")
    return True


def _du(path: str) -> int:
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for f in filenames:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, f)).st_size
    return total
