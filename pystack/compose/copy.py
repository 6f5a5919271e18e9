"""``cp``: copy between a service container and the host through the archive API.

``SERVICE:PATH`` names the container side. Like ``docker cp``: copying to an existing
directory puts the source inside it; to a new path, the copy takes that name.
"""
from __future__ import annotations

import base64
import io
import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any, Callable

from pystack.errors import NotFound, UserError


def _split(arg: str) -> tuple[str | None, str]:
    if ":" in arg and not arg.startswith(("/", ".")):
        service, _, path = arg.partition(":")
        return service, path
    return None, arg


def _container_is_dir(client: Any, cid: str, path: str) -> bool | None:
    """Whether ``path`` is a directory in the container; None when it does not exist."""
    try:
        resp = client.stream("HEAD", f"/containers/{cid}/archive", params={"path": path})
    except NotFound:
        return None
    stat = resp.getheader("X-Docker-Container-Path-Stat")
    resp.close()
    if not stat:
        return None
    mode = json.loads(base64.b64decode(stat)).get("mode", 0)
    return bool(mode & (1 << 31))  # Go's os.ModeDir


def copy(client: Any, src: str, dest: str, resolve: Callable[[str], str], follow_link: bool = False) -> None:
    s_service, s_path = _split(src)
    d_service, d_path = _split(dest)
    if bool(s_service) == bool(d_service):
        raise UserError("cp: exactly one of SRC and DEST must be SERVICE:PATH")
    if s_service:
        _from_container(client, resolve(s_service), s_path, Path(d_path))
    else:
        _to_container(client, resolve(d_service or ""), Path(s_path), d_path, follow_link)


def _from_container(client: Any, cid: str, path: str, dest: Path) -> None:
    resp = client.get_archive(cid, path)
    data = resp.read()
    resp.close()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
        if not members:
            raise UserError(f"cp: {path}: nothing to copy")
        top = members[0].name.split("/")[0]
        if dest.is_dir():
            tar.extractall(dest, filter="tar")
            return
        with tempfile.TemporaryDirectory(dir=dest.parent if dest.parent.exists() else None) as tmp:
            tar.extractall(tmp, filter="tar")
            shutil.move(os.path.join(tmp, top), dest)


def _to_container(client: Any, cid: str, src: Path, dest: str, follow_link: bool) -> None:
    if not src.exists():
        raise UserError(f"cp: {src}: no such file or directory")
    is_dir = _container_is_dir(client, cid, dest)
    if is_dir or dest.endswith("/"):
        target_dir, name = dest, src.name
    else:
        target_dir, name = os.path.dirname(dest.rstrip("/")) or "/", os.path.basename(dest.rstrip("/"))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", dereference=follow_link) as tar:
        tar.add(str(src), arcname=name)
    client.put_archive(cid, target_dir, buf.getvalue())
