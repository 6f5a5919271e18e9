"""Docker-CLI-like rendering: human sizes and ages, ``--format`` templates, inspect JSON.

Why here and not in the CLI: the engine's ``/images/json`` and ``/images/{id}/json``
need the same shapes as ``pystack image ls/inspect`` print.
"""
from __future__ import annotations

from pystack.humanize import human_duration  # noqa: F401 - also re-exported

import json
import re
from datetime import datetime, timezone
from typing import Any

from pystack.errors import UserError

from .store import Image, ImageStore


def human_size(size: float) -> str:
    """go-units HumanSizeWithPrecision(size, 3): decimal units, ``2.44MB``."""
    units = ["B", "kB", "MB", "GB", "TB", "PB"]
    i = 0
    while size >= 1000 and i < len(units) - 1:
        size /= 1000.0
        i += 1
    return f"{size:.3g}{units[i]}"




def parse_time(text: str) -> datetime:
    try:
        text = re.sub(r"(\.\d{6})\d+", r"\1", text).replace("Z", "+00:00")
        return datetime.fromisoformat(text)
    except ValueError:
        return datetime.fromtimestamp(0, timezone.utc)


def since(text: str) -> str:
    delta = (datetime.now(timezone.utc) - parse_time(text)).total_seconds()
    return human_duration(delta) + " ago"


def go_value(v: Any) -> str:
    """How Go's text/template prints a value."""
    if v is None:
        return "<no value>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return "[" + " ".join(go_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{go_value(x)}" for k, x in sorted(v.items())) + "]"
    return str(v)


_FIELD = re.compile(r"{{\s*(json\s+)?\.([A-Za-z0-9_.]*)\s*}}")


def render(template: str, obj: dict[str, Any]) -> str:
    """The ``{{.A.B}}`` / ``{{json .A}}`` subset of Go templates, plus ``\\t``/``\\n``."""
    def field(m: re.Match) -> str:
        value: Any = obj
        for part in [p for p in m.group(2).split(".") if p]:
            if not isinstance(value, dict) or part not in value:
                raise UserError(f"template: can't evaluate field {part} in {template!r}")
            value = value[part]
        return json.dumps(value) if m.group(1) else go_value(value)
    out = _FIELD.sub(field, template)
    if "{{" in out:
        raise UserError(f"template: unsupported syntax in {template!r} (supported: {{{{.Field}}}}, {{{{json .Field}}}})")
    return out.replace("\\t", "\t").replace("\\n", "\n")


def filter_images(store: ImageStore, images: list[Image], filters: tuple[str, ...] | list[str]) -> list[Image]:
    """``docker images --filter``: dangling, reference, label, before, since (ANDed by key)."""
    from fnmatch import fnmatch
    by_key: dict[str, list[str]] = {}
    for f in filters:
        key, sep, value = f.partition("=")
        if not sep or key not in ("dangling", "reference", "label", "before", "since"):
            raise UserError(f"invalid filter {f!r} (dangling, reference, label, before, since)")
        by_key.setdefault(key, []).append(value)

    def keep(img: Image) -> bool:
        for value in by_key.get("dangling", []):
            if value not in ("true", "false", "1", "0"):
                raise UserError(f"invalid filter 'dangling={value}'")
            if (not img.repo_tags) != (value in ("true", "1")):
                return False
        refs = by_key.get("reference")
        if refs and not any(fnmatch(t, pat) or fnmatch(t.rsplit(":", 1)[0], pat) for t in img.repo_tags
                            for pat in refs):
            return False
        labels = img.container_config.get("Labels") or {}
        for value in by_key.get("label", []):
            k, sep, v = value.partition("=")
            if k not in labels or (sep and labels[k] != v):
                return False
        for value in by_key.get("before", []):
            if not img.created < store.resolve(value).created:
                return False
        for value in by_key.get("since", []):
            if not img.created > store.resolve(value).created:
                return False
        return True
    return [i for i in images if keep(i)]


def ls_rows(images: list[Image], *, all_digests: bool = False) -> list[dict[str, Any]]:
    """One row per tag (a ``<none>`` row for an untagged image), as ``docker images``."""
    rows = []
    for img in images:
        digests = {d.split("@")[0]: d.split("@")[1] for d in img.repo_digests}
        pairs = [(t.rsplit(":", 1)[0], t.rsplit(":", 1)[1]) for t in img.repo_tags] or \
            [(r, "<none>") for r in digests] or [("<none>", "<none>")]
        for repo, tag in pairs:
            rows.append({"Repository": repo, "Tag": tag, "ID": img.id, "Digest": digests.get(repo, "<none>"),
                         "CreatedSince": since(img.created), "CreatedAt": img.created,
                         "Size": human_size(img.size), "Containers": "N/A"})
    return rows


def inspect_doc(store: ImageStore, img: Image) -> dict[str, Any]:
    """``docker image inspect``'s shape for our image."""
    history = img.config.get("history") or []
    lower = [str(p) for p in (store.layer_dir(l["chain_id"]) / "diff" for l in img.layers)]
    doc = {
        "Id": img.id, "RepoTags": img.repo_tags, "RepoDigests": img.repo_digests, "Parent": "",
        "Comment": (history[-1].get("comment", "") if history else ""), "Created": img.created,
        "DockerVersion": "", "Author": img.config.get("author", ""), "Config": img.container_config,
        "Architecture": img.config.get("architecture", ""), "Os": img.config.get("os", ""),
        "Size": img.size,
        "GraphDriver": {"Name": "overlay", "Data": {"LowerDir": ":".join(reversed(lower))}},
        "RootFS": {"Type": "layers", "Layers": (img.config.get("rootfs") or {}).get("diff_ids", [])},
        "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
    }
    if img.config.get("variant"):
        doc["Variant"] = img.config["variant"]
    return doc


def history_rows(img: Image) -> list[dict[str, Any]]:
    """``docker history``: newest first; a layer's size goes to its non-empty history entry."""
    sizes = [l.get("unpacked_size", 0) for l in img.layers]
    rows = []
    for h in img.config.get("history") or []:
        size = 0 if h.get("empty_layer") else (sizes.pop(0) if sizes else 0)
        rows.append({"Id": "<missing>", "Created": h.get("created", ""), "CreatedBy": h.get("created_by", ""),
                     "Size": size, "Comment": h.get("comment", "")})
    rows.reverse()
    if rows:
        rows[0]["Id"] = img.id
    return rows
