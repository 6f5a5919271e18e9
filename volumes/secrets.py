"""Secrets and configs without Swarm, as Docker Compose does them.

- ``file:`` sources are bind-mounted read-only (``uid``/``gid``/``mode`` ignored, as in
  Docker Compose: a bind mount cannot change ownership). The compose layer turns them
  into ``HostConfig.Mounts`` of type bind; nothing here is needed for them.
- ``environment:`` and (configs) ``content:`` sources become files with the requested
  ``uid``, ``gid`` and ``mode``. Two ways to get them into a container:
  ``SecretFiles.materialize`` writes them under the engine's run directory (a tmpfs on
  most hosts: never on disk) and returns read-only ``nosuid,nodev,noexec`` bind mounts
  for the OCI spec; ``tar_archive`` builds the tar Docker Compose copies into a created
  container (``PUT /containers/{id}/archive``), for engines such as dockerd.

The content is never logged: :class:`SecretFile`'s repr hides it and no error message
includes it.
"""
from __future__ import annotations

import io
import os
import posixpath
import re
import secrets as _random
import shutil
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from pystack.errors import UserError

_CID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


@dataclass
class SecretFile:
    """One secret or config file to place in a container. ``content`` never shows in repr."""

    name: str
    kind: str  # "secret" or "config"
    target: str
    content: bytes = field(repr=False)
    uid: int = 0
    gid: int = 0
    mode: int = 0o444

    def __post_init__(self) -> None:
        if self.kind not in ("secret", "config"):
            raise ValueError(f"kind must be secret or config, not {self.kind!r}")
        self.target = default_target(self.kind, self.name, self.target)
        if not 0 <= self.mode <= 0o7777:
            raise UserError(f"{self.kind} {self.name}: invalid mode {self.mode:o}")


def default_target(kind: str, name: str, target: str | None = None) -> str:
    """Compose's targets: secrets under ``/run/secrets/`` (relative ``target`` too), configs at
    ``/<name>``; an absolute ``target`` is used as is. ``..`` cannot climb out."""
    if not target:
        target = name
    if not target.startswith("/"):
        target = ("/run/secrets/" if kind == "secret" else "/") + target
    clean = posixpath.normpath(target)
    if clean in ("/", "//") or any(p == ".." for p in target.split("/")) or "\x00" in target:
        raise UserError(f"{kind} {name}: invalid target {target!r}")
    return clean


def content_from_definition(kind: str, name: str, definition: Mapping[str, object],
                            environ: Mapping[str, str]) -> bytes | None:
    """The bytes of an ``environment:`` or ``content:`` source; None for ``file:`` sources.

    A missing environment variable is an error, as in Docker Compose.
    """
    if definition.get("environment"):
        var = str(definition["environment"])
        if var not in environ:
            raise UserError(f"{kind} {name}: environment variable {var} is not set")
        return environ[var].encode()
    if definition.get("content") is not None:
        if kind != "config":
            raise UserError(f"secret {name}: content is only allowed for configs")
        return str(definition["content"]).encode()
    if definition.get("file"):
        return None
    raise UserError(f"{kind} {name}: needs file, environment" + (" or content" if kind == "config" else ""))


class SecretFiles:
    """Per-container secret/config files under ``root`` (default ``run_root()/secrets``)."""

    def __init__(self, root: Path | str | None = None) -> None:
        if root is None:
            from pystack.paths import run_root

            root = run_root() / "secrets"
        self.root = Path(root)

    def _dir(self, container_id: str) -> Path:
        if not _CID_RE.match(container_id) or container_id in (".", ".."):
            raise UserError(f"invalid container id {container_id!r}")
        return self.root / container_id

    def materialize(self, container_id: str, files: Sequence[SecretFile]) -> list[dict]:
        """Write the files (owner, mode as asked) and return their OCI read-only bind mounts."""
        targets = [f.target for f in files]
        dup = {t for t in targets if targets.count(t) > 1}
        if dup:
            raise UserError(f"duplicate secret/config target: {', '.join(sorted(dup))}")
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        cdir = self._dir(container_id)
        shutil.rmtree(cdir, ignore_errors=True)  # a restart re-materializes: no stale copies pile up
        cdir.mkdir(mode=0o700)
        mounts = []
        try:
            for f in files:
                path = cdir / f"{f.kind}-{_random.token_hex(8)}"
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
                try:
                    view = memoryview(f.content)
                    while view:
                        view = view[os.write(fd, view):]
                    os.fchown(fd, f.uid, f.gid)
                    os.fchmod(fd, f.mode)
                finally:
                    os.close(fd)
                mounts.append({"destination": f.target, "type": "bind", "source": str(path),
                               "options": ["rbind", "rprivate", "ro", "nosuid", "nodev", "noexec"]})
        except BaseException:
            self.remove(container_id)
            raise
        return mounts

    def remove(self, container_id: str) -> None:
        """Delete a container's files (when the container is removed)."""
        shutil.rmtree(self._dir(container_id), ignore_errors=True)


def tar_archive(files: Sequence[SecretFile]) -> bytes:
    """An uncompressed tar of the files at their targets (paths relative to ``/``), with
    owner and mode set, for the Engine API's archive upload (Docker Compose's way)."""
    buf = io.BytesIO()
    now = time.time()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for f in files:
            info = tarfile.TarInfo(f.target.lstrip("/"))
            info.size = len(f.content)
            info.mode = f.mode
            info.uid, info.gid = f.uid, f.gid
            info.mtime = now
            tar.addfile(info, io.BytesIO(f.content))
    return buf.getvalue()
