"""The compose-spec merge rules (``13-merge.md``; compose-go ``override`` package).

Both sides are in transform.py's canonical form. Mappings merge key by key; scalars are
replaced (a ``null`` on the right keeps the left); sequences are appended and then made
unique by a key that depends on what they hold (ports by ip:published:target/protocol,
volumes by target, secrets/configs by target, plain lists by value), the later entry
taking the earlier one's place. ``command``, ``entrypoint`` and ``healthcheck.test`` are
replaced whole; ``environment``-like mappings take the right side's ``null`` too.
"""
from __future__ import annotations

from contextvars import ContextVar
TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs every command ~4 ms to import: annotations only
    from typing import Any, Callable, Iterable

from .errors import ComposeError, KeyPath

Path = tuple[str, ...]  # key path with list indexes left out, services' names as "*"


def _replace(left: Any, right: Any, path: Path) -> Any:
    return right


# set while the uninterpolated (raw) model is merged: compose-go merges the mappings
# below as ``K=V`` sequences then, whatever their syntax (the typed model reads both)
RAW_MERGE: ContextVar[bool] = ContextVar("RAW_MERGE", default=False)


def _update(left: Any, right: Any, path: Path) -> Any:
    """Mappings merged key by key, whatever their syntax (``[K=V]`` or ``{K: V}``)."""
    if isinstance(left, dict) and isinstance(right, dict) and not RAW_MERGE.get():
        out = dict(left)
        out.update(right)
        return out
    lseq, rseq = _as_sequence(left), _as_sequence(right)
    if lseq is None or rseq is None:
        return right if right is not None else left
    # the uninterpolated model keeps compose-go's sequence form (``mergeToSequence``: a
    # mapping becomes ``K=V`` items sorted as text; a later item takes the place of an
    # earlier one with the same key)
    out: list[Any] = []
    seen: dict[str, int] = {}
    for item in lseq + rseq:
        key = str(item).partition("=")[0]
        if key in seen:
            out[seen[key]] = item
        else:
            seen[key] = len(out)
            out.append(item)
    return out


def _update_mapping(left: Any, right: Any, path: Path) -> Any:
    """A mapping merged key by key, even in the raw model (``additional_contexts``)."""
    if isinstance(left, dict) and isinstance(right, dict):
        return {**left, **right}
    return _update(left, right, path)


def _as_sequence(value: Any) -> list[Any] | None:
    from .transform import go_str

    if isinstance(value, dict):
        return sorted(str(k) if v is None else f"{k}={go_str(v)}" for k, v in value.items())
    if isinstance(value, list):
        return list(value)
    return None


def _logging(left: Any, right: Any, path: Path) -> Any:
    if not (isinstance(left, dict) and isinstance(right, dict)):
        return right if right is not None else left
    if "driver" not in right or "driver" not in left or right["driver"] == left["driver"]:
        return _mappings(left, right, path)
    return right


def _ulimit(left: Any, right: Any, path: Path) -> Any:
    # compose-go's mergeUlimit merges the override with itself: the override's entry
    # replaces the base's whole (``{soft: 5}`` over ``{soft: 1, hard: 2}`` is
    # ``{soft: 5}``, which the schema then rejects, as Compose does)
    return right if right is not None else left


def _extra_hosts(left: Any, right: Any, path: Path) -> Any:
    if RAW_MERGE.get():  # as sequences, unique by the whole entry
        lseq, rseq = _as_sequence(left), _as_sequence(right)
        if lseq is None or rseq is None:
            return right if right is not None else left
        out: list[Any] = []
        for item in lseq + rseq:
            if item not in out:
                out.append(item)
        return out
    if not (isinstance(left, dict) and isinstance(right, dict)):
        return right if right is not None else left
    out = {k: list(v) for k, v in left.items()}
    for host, ips in right.items():
        have = out.setdefault(host, [])
        have.extend(ip for ip in ips if ip not in have)
    return out


