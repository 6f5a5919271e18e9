"""Short syntax to long syntax, key by key (compose-go's ``transform`` package).

Every file is put in this canonical shape before files are merged, so that merge rules
compare like with like: ``"8080:80"`` and ``{target: 80, published: "8080"}`` are the same
port; ``environment`` as a list or as a mapping is the same mapping. Errors name the key
path; the caller turns them into file:line:col with its Locator.
"""
from __future__ import annotations

from collections.abc import Callable
TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs every command ~4 ms to import: annotations only
    from typing import Any

from .errors import ComposeError, KeyPath

ErrorFn = Callable[[str, KeyPath], ComposeError]


def _default_error(message: str, path: KeyPath) -> ComposeError:
    return ComposeError(message, path=path)


# ---------------------------------------------------------------------------
# scalar helpers shared with normalize.py


def go_str(value: Any) -> str:
    """A YAML scalar as Go's ``fmt.Sprint`` prints it (how compose-go stringifies)."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return ""
    if isinstance(value, float):
        return go_float(value)
    return str(value)


def go_float(value: float) -> str:
    """A float64 as Go's ``%v`` prints it: ``+Inf``, ``-Inf``, ``NaN``, plain digits for
    integers below 1e21, else the shortest repr (exponents with at least two digits)."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e21:
        return str(int(value))
    return repr(value)


def shell_split(value: str) -> list[str]:
    """Split a command string as go-shellwords does (POSIX quoting, no expansion)."""
    try:
        import shlex

        return shlex.split(value, posix=True)
    except ValueError:
        raise ValueError(f"invalid command line {value!r}: unclosed quote") from None


