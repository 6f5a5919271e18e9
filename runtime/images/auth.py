"""Registry credentials and ``WWW-Authenticate`` challenges.

Credentials live where the docker CLI keeps them (``$DOCKER_CONFIG/config.json``, else
``~/.docker/config.json``, ``auths.<host>.auth`` = base64 ``user:password``), so
``docker login`` and ``pystack login`` share them. Credential helpers (``credsStore``,
``credHelpers``) are not supported yet: they are reported, not silently ignored.
"""
from __future__ import annotations

import base64
import json
import os
import re
import uuid
from pathlib import Path

from pystack.errors import UserError

from .reference import registry_key

_PARAM_RE = re.compile(r'([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]+))')


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="...",service="...",scope="..."`` -> ("bearer", params)."""
    scheme, _, rest = header.strip().partition(" ")
    params = {m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3)).replace('\\"', '"')
              for m in _PARAM_RE.finditer(rest)}
    return scheme.lower(), params


def config_path() -> Path:
    base = os.environ.get("DOCKER_CONFIG")
    return Path(base) / "config.json" if base else Path.home() / ".docker" / "config.json"


def _load() -> dict:
    path = config_path()
    try:
        return json.loads(path.read_text() or "{}")
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise UserError(f"{path}: invalid JSON: {exc}") from None


def get_credentials(host: str) -> tuple[str, str] | None:
    """(user, password) for a registry host from the docker config, or None."""
    conf = _load()
    key = registry_key(host)
    auths = conf.get("auths") or {}
    entry = auths.get(key) or auths.get(f"https://{key}") or auths.get(f"http://{key}")
    if entry is None and key == host:
        for k, v in auths.items():  # "https://host/v1/" spellings
            if k.split("://", 1)[-1].split("/", 1)[0] == host:
                entry = v
                break
    if not entry:
        return None
    if entry.get("auth"):
        try:
            user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise UserError(f"{config_path()}: invalid auth for {key}") from None
        return user, password
    if entry.get("username"):
        return entry["username"], entry.get("password", "")
    return None


def store_credentials(host: str, user: str, password: str) -> Path:
    conf = _load()
    conf.setdefault("auths", {})[registry_key(host)] = {
        "auth": base64.b64encode(f"{user}:{password}".encode()).decode()}
    return _save(conf)


def remove_credentials(host: str) -> bool:
    conf = _load()
    removed = (conf.get("auths") or {}).pop(registry_key(host), None) is not None
    if removed:
        _save(conf)
    return removed


def _save(conf: dict) -> Path:
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(conf, f, indent="\t")
    os.replace(tmp, path)
    return path