def _ipam_config(left: Any, right: Any, path: Path) -> Any:
    if not (isinstance(left, list) and isinstance(right, list)):
        return right if right is not None else left
    out = list(left)
    index = {p.get("subnet"): i for i, p in enumerate(out) if isinstance(p, dict)}
    for pool in right:
        key = pool.get("subnet") if isinstance(pool, dict) else None
        if key in index:
            out[index[key]] = _mappings(out[index[key]], pool, path)
        else:
            out.append(pool)
    return out


_SPECIALS: dict[Path, Callable[[Any, Any, Path], Any]] = {
    ("services", "*", "command"): _replace,
    ("services", "*", "entrypoint"): _replace,
    ("services", "*", "healthcheck", "test"): _replace,
    ("services", "*", "environment"): _update,
    ("services", "*", "labels"): _update,
    ("services", "*", "annotations"): _update,
    ("services", "*", "sysctls"): _update,
    ("services", "*", "build", "args"): _update,
    ("services", "*", "build", "labels"): _update,
    ("services", "*", "build", "additional_contexts"): _update_mapping,
    ("services", "*", "build", "extra_hosts"): _extra_hosts,
    ("services", "*", "deploy", "labels"): _update,
    ("services", "*", "extra_hosts"): _extra_hosts,
    ("services", "*", "logging"): _logging,
    ("services", "*", "ulimits", "*"): _ulimit,
    ("networks", "*", "labels"): _update,
    ("volumes", "*", "labels"): _update,
    ("networks", "*", "ipam", "config"): _ipam_config,
}

# the sequences that are made unique after a merge, and the key of each entry


def _value_key(item: Any) -> Any:
    return repr(item) if isinstance(item, (dict, list)) else item


def _go_verb(value: Any, verb: str) -> str:
    """``fmt.Sprintf("%s"/"%d", value)`` for a YAML value, bad verbs included."""
    if value is None:
        return f"%!{verb}(<nil>)"
    if isinstance(value, bool):
        return f"%!{verb}(bool={'true' if value else 'false'})"
    if isinstance(value, int):
        return str(value) if verb == "d" else f"%!{verb}({'uint64' if value >= 0 else 'int64'}={value})"
    if isinstance(value, str):
        return value if verb == "s" else f"%!{verb}(string={value})"
    return f"%!{verb}({type(value).__name__}={value!r})"


def _port_key(item: Any) -> Any:
    """compose-go 2.40's ``portIndexer``: ``host:published:target/protocol`` formatted with
    ``%s:%s:%d/%s``, so ``published: 8080`` and ``published: "8080"`` differ."""
    if isinstance(item, dict):
        host = item["host_ip"] if "host_ip" in item else "0.0.0.0"
        protocol = item["protocol"] if "protocol" in item else "tcp"
        return (f"{_go_verb(host, 's')}:{_go_verb(item.get('published'), 's')}:"
                f"{_go_verb(item.get('target'), 'd')}/{_go_verb(protocol, 's')}")
    return str(item)


def _target_key(item: Any) -> Any:
    return item.get("target") if isinstance(item, dict) else item


def _mount_key(default: str) -> Callable[[Any], Any]:
    def key(item: Any) -> Any:
        if isinstance(item, dict):
            return item.get("target") or f"{default}/{item.get('source')}"
        return f"{default}/{item}"
    return key


def _env_file_key(item: Any) -> Any:
    return item.get("path") if isinstance(item, dict) else item