def to_mapping(value: Any, path: KeyPath, err: ErrorFn, *, sep: str = "=",
               none_value: Any = None) -> dict[str, Any]:
    """``[K=V, K]`` or ``{K: V}`` to ``{K: V}``; a bare ``K`` maps to ``none_value``."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return {k: (none_value if v is None else go_str(v) if not isinstance(v, (dict, list)) else v)
                for k, v in value.items()}
    if isinstance(value, list):
        out: dict[str, Any] = {}
        for i, item in enumerate(value):
            if isinstance(item, (dict, list)):
                raise err("must be a string", path + (i,))
            text = go_str(item)
            if sep in text:
                key, _, val = text.partition(sep)
                out[key] = val
            else:
                out[text] = none_value
        return out
    raise err("must be a mapping or a list", path)


def string_list(value: Any) -> list[Any]:
    """A string or a list to a list (``dns: 8.8.8.8``)."""
    if value is None:
        return []
    if isinstance(value, list):
        return value
    return [value]


# ---------------------------------------------------------------------------
# ports


def _split_port_range(text: str) -> tuple[int, int]:
    start, dash, end = text.partition("-")
    lo = int(start)
    hi = int(end) if dash else lo
    if not (0 <= lo <= 65535 and 0 <= hi <= 65535) or hi < lo:
        raise ValueError(text)
    return lo, hi


def parse_port(spec: str) -> list[dict[str, Any]]:
    """docker/go-connections ``nat.ParsePortSpecs`` for one short-syntax port."""
    raw, _, proto = spec.partition("/")
    proto = (proto or "tcp").lower()
    parts = raw.split(":")
    n = len(parts)
    container = parts[-1]
    if n == 1:
        ip, host = "", ""
    elif n == 2:
        ip, host = "", parts[0]
    elif n == 3:
        ip, host = parts[0], parts[1]
    else:
        ip, host = ":".join(parts[:-2]), parts[-2]
    if ip.startswith("[") and ip.endswith("]"):
        ip = ip[1:-1]
    if not container:
        raise ValueError(f"no port specified: {spec}<empty>")
    try:
        lo, hi = _split_port_range(container)
    except ValueError:
        raise ValueError(f"invalid containerPort: {container}") from None
    hlo = hhi = 0
    if host:
        try:
            hlo, hhi = _split_port_range(host)
        except ValueError:
            raise ValueError(f"invalid hostPort: {host}") from None
        if hi - lo != hhi - hlo and hi != lo:
            raise ValueError(f"invalid ranges specified for container and host Ports: {container} and {host}")
    if proto not in ("tcp", "udp", "sctp"):
        raise ValueError(f"invalid proto: {proto}")
    entries: list[tuple[str, dict[str, Any]]] = []
    for i in range(hi - lo + 1):
        target = lo + i
        if not host:
            published = ""
        elif hi - lo == hhi - hlo:
            published = str(hlo + i)
        else:
            published = host
        port: dict[str, Any] = {"mode": "ingress", "target": target, "protocol": proto}
        if not target:
            del port["target"]  # compose-go's omitempty: then "missing a target port"
        if ip:
            port["host_ip"] = ip
        if published:
            port["published"] = published
        entries.append((f"{target}/{proto}", port))
    entries.sort(key=lambda e: e[0])  # nat returns a map; compose-go sorts its keys as strings
    return [p for _, p in entries]


def _ports(value: Any, path: KeyPath, err: ErrorFn) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, item in enumerate(string_list(value)):
        if isinstance(item, dict):
            port = dict(item)
            port.setdefault("mode", "ingress")
            port.setdefault("protocol", "tcp")
            # ``published``/``target`` keep their YAML types until render: compose-go's
            # unicity key tells ``published: 8080`` from ``published: "8080"``
            if isinstance(port.get("target"), str):
                try:
                    int(port["target"])
                except ValueError:
                    raise err(f"invalid port target {port['target']!r}", path + (i, "target")) from None
            out.append(port)
        elif isinstance(item, (int, str)) and not isinstance(item, bool):
            try:
                out.extend(parse_port(str(item)))
            except ValueError as exc:
                raise err(f"{str(item)!r} is not a valid port mapping: {exc}", path + (i,)) from None
        else:
            raise err("must be a string, a number or a mapping", path + (i,))
    return out


# ---------------------------------------------------------------------------
# volumes

_PROPAGATIONS = ("rprivate", "private", "rshared", "shared", "rslave", "slave")


def _is_file_path(source: str) -> bool:
    if not source:
        return False
    if source[0] in "./~" or source.startswith("\\\\"):
        return True
    return len(source) >= 2 and source[0].isalpha() and source[1] == ":"


def parse_volume(spec: str) -> dict[str, Any]:
    """compose-go ``format.ParseVolume``: ``[source:]target[:options]``."""
    if not spec:
        raise ValueError("invalid empty volume spec")
    if len(spec) <= 2:
        return {"type": "volume", "target": spec}
    vol: dict[str, Any] = {}
    fields: list[str] = []
    buf = ""
    i = 0
    depth = 0  # colons inside an uninterpolated ${VAR:-default} do not split
    while i < len(spec):
        c = spec[i]
        if c == "$" and spec[i + 1:i + 2] == "{":
            depth += 1
        elif c == "}" and depth:
            depth -= 1
        if c == ":" and not depth and not (len(buf) == 1 and buf.isalpha() and i + 1 < len(spec)
                                           and spec[i + 1] in "\\/"):
            fields.append(buf)
            buf = ""
        else:
            buf += c
        i += 1
    fields.append(buf)
    if any(not f for f in fields):
        raise ValueError(f"invalid spec: {spec}: empty section between colons")
    if len(fields) > 3:
        raise ValueError(f"invalid spec: {spec}: too many colons")
    if len(fields) == 1:
        vol["target"] = fields[0]
    else:
        vol["source"] = fields[0]
        vol["target"] = fields[1]
    options = fields[2].split(",") if len(fields) == 3 else []
    source = vol.get("source", "")
    if _is_file_path(source):
        vol["type"] = "bind"
        bind: dict[str, Any] = {"create_host_path": True}
        vol["bind"] = bind
    else:
        vol["type"] = "volume"
        bind = {}
        vol["volume"] = {}
    for opt in options:
        if opt == "ro":
            vol["read_only"] = True
        elif opt == "rw":
            vol.pop("read_only", None)  # Go's false: omitted, also from the raw model
        elif opt == "nocopy":
            vol["volume"] = {"nocopy": True}
        elif opt in _PROPAGATIONS or opt in ("z", "Z"):
            if "bind" not in vol:
                vol["bind"] = bind
            bind["propagation" if opt in _PROPAGATIONS else "selinux"] = opt
    ordered = {k: vol[k] for k in ("type", "source", "target", "read_only", "bind", "volume") if k in vol}
    return ordered


def _volumes(value: Any, path: KeyPath, err: ErrorFn) -> list[Any]:
    out: list[Any] = []
    for i, item in enumerate(string_list(value)):
        if isinstance(item, str):
            try:
                out.append(parse_volume(item))
            except ValueError as exc:
                raise err(str(exc), path + (i,)) from None
        elif isinstance(item, dict):
            out.append(dict(item))
        else:
            raise err("must be a string or a mapping", path + (i,))
    return out


# ---------------------------------------------------------------------------
# per-key transformers of a service


def _devices(value: Any, path: KeyPath, err: ErrorFn) -> list[Any]:
    out: list[Any] = []
    for i, item in enumerate(string_list(value)):
        if isinstance(item, str):
            parts = item.split(":")
            if len(parts) == 1:
                out.append({"source": parts[0], "target": parts[0], "permissions": "rwm"})
            elif len(parts) == 2:
                out.append({"source": parts[0], "target": parts[1], "permissions": "rwm"})
            elif len(parts) == 3:
                out.append({"source": parts[0], "target": parts[1], "permissions": parts[2]})
            else:
                raise err(f"confusing device mapping, please use long syntax: {item}", path + (i,))
        else:
            out.append(item)
    return out


def _file_mounts(value: Any, path: KeyPath, err: ErrorFn) -> list[Any]:
    out: list[Any] = []
    for i, item in enumerate(string_list(value)):
        if isinstance(item, str):
            out.append({"source": item})
        elif isinstance(item, dict):
            out.append(dict(item))
        else:
            raise err("must be a string or a mapping", path + (i,))
    return out


def _depends_on(value: Any, path: KeyPath, err: ErrorFn) -> dict[str, Any]:
    if isinstance(value, list):
        return {go_str(name): {"condition": "service_started", "required": True} for name in value}
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for name, dep in value.items():
            # defaults come after the merge (depends_on_defaults), as in compose-go, where
            # the schema sees the entry as written (``condition`` is required) merged over
            # the files before it, and an override's ``{required: false}`` keeps the
            # condition of the file it overrides
            out[name] = dict(dep) if isinstance(dep, dict) else dep
        return out
    raise err("must be a list or a mapping", path)


def depends_on_defaults(model: dict[str, Any]) -> None:
    """compose-go's canonical ``depends_on``: ``condition`` and ``required`` made explicit
    (in place, on the merged model)."""
    services = model.get("services")
    if not isinstance(services, dict):
        return
    for svc in services.values():
        deps = svc.get("depends_on") if isinstance(svc, dict) else None
        if not isinstance(deps, dict):
            continue
        for name, dep in list(deps.items()):
            dep = dict(dep) if isinstance(dep, dict) else {}
            dep.setdefault("condition", "service_started")
            dep.setdefault("required", True)
            deps[name] = dep


def _env_files(value: Any, path: KeyPath, err: ErrorFn) -> list[Any]:
    out: list[Any] = []
    for i, item in enumerate(string_list(value)):
        if isinstance(item, str):
            out.append({"path": item, "required": True})
        elif isinstance(item, dict):
            entry = dict(item)
            entry.setdefault("required", True)
            out.append(entry)
        else:
            raise err("must be a string or a mapping", path + (i,))
    return out


def _networks(value: Any, path: KeyPath, err: ErrorFn) -> dict[str, Any]:
    if isinstance(value, list):
        return {go_str(name): None for name in value}
    if isinstance(value, dict):
        return {k: (dict(v) if isinstance(v, dict) else v) for k, v in value.items()}
    if value is None:
        return {}
    raise err("must be a list or a mapping", path)


def _command(value: Any, path: KeyPath, err: ErrorFn) -> Any:
    if isinstance(value, str):
        try:
            return shell_split(value)
        except ValueError as exc:
            raise err(str(exc), path) from None
    if isinstance(value, list):
        return [go_str(v) for v in value]
    return value


def _healthcheck(value: Any, path: KeyPath, err: ErrorFn) -> Any:
    if not isinstance(value, dict):
        return value
    hc = dict(value)
    test = hc.get("test")
    if isinstance(test, str):
        hc["test"] = ["CMD-SHELL", test]
    elif isinstance(test, list):
        hc["test"] = [go_str(t) for t in test]
    return hc


def _extra_hosts(value: Any, path: KeyPath, err: ErrorFn) -> dict[str, list[str]]:
    """Hosts as ``{host: [ip, ...]}``; entries are ``host=ip`` or ``host:ip``."""
    out: dict[str, list[str]] = {}
    if isinstance(value, dict):
        for host, ips in value.items():
            out.setdefault(host, []).extend(go_str(ip) for ip in string_list(ips))
        return out
    for i, item in enumerate(string_list(value)):
        text = go_str(item)
        if "=" in text:
            host, _, ip = text.partition("=")
        elif ":" in text:
            host, _, ip = text.partition(":")
        else:
            raise err(f"invalid additional host, missing IP: {text}", path + (i,))
        out.setdefault(host, []).append(ip)
    return out


def _ulimits(value: Any, path: KeyPath, err: ErrorFn) -> Any:
    if isinstance(value, dict):
        for name, limit in value.items():
            if isinstance(limit, str):
                # compose-go's transformUlimits (its message, copied from "external"): a
                # string is left only without interpolation ("${N}")
                raise err("invalid type string for external", path + (name,))
        return {k: (dict(v) if isinstance(v, dict) else v) for k, v in value.items()}
    return value


def _build(value: Any, path: KeyPath, err: ErrorFn) -> Any:
    if isinstance(value, str):
        return {"context": value}
    if not isinstance(value, dict):
        return value
    build = dict(value)
    for key in ("args", "labels"):
        if key in build:
            build[key] = to_mapping(build[key], path + (key,), err)
    if "additional_contexts" in build:
        build["additional_contexts"] = to_mapping(build["additional_contexts"], path + ("additional_contexts",), err)
    if "extra_hosts" in build:
        build["extra_hosts"] = _extra_hosts(build["extra_hosts"], path + ("extra_hosts",), err)
    if "secrets" in build:
        build["secrets"] = _file_mounts(build["secrets"], path + ("secrets",), err)
    if "ulimits" in build:
        build["ulimits"] = _ulimits(build["ulimits"], path + ("ulimits",), err)
    for key in ("cache_from", "cache_to", "tags", "platforms", "entitlements"):
        if key in build and isinstance(build[key], str):
            build[key] = [build[key]]
    if "ssh" in build:
        build["ssh"] = _ssh(build["ssh"])
    return build


def _ssh(value: Any) -> Any:
    """``[default, key=path]`` or a string to compose-go's ``{id: path-or-null}`` (a
    mapping sorted by key: Compose prints several keys in Go's random map order)."""
    if isinstance(value, dict):
        return {k: value[k] for k in sorted(value, key=str)}
    out: dict[str, Any] = {}
    for item in string_list(value):
        key, sep, path = go_str(item).partition("=")
        out[key] = path if sep else None
    return out


def _extends(value: Any, path: KeyPath, err: ErrorFn) -> Any:
    if isinstance(value, str):
        return {"service": value}
    return dict(value) if isinstance(value, dict) else value


def _develop(value: Any, path: KeyPath, err: ErrorFn) -> Any:
    if not isinstance(value, dict):
        return value
    dev = dict(value)
    watch = dev.get("watch")
    if isinstance(watch, list):
        items = []
        for item in watch:
            if isinstance(item, dict):
                item = dict(item)
                for key in ("ignore", "include"):
                    if key in item:
                        item[key] = string_list(item[key])
                if isinstance(item.get("exec"), dict):
                    item["exec"] = dict(item["exec"])
                    if "command" in item["exec"]:
                        item["exec"]["command"] = _command(item["exec"]["command"], path, err)
            items.append(item)
        dev["watch"] = items
    return dev


def _hooks(value: Any, path: KeyPath, err: ErrorFn) -> Any:
    out = []
    for item in string_list(value):
        if isinstance(item, dict):
            item = dict(item)
            if "command" in item:
                item["command"] = _command(item["command"], path, err)
            if "environment" in item:
                item["environment"] = to_mapping(item["environment"], path + ("environment",), err)
        out.append(item)
    return out


def _gpus(value: Any, path: KeyPath, err: ErrorFn) -> Any:
    if value == "all":
        return [{"count": "all"}]
    return value