_UNIQUE: dict[Path, Callable[[Any], Any]] = {
    ("services", "*", "build", "tags"): _value_key,
    ("services", "*", "build", "platforms"): _value_key,
    ("services", "*", "cap_add"): _value_key,
    ("services", "*", "cap_drop"): _value_key,
    ("services", "*", "devices"): _target_key,
    ("services", "*", "configs"): _mount_key(""),
    ("services", "*", "secrets"): _mount_key("/run/secrets"),
    ("services", "*", "dns"): _value_key,
    ("services", "*", "dns_opt"): _value_key,
    ("services", "*", "dns_search"): _value_key,
    ("services", "*", "env_file"): _env_file_key,
    ("services", "*", "expose"): _value_key,
    ("services", "*", "links"): _value_key,
    ("services", "*", "networks", "*", "aliases"): _value_key,
    ("services", "*", "networks", "*", "link_local_ips"): _value_key,
    ("services", "*", "ports"): _port_key,
    ("services", "*", "profiles"): _value_key,
    ("services", "*", "tmpfs"): _value_key,
    ("services", "*", "volumes"): _target_key,
    ("services", "*", "label_file"): _value_key,
}

_WILD_AT: dict[str, set[int]] = {
    # sections whose next key is a user-chosen name, matched as "*"
    "services": {1}, "networks": {1}, "volumes": {1}, "secrets": {1}, "configs": {1},
}


def _child(path: Path, key: str) -> Path:
    """The pattern path of ``key`` under ``path`` (names of user things become ``*``)."""
    depth = len(path)
    if depth == 1 and path[0] in _WILD_AT:
        return path + ("*",)
    if depth == 3 and path[0] == "services" and path[2] in ("networks", "ulimits", "depends_on"):
        return path + ("*",)
    return path + (key,)


def _mappings(left: dict[str, Any], right: dict[str, Any], path: Path) -> dict[str, Any]:
    out = dict(left)
    for key, value in right.items():
        if key not in out:
            out[key] = value
            continue
        out[key] = merge_values(out[key], value, _child(path, key))
    return out


def merge_values(left: Any, right: Any, path: Path = ()) -> Any:
    """Merge ``right`` over ``left`` at pattern path ``path``."""
    special = _SPECIALS.get(path)
    if special is not None:
        return special(left, right, path)
    if right is None:
        return left
    if isinstance(left, dict) and isinstance(right, dict):
        return _mappings(left, right, path)
    if isinstance(left, list) and isinstance(right, list):
        return left + right
    return right


def merge(left: dict[str, Any], right: dict[str, Any]) -> dict[str, Any]:
    """Two canonical Compose models merged (right wins), then made unique."""
    return enforce_unicity(_mappings(left, right, ()))


def enforce_unicity(data: Any, path: Path = ()) -> Any:
    """Deduplicate the sequences that compose-go makes unique, later entries winning."""
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(value, (dict, list)):
                data[key] = enforce_unicity(value, _child(path, key))
        return data
    if isinstance(data, list):
        keyfn = _UNIQUE.get(path)
        if keyfn is None:
            return data
        out: list[Any] = []
        seen: dict[Any, int] = {}
        for item in data:
            key = keyfn(item)
            if isinstance(key, (dict, list)):
                key = repr(key)
            if key in seen:
                out[seen[key]] = item
            else:
                seen[key] = len(out)
                out.append(item)
        return out
    return data


def apply_resets(data: dict[str, Any], paths: Iterable[KeyPath]) -> None:
    """Delete every key path tagged ``!reset``/``!override`` from ``data`` (in place)."""
    for path in paths:
        node: Any = data
        for part in path[:-1]:
            if isinstance(node, dict):
                node = node.get(part)
            elif isinstance(node, list) and isinstance(part, int) and part < len(node):
                node = node[part]
            else:
                node = None
            if node is None:
                break
        else:
            last = path[-1] if path else None
            if isinstance(node, dict) and last in node:
                del node[last]


def deep_copy(data: Any) -> Any:
    """A copy that later passes may change freely (plain values only, so this is cheap)."""
    if isinstance(data, dict):
        return {k: deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [deep_copy(v) for v in data]
    return data


__all__ = ["merge", "merge_values", "enforce_unicity", "apply_resets", "deep_copy", "ComposeError"]