def _models(value: Any, path: KeyPath, err: ErrorFn) -> Any:
    if isinstance(value, list):
        return {go_str(name): None for name in value}
    return value


def _mapping(value: Any, path: KeyPath, err: ErrorFn) -> dict[str, Any]:
    return to_mapping(value, path, err)


def _str_list(value: Any, path: KeyPath, err: ErrorFn) -> list[Any]:
    return string_list(value)


def _expose(value: Any, path: KeyPath, err: ErrorFn) -> list[str]:
    return [go_str(v) for v in string_list(value)]


def _logging(value: Any, path: KeyPath, err: ErrorFn) -> Any:
    if isinstance(value, dict):
        out = dict(value)
        if isinstance(out.get("options"), dict):
            out["options"] = {k: (None if v is None else go_str(v)) for k, v in out["options"].items()}
        return out
    return value


def _deploy(value: Any, path: KeyPath, err: ErrorFn) -> Any:
    if not isinstance(value, dict):
        return value
    dep = dict(value)
    if "labels" in dep:
        dep["labels"] = to_mapping(dep["labels"], path + ("labels",), err)
    return dep


SERVICE_TRANSFORMS: dict[str, Callable[[Any, KeyPath, ErrorFn], Any]] = {
    "build": _build,
    "command": _command,
    "entrypoint": _command,
    "depends_on": _depends_on,
    "env_file": _env_files,
    "label_file": _str_list,
    "extends": _extends,
    "networks": _networks,
    "volumes": _volumes,
    "ports": _ports,
    "dns": _str_list,
    "dns_search": _str_list,
    "tmpfs": _str_list,
    "devices": _devices,
    "secrets": _file_mounts,
    "configs": _file_mounts,
    "environment": _mapping,
    "labels": _mapping,
    "annotations": _mapping,
    "sysctls": _mapping,
    "extra_hosts": _extra_hosts,
    "healthcheck": _healthcheck,
    "ulimits": _ulimits,
    "develop": _develop,
    "post_start": _hooks,
    "pre_stop": _hooks,
    "models": _models,
    "gpus": _gpus,
    "expose": _expose,
    "logging": _logging,
    "deploy": _deploy,
}


# Without interpolation, compose-go keeps these as written: they may hold ``${...}`` that
# only interpolation would make parseable (``ports: ["${P}:80"]``), or syntax it prints back.
RAW_KEYS = frozenset({"command", "entrypoint", "healthcheck", "environment", "labels",
                      "annotations", "sysctls", "extra_hosts", "expose", "logging", "deploy",
                      "post_start", "pre_stop", "gpus"})


# ... and these fail even then, as in compose-go (whose transform does not wait for values)
RAW_FATAL = frozenset({"ulimits"})


def canonical_service(service: Any, path: KeyPath, err: ErrorFn = _default_error, *,
                      raw: bool = False) -> Any:
    """One service in canonical form (a copy; ``service`` is not changed).

    ``raw`` (no interpolation) leaves the keys of :data:`RAW_KEYS` as written and the
    short volume syntax unparsed where it cannot be parsed.
    """
    if not isinstance(service, dict):
        return service
    out: dict[str, Any] = {}
    for key, value in service.items():
        fn = SERVICE_TRANSFORMS.get(key)
        if raw and key in RAW_KEYS:
            fn = None
        if raw and key == "build" and isinstance(value, dict):
            build = _build({k: v for k, v in value.items() if k not in ("args", "labels")}, path + (key,), err)
            build.update({k: value[k] for k in ("args", "labels") if k in value})
            out[key] = build
            continue
        if raw and key == "develop" and isinstance(value, dict) and isinstance(value.get("watch"), list):
            watch = [{k: (string_list(v) if k in ("ignore", "include") else v) for k, v in t.items()}
                     if isinstance(t, dict) else t for t in value["watch"]]
            out[key] = {**value, "watch": watch}
            continue
        try:
            out[key] = fn(value, path + (key,), err) if fn is not None and value is not None else value
        except ComposeError:
            if not raw or key in RAW_FATAL:
                raise
            out[key] = value
    return out


def _maybe_external(resource: Any, path: KeyPath, err: ErrorFn, raw: bool = False) -> Any:
    """Legacy ``external: {name: x}`` becomes ``external: true`` plus ``name: x``."""
    if not isinstance(resource, dict):
        return resource
    out = dict(resource)
    ext = out.get("external")
    if isinstance(ext, dict):
        out["external"] = True
        if "name" in ext and "name" not in out:
            out["name"] = ext["name"]
    if "labels" in out and not raw:
        out["labels"] = to_mapping(out["labels"], path + ("labels",), err, none_value="")
    return out


def canonical(data: dict[str, Any], err: ErrorFn = _default_error, *, raw: bool = False) -> dict[str, Any]:
    """A whole file (already interpolated, unless ``raw``) in canonical form."""
    out = dict(data)
    services = out.get("services")
    if isinstance(services, dict):
        out["services"] = {name: canonical_service(svc, ("services", name), err, raw=raw)
                           for name, svc in services.items()}
    for kind in ("networks", "volumes", "secrets", "configs"):
        section = out.get(kind)
        if isinstance(section, dict):
            out[kind] = {name: _maybe_external(res, (kind, name), err, raw=raw) for name, res in section.items()}
    include = out.get("include")
    if isinstance(include, list):
        items = []
        for item in include:
            if isinstance(item, str):
                items.append({"path": [item]})
            elif isinstance(item, dict):
                entry = dict(item)
                for key in ("path", "env_file"):
                    if key in entry:
                        entry[key] = string_list(entry[key])
                items.append(entry)
            else:
                items.append(item)
        out["include"] = items
    return out
