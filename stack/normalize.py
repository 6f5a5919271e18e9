"""The canonical model, shaped exactly as ``docker compose config --format json`` prints it.

Three steps, as compose-go does them after merging:

1. :func:`resolve_paths` - relative paths (build contexts, bind sources, env files,
   secret/config files, watch paths) made absolute against the project directory,
   ``~`` expanded with ``$HOME``;
2. :func:`normalize` - implicit things made explicit: the ``default`` network, build
   context/dockerfile defaults, dependencies implied by ``links``, ``volumes_from`` and
   ``network_mode: service:x``, resource names (``<project>_<key>``), secret targets;
3. :func:`render` - the Go structs' JSON: each key converted to the Go type Compose
   decodes it into (ports' ``published`` as a string, sizes as strings of bytes, durations
   as Go prints them) and zero values omitted where the Go field says ``omitempty``.
"""
from __future__ import annotations

import math
import os
import posixpath
import re
from collections.abc import Callable
TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs every command ~4 ms to import: annotations only
    from typing import Any

from .errors import ComposeError, KeyPath
from .transform import go_str, string_list

# ---------------------------------------------------------------------------
# 1. paths


def _is_remote_context(value: str) -> bool:
    return ("://" in value or value.startswith(("git@", "github.com/", "service:"))
            or value.startswith("docker-image:"))


class PathResolver:
    """Makes a model's relative paths absolute against ``base`` (``~`` -> ``home``)."""

    def __init__(self, base: str, home: str | None) -> None:
        self.base = base
        self.home = home

    def path(self, value: Any) -> Any:
        if not isinstance(value, str) or not value:
            return value
        if value == "~" or value.startswith("~/"):
            home = self.home if self.home is not None else os.path.expanduser("~")
            value = home + value[1:]
        if os.path.isabs(value):
            return value
        if len(value) >= 2 and value[1] == ":" and value[0].isalpha():
            return value  # a Windows path: left as written
        return os.path.normpath(os.path.join(self.base, value))

    def context(self, value: Any) -> Any:
        if isinstance(value, str) and _is_remote_context(value):
            return value
        return self.path(value)

    def service(self, svc: Any) -> None:
        if not isinstance(svc, dict):
            return
        build = svc.get("build")
        if isinstance(build, dict):
            if "context" in build:
                build["context"] = self.context(build["context"])
            extra = build.get("additional_contexts")
            if isinstance(extra, dict):
                build["additional_contexts"] = {k: self.context(v) for k, v in extra.items()}
            ssh = build.get("ssh")
            if isinstance(ssh, dict):  # a key's path; "" is the base directory
                build["ssh"] = {k: v if v is None or not isinstance(v, str)
                                else (self.path(v) if v else self.base) for k, v in ssh.items()}
        for entry in svc.get("env_file") or ():
            if isinstance(entry, dict) and "path" in entry:
                entry["path"] = self.path(entry["path"])
        if isinstance(svc.get("label_file"), list):
            svc["label_file"] = [self.path(p) for p in svc["label_file"]]
        ext = svc.get("extends")
        if isinstance(ext, dict) and ext.get("file"):
            ext["file"] = self.path(ext["file"])
        dev = svc.get("develop")
        if isinstance(dev, dict):
            for trigger in dev.get("watch") or ():
                if isinstance(trigger, dict) and "path" in trigger:
                    trigger["path"] = self.path(trigger["path"])
        for vol in svc.get("volumes") or ():
            if isinstance(vol, dict) and vol.get("type") == "bind" and isinstance(vol.get("source"), str):
                # compose-go resolves an empty bind source too: the base directory
                vol["source"] = self.path(vol["source"]) if vol["source"] else self.base

    def model(self, data: dict[str, Any]) -> None:
        """Resolve every path of a (canonical) model in place."""
        services = data.get("services")
        if isinstance(services, dict):
            for svc in services.values():
                self.service(svc)
        for kind in ("secrets", "configs"):
            section = data.get(kind)
            if isinstance(section, dict):
                for res in section.values():
                    if isinstance(res, dict) and res.get("file"):
                        res["file"] = self.path(res["file"])


def resolve_paths(data: dict[str, Any], base: str, home: str | None = None, *, raw: bool = False) -> None:
    """Make the model's relative paths absolute against ``base`` (in place).

    The uninterpolated model also resolves a local bind volume's ``driver_opts.device``
    (the typed output of Compose 2.40 leaves it as written).
    """
    resolver = PathResolver(base, home)
    resolver.model(data)
    if not raw:
        return
    for vol in (data.get("volumes") or {}).values():
        opts = vol.get("driver_opts") if isinstance(vol, dict) else None
        if (isinstance(opts, dict) and isinstance(opts.get("device"), str)
                and "bind" in str(opts.get("o", "")).split(",")):
            opts["device"] = resolver.path(opts["device"])


# ---------------------------------------------------------------------------
# 2. normalize


def set_defaults(data: dict[str, Any]) -> None:
    """compose-go ``transform.SetDefaultValues``: build context, secret targets, device
    requests without ``count`` nor ``device_ids`` take every device (``count: all``)."""
    for svc in (data.get("services") or {}).values():
        if not isinstance(svc, dict):
            continue
        deploy = svc.get("deploy")
        resources = deploy.get("resources") if isinstance(deploy, dict) else None
        reservations = resources.get("reservations") if isinstance(resources, dict) else None
        devices = reservations.get("devices") if isinstance(reservations, dict) else None
        for requests in (devices, svc.get("gpus")):
            for request in requests if isinstance(requests, list) else ():
                if isinstance(request, dict) and "count" not in request and "device_ids" not in request:
                    request["count"] = "all"
        build = svc.get("build")
        if isinstance(build, dict) and build.get("context") is None:
            build["context"] = "."
        for vol in svc.get("volumes") or ():
            if isinstance(vol, dict) and isinstance(vol.get("target"), str):
                # Go's path.Clean: "" is "."
                vol["target"] = posixpath.normpath(vol["target"]) if vol["target"] else "."
                if vol["target"].startswith("//"):
                    vol["target"] = "/" + vol["target"].lstrip("/")
        for secret in svc.get("secrets") or ():
            if isinstance(secret, dict) and not secret.get("target"):
                secret["target"] = f"/run/secrets/{secret.get('source')}"


def _dep(restart: bool) -> dict[str, Any]:
    return {"condition": "service_started", "restart": restart, "required": True}


def normalize(data: dict[str, Any], project_name: str, env: dict[str, str], *, raw: bool = False) -> None:
    """Make implicit defaults explicit (compose-go ``loader/normalize.go``), in place.

    ``raw`` (the uninterpolated model) leaves ``environment``/``build.args`` unresolved.
    """
    services = data.get("services") or {}
    networks = data.get("networks")
    if not isinstance(networks, dict):
        networks = {}
    uses_default = False
    for svc in services.values():
        if not isinstance(svc, dict) or "provider" in svc or "network_mode" in svc:
            continue
        nets = svc.get("networks")
        if not nets:
            svc["networks"] = {"default": None}
            uses_default = True
        elif "default" in nets:
            uses_default = True
    if uses_default and "default" not in networks:
        networks["default"] = None
    if networks:
        data["networks"] = networks
    for svc in services.values():
        if not isinstance(svc, dict):
            continue
        if svc.get("pull_policy") == "if_not_present":
            svc["pull_policy"] = "missing"
        build = svc.get("build")
        if isinstance(build, dict) and build.get("dockerfile") is None and build.get("dockerfile_inline") is None:
            build["dockerfile"] = "Dockerfile"
        if isinstance(build, dict) and raw:
            # the raw model's normalization resolves args without a value against no
            # environment: they are gone (compose-go)
            args = build.get("args")
            if isinstance(args, dict):
                build["args"] = {k: v for k, v in args.items() if v is not None}
            elif isinstance(args, list):
                build["args"] = [a for a in args if not isinstance(a, str) or "=" in a] or None
        if isinstance(build, dict) and not raw:
            if isinstance(build.get("args"), dict):
                args = {}
                for k, v in build["args"].items():
                    if v is None:
                        if k in env:
                            args[k] = env[k]
                    else:
                        args[k] = v
                build["args"] = args
        environment = svc.get("environment")
        if isinstance(environment, dict) and not raw:
            svc["environment"] = {k: (env.get(k) if v is None else v) for k, v in environment.items()}
        depends = dict(svc.get("depends_on") or {})
        for link in string_list(svc.get("links")):
            name = str(link).split(":")[0] if len(str(link).split(":")) == 2 else str(link)
            depends.setdefault(name, _dep(True))
        for ns in ("network_mode", "ipc", "pid", "uts", "cgroup"):
            ref = svc.get(ns)
            if isinstance(ref, str) and ref.startswith("service:"):
                depends.setdefault(ref[len("service:"):], _dep(True))
        for ref in string_list(svc.get("volumes_from")):
            ref = str(ref)
            if not ref.startswith("container:"):
                depends.setdefault(ref.split(":")[0], _dep(False))
        if depends:
            svc["depends_on"] = depends
    for kind in ("networks", "volumes", "configs", "secrets"):
        section = data.get(kind)
        if not isinstance(section, dict):
            continue
        for key, res in list(section.items()):
            res = dict(res) if isinstance(res, dict) else {}
            if res.get("name") is None:
                res["name"] = key if res.get("external") is True else f"{project_name}_{key}"
            section[key] = res


def resolve_environment(data: dict[str, Any], env: dict[str, str], *, discard_env_files: bool = True) -> None:
    """Read each service's ``env_file``s into ``environment`` (explicit values win)."""
    from .dotenv import parse_dotenv

    for name, svc in (data.get("services") or {}).items():
        if not isinstance(svc, dict):
            continue
        files = svc.get("env_file")
        explicit = svc.get("environment")
        if isinstance(explicit, dict):
            explicit = {k: (env.get(k) if v is None else v) for k, v in explicit.items()}
        if files:
            merged: dict[str, Any] = {}

            def lookup(key: str) -> str | None:
                value = merged.get(key)
                return value if value is not None else env.get(key)
            for i, entry in enumerate(files):
                path = entry.get("path") if isinstance(entry, dict) else entry
                required = entry.get("required", True) if isinstance(entry, dict) else True
                fmt = entry.get("format") if isinstance(entry, dict) else None
                if not isinstance(path, str) or not path:
                    raise ComposeError("env_file entry needs a path", path=("services", name, "env_file", i))
                if not os.path.exists(path):
                    if required:
                        raise ComposeError(f"env file {path} not found: stat {path}: no such file or directory",
                                           path=("services", name, "env_file", i))
                    continue
                try:
                    with open(path, encoding="utf-8") as fh:
                        text = fh.read()
                except OSError as exc:
                    raise ComposeError(f"cannot read env file {path}: {exc.strerror}",
                                       path=("services", name, "env_file", i)) from None
                if fmt == "raw":
                    values = _parse_raw_env(text)
                elif fmt in (None, ""):
                    values = parse_dotenv(text, path, lookup)
                else:
                    raise ComposeError(f"unsupported env_file format {fmt!r}",
                                       path=("services", name, "env_file", i, "format"))
                merged.update(values)
            merged.update(explicit or {})
            svc["environment"] = merged
        elif explicit is not None:
            svc["environment"] = explicit
        if discard_env_files:
            svc.pop("env_file", None)
        label_files = svc.get("label_file")
        if label_files:
            labels: dict[str, Any] = {}
            for i, path in enumerate(string_list(label_files)):
                if not isinstance(path, str) or not path:
                    raise ComposeError("label_file entries must be paths", path=("services", name, "label_file", i))
                try:
                    with open(path, encoding="utf-8") as fh:
                        labels.update(parse_dotenv(fh.read(), path, env))
                except OSError as exc:
                    raise ComposeError(f"cannot read label file {path}: {exc.strerror}",
                                       path=("services", name, "label_file")) from None
            labels.update(svc.get("labels") or {})
            svc["labels"] = labels
            if discard_env_files:
                svc.pop("label_file", None)


def _parse_raw_env(text: str) -> dict[str, str]:
    """``format: raw``: ``KEY=VALUE`` lines taken literally (no quotes, no interpolation)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition("=")
        out[key.strip()] = value if sep else ""
    return out


def drop_unused_resources(data: dict[str, Any]) -> None:
    """Remove networks, volumes, secrets, configs and models no service uses (as
    ``config`` prints)."""
    services = [s for s in (data.get("services") or {}).values() if isinstance(s, dict)]
    used: dict[str, set[str]] = {"networks": set(), "volumes": set(), "secrets": set(), "configs": set(),
                                 "models": set()}
    for svc in services:
        used["networks"].update((svc.get("networks") or {}).keys())
        if isinstance(svc.get("models"), dict):
            used["models"].update(svc["models"])
        for vol in svc.get("volumes") or ():
            if isinstance(vol, dict) and vol.get("type") == "volume" and vol.get("source"):
                used["volumes"].add(vol["source"])
        for kind in ("secrets", "configs"):
            for ref in svc.get(kind) or ():
                if isinstance(ref, dict) and ref.get("source"):
                    used[kind].add(ref["source"])
        build = svc.get("build")
        if isinstance(build, dict):
            for ref in build.get("secrets") or ():
                if isinstance(ref, dict) and ref.get("source"):
                    used["secrets"].add(ref["source"])
    for kind, names in used.items():
        section = data.get(kind)
        if isinstance(section, dict):
            kept = {k: v for k, v in section.items() if k in names}
            if kept:
                data[kind] = kept
            else:
                data.pop(kind, None)


# ---------------------------------------------------------------------------
# 3. render: emulate Go's encoding/json over compose-go's types

# compiled on first use (re's cache), not at import
_DURATION_RE = r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)"
_UNITS_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000, "s": 10 ** 9,
             "m": 60 * 10 ** 9, "h": 3600 * 10 ** 9}


def parse_duration(value: Any) -> int:
    """Go's ``time.ParseDuration`` (plain numbers are seconds), in nanoseconds."""
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}")
    if isinstance(value, (int, float)):
        return int(value * 10 ** 9)
    text = str(value).strip()
    if text in ("0", "+0", "-0"):
        return 0
    sign = 1
    if text and text[0] in "+-":
        sign = -1 if text[0] == "-" else 1
        text = text[1:]
    if not text:
        raise ValueError(f"invalid duration {value!r}")
    total = 0.0
    pos = 0
    for m in re.finditer(_DURATION_RE, text):
        if m.start() != pos or not m.group(1) or m.group(1) == ".":
            raise ValueError(f"invalid duration {value!r}")
        total += float(m.group(1)) * _UNITS_NS[m.group(2)]
        pos = m.end()
    if pos != len(text):
        raise ValueError(f"invalid duration {value!r}")
    return sign * int(round(total))


def _fmt_frac(v: int, prec: int) -> tuple[str, int]:
    digits = ""
    printed = False
    for _ in range(prec):
        d = v % 10
        printed = printed or d != 0
        if printed:
            digits = str(d) + digits
        v //= 10
    return ("." + digits if printed else ""), v


def format_duration(ns: int) -> str:
    """Go's ``time.Duration.String``: ``1m30s``, ``500ms``, ``1h0m0s``, ``0s``."""
    if ns == 0:
        return "0s"
    neg = ns < 0
    u = -ns if neg else ns
    if u < 10 ** 9:
        if u < 1_000:
            out = f"{u}ns"
        elif u < 1_000_000:
            frac, whole = _fmt_frac(u, 3)
            out = f"{whole}{frac}µs"
        else:
            frac, whole = _fmt_frac(u, 6)
            out = f"{whole}{frac}ms"
    else:
        frac, secs = _fmt_frac(u, 9)
        out = f"{secs % 60}{frac}s"
        mins = secs // 60
        if mins:
            out = f"{mins % 60}m" + out
            hours = mins // 60
            if hours:
                out = f"{hours}h" + out
    return ("-" if neg else "") + out


_BYTES_RE = r"^(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?$"
_BYTE_UNITS = {"k": 1024, "m": 1024 ** 2, "g": 1024 ** 3, "t": 1024 ** 4, "p": 1024 ** 5}


def parse_bytes(value: Any) -> int:
    """docker/go-units ``RAMInBytes`` (binary units); numbers are taken as bytes."""
    if isinstance(value, bool):
        raise ValueError(f"invalid size {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        # Compose prints nothing for an infinite, NaN or out-of-range size
        return int(value) if math.isfinite(value) and abs(value) < 2 ** 63 else 0
    m = re.match(_BYTES_RE, str(value).strip())
    if not m:
        raise ValueError(f"invalid size: {value!r}")
    number = float(m.group(1))
    unit = (m.group(2) or "").lower()
    return int(number * _BYTE_UNITS.get(unit, 1))


class RenderError(ValueError):
    """A value that cannot take its Go type; carries the key path."""

    def __init__(self, message: str, path: KeyPath) -> None:
        super().__init__(message)
        self.path = path


Spec = object  # (Any) a type name (str), a Struct, or a ("list"|"map"|"pmap", Spec) tuple
_OMIT = object()


class Struct:
    """A Go struct: JSON key -> Spec; ``pointer`` structs are omitted only when absent."""

    def __init__(self, fields: dict[str, Spec], *, pointer: bool = True, strict: bool = False,
                 always: tuple[str, ...] = (), rename: dict[str, str] | None = None,
                 extensions: bool = True) -> None:
        self.fields = fields
        self.extensions = extensions  # has Go's inline ``Extensions`` (x-* printed in YAML)
        self.pointer = pointer
        self.strict = strict
        self.always = always
        self.rename = rename or {}  # Go fields without a json tag print their Go name


def _num(value: Any, path: KeyPath, kind: type) -> Any:
    if isinstance(value, bool):
        raise RenderError(f"must be a number, not {go_str(value)}", path)
    if isinstance(value, float) and kind is int and not (math.isfinite(value)
                                                          and abs(value) < 2 ** 63):
        return -2 ** 63  # Go's float64 -> int64 of Inf, NaN or out of range (amd64)
    if isinstance(value, (int, float)):
        return kind(value)
    try:
        return kind(float(value)) if kind is int and "." in str(value) else kind(str(value).strip())
    except (TypeError, ValueError):
        raise RenderError(f"must be a number, not {value!r}", path) from None


def _bool(value: Any, path: KeyPath) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise RenderError(f"must be a boolean, not {value!r}", path)


def _string(value: Any, path: KeyPath) -> str:
    if isinstance(value, (dict, list)):
        raise RenderError("must be a string", path)
    return go_str(value)


def _float_out(value: float) -> Any:
    """A Go ``float32`` (cpus, max_failure_ratio...): the shortest decimal that reads back
    as the same float32, as Go prints it (1234567.5 stays, 0.1 is 0.1). Kept a float, so
    that YAML prints 1000000 as Go's ``1e+06``; JSON prints whole floats as integers."""
    import struct

    if not math.isfinite(value):
        return value
    try:
        single = struct.unpack("f", struct.pack("f", value))[0]
    except OverflowError:
        return math.copysign(math.inf, value)  # Go's float32 conversion overflows to Inf
    for digits in range(1, 10):
        short = float(f"{single:.{digits}g}")
        if struct.unpack("f", struct.pack("f", short))[0] == single:
            return short
    return single


def render_value(value: Any, spec: Spec, path: KeyPath,
                 ext: dict[KeyPath, dict[str, Any]] | None = None) -> Any:
    """``value`` converted to ``spec``; returns ``_OMIT`` where Go's omitempty drops it.

    ``x-*`` keys of a struct that has Go's inline ``Extensions`` go to ``ext`` (path ->
    {key: value}): Compose prints them in YAML, never in JSON."""
    if isinstance(spec, Struct):
        if value is None:
            if spec.pointer:
                return _OMIT
            value = {}
        if not isinstance(value, dict):
            raise RenderError("must be a mapping", path)
        out: dict[str, Any] = {}
        for key, val in value.items():
            fspec = spec.fields.get(key)
            if fspec is None:
                if spec.strict and not key.startswith("x-"):
                    raise RenderError(f"additional property {key} is not allowed", path)
                if ext is not None and spec.extensions and isinstance(key, str) and key.startswith("x-"):
                    ext.setdefault(path, {})[key] = val
                continue
            rendered = render_value(val, fspec, path + (key,), ext)
            if rendered is not _OMIT:
                out[spec.rename.get(key, key)] = rendered
        for key in spec.always:
            if key not in out:
                r = render_value(None, spec.fields[key], path + (key,), ext)
                out[key] = None if r is _OMIT else r
        return out
    if isinstance(spec, tuple):
        kind, inner = spec
        if kind == "list":
            if value is None:
                return _OMIT
            items = value if isinstance(value, list) else [value]
            rendered_items = []
            for i, item in enumerate(items):
                r = render_value(item, inner, path + (i,), ext)
                rendered_items.append(None if r is _OMIT else r)
            return rendered_items if rendered_items else _OMIT
        if kind in ("map", "pmap"):
            if value is None:
                return _OMIT
            if not isinstance(value, dict):
                raise RenderError("must be a mapping", path)
            out = {}
            for key, val in value.items():
                if val is None and kind == "pmap":
                    out[key] = None
                    continue
                r = render_value(val, inner, path + (key,), ext)
                out[key] = None if r is _OMIT else r
            return out if out else _OMIT
        raise AssertionError(spec)
    return _SCALARS[spec](value, path)


def _s(value: Any, path: KeyPath) -> Any:
    if value is None:
        return _OMIT
    text = _string(value, path)
    return text if text else _OMIT


def _s_always(value: Any, path: KeyPath) -> Any:
    return "" if value is None else _string(value, path)


def _b(value: Any, path: KeyPath) -> Any:
    if value is None:
        return _OMIT
    return True if _bool(value, path) else _OMIT


def _b_always(value: Any, path: KeyPath) -> Any:
    return False if value is None else _bool(value, path)


def _pb(value: Any, path: KeyPath) -> Any:
    return _OMIT if value is None else _bool(value, path)


def _i(value: Any, path: KeyPath) -> Any:
    if value is None:
        return _OMIT
    number = _num(value, path, int)
    return number if number else _OMIT


def _pi(value: Any, path: KeyPath) -> Any:
    return _OMIT if value is None else _num(value, path, int)


def _pu(value: Any, path: KeyPath) -> Any:
    """A Go ``*uint64`` (healthcheck retries, restart max_attempts, update parallelism):
    a negative value does not decode; a float converts as Go's ``uint64(f)`` on amd64
    (truncated; NaN, Inf and from 2**64 on give 2**63)."""
    if value is None:
        return _OMIT
    if isinstance(value, float):
        if value < 0:
            raise RenderError(f"cannot parse value as 'uint64': {go_str(value)} overflows uint", path)
        return int(value) if math.isfinite(value) and value < 2 ** 64 else 2 ** 63
    number = _num(value, path, int)
    if number < 0:
        raise RenderError(f"cannot parse value as 'uint64': {number} overflows uint", path)
    return number


def _f(value: Any, path: KeyPath) -> Any:
    if value is None:
        return _OMIT
    number = _num(value, path, float)
    return _float_out(number) if number else _OMIT


def _bytes(value: Any, path: KeyPath) -> Any:
    if value is None:
        return _OMIT
    try:
        number = parse_bytes(value)
    except ValueError as exc:
        raise RenderError(str(exc), path) from None
    return str(number) if number else _OMIT


def _dur(value: Any, path: KeyPath) -> Any:
    if value is None:
        return _OMIT
    try:
        ns = parse_duration(value)
    except ValueError as exc:
        raise RenderError(str(exc), path) from None
    return format_duration(ns) if ns else _OMIT


def _pdur(value: Any, path: KeyPath) -> Any:
    if value is None:
        return _OMIT
    try:
        return format_duration(parse_duration(value))
    except ValueError as exc:
        raise RenderError(str(exc), path) from None


def _strlist(value: Any, path: KeyPath) -> Any:
    if value is None:
        return _OMIT
    items = [_string(v, path + (i,)) for i, v in enumerate(string_list(value))]
    return items if items else _OMIT


def _shellcmd(value: Any, path: KeyPath) -> Any:
    if value is None:
        return None
    if isinstance(value, str):
        from .transform import shell_split
        return shell_split(value)
    return [_string(v, path + (i,)) for i, v in enumerate(value)]


def _map_str(value: Any, path: KeyPath) -> Any:
    if value is None:
        return _OMIT
    if not isinstance(value, dict):
        raise RenderError("must be a mapping", path)
    out = {k: ("" if v is None else _string(v, path + (k,))) for k, v in value.items()}
    return out if out else _OMIT


def _map_eq(value: Any, path: KeyPath) -> Any:
    if value is None:
        return _OMIT
    if not isinstance(value, dict):
        raise RenderError("must be a mapping", path)
    out = {k: (None if v is None else _string(v, path + (k,))) for k, v in value.items()}
    return out if out else _OMIT


def _hosts(value: Any, path: KeyPath) -> Any:
    if not value:
        return _OMIT
    out = []
    for host in sorted(value):
        for ip in value[host]:
            out.append(f"{host}={ip}")
    return out


def _filemode(value: Any, path: KeyPath) -> Any:
    if value is None:
        return _OMIT
    if isinstance(value, str):
        try:
            number = int(value, 8)
        except ValueError:
            raise RenderError(f"invalid file mode {value!r}", path) from None
    elif isinstance(value, float) and not math.isfinite(value):
        return _OMIT  # as Compose prints it
    else:
        number = _num(value, path, int)
    return f"0{number:o}"


def _ulimit(value: Any, path: KeyPath) -> Any:
    # compose-go's UlimitsConfig JSON: the single value when not 0, else soft/hard
    # (omitempty), so ``nofile: 0`` prints as ``{}``
    if isinstance(value, dict):
        if "single" in value:
            return _num(value["single"], path, int) or {}
        out = {}
        for key in ("soft", "hard"):
            if value.get(key):
                out[key] = _num(value[key], path + (key,), int)
        return out
    return _num(value, path, int) or {}


def _multi_options(value: Any, path: KeyPath) -> Any:
    if not value:
        return _OMIT
    return {k: [go_str(x) for x in (v if isinstance(v, list) else [v])] for k, v in value.items()}


def _device_count(value: Any, path: KeyPath) -> Any:
    if value is None:
        return _OMIT
    if value == "all":
        return -1
    number = _num(value, path, int)
    return number if number else _OMIT


def _any(value: Any, path: KeyPath) -> Any:
    return value


def _ssh_keys(value: Any, path: KeyPath) -> Any:
    """compose-go's ``SSHConfig``: ``id`` or ``id: path`` per key (its JSON form of the
    latter is not valid JSON: ``config --format json`` refuses it, as Compose does)."""
    if not isinstance(value, dict):
        return _OMIT if value is None else value
    keys = [f"{k}: {go_str(v)}" if v not in (None, "") else str(k) for k, v in value.items()]
    return keys or _OMIT


_SCALARS: dict[str, Callable[[Any, KeyPath], Any]] = {
    "s": _s, "S": _s_always, "b": _b, "B": _b_always, "pb": _pb, "i": _i, "pi": _pi, "f": _f,
    "pu": _pu, "bytes": _bytes, "dur": _dur, "pdur": _pdur, "strlist": _strlist, "cmd": _shellcmd,
    "map": _map_str, "mapeq": _map_eq, "hosts": _hosts, "mode": _filemode, "ulimit": _ulimit,
    "multi": _multi_options, "count": _device_count, "any": _any, "ssh": _ssh_keys,
}

_DEVICE_REQUEST = Struct({"capabilities": "strlist", "driver": "s", "count": "count",
                          "device_ids": "strlist", "options": "map"}, extensions=False)
_HOOK = Struct({"command": "cmd", "user": "s", "privileged": "b", "working_dir": "s",
                "environment": "mapeq"}, always=("command",))
_FILE_REF = Struct({"source": "s", "target": "s", "uid": "s", "gid": "s", "mode": "mode"})
_UPDATE = Struct({"parallelism": "pu", "delay": "dur", "failure_action": "s", "monitor": "dur",
                  "max_failure_ratio": "f", "order": "s"})
_RESOURCE = Struct({"cpus": "f", "memory": "bytes", "pids": "i", "devices": ("list", _DEVICE_REQUEST),
                    "generic_resources": ("list", Struct({"discrete_resource_spec": Struct(
                        {"kind": "S", "value": "pi"})}))})
_DEPLOY = Struct({
    "mode": "s", "replicas": "pi", "labels": "map",
    "update_config": _UPDATE, "rollback_config": _UPDATE,
    "resources": Struct({"limits": _RESOURCE, "reservations": _RESOURCE}, pointer=False),
    "restart_policy": Struct({"condition": "s", "delay": "pdur", "max_attempts": "pu", "window": "pdur"}),
    "placement": Struct({"constraints": "strlist", "preferences": ("list", Struct({"spread": "s"})),
                         "max_replicas_per_node": "i"}, pointer=False),
    "endpoint_mode": "s",
}, always=("resources", "placement"))
_BUILD = Struct({
    "context": "s", "dockerfile": "s", "dockerfile_inline": "s", "entitlements": "strlist",
    "args": "mapeq", "provenance": "s", "sbom": "s", "ssh": "ssh", "labels": "map",
    "cache_from": "strlist", "cache_to": "strlist", "no_cache": "b", "no_cache_filter": "strlist",
    "additional_contexts": "map", "pull": "b", "extra_hosts": "hosts", "isolation": "s",
    "network": "s", "target": "s", "secrets": ("list", _FILE_REF), "shm_size": "bytes",
    "tags": "strlist", "ulimits": ("map", "ulimit"), "platforms": "strlist", "privileged": "b",
})
_THROTTLE = Struct({"path": "s", "rate": "bytes"}, rename={"path": "Path", "rate": "Rate"})
_VOLUME_MOUNT = Struct({
    "type": "s", "source": "s", "target": "s", "read_only": "b", "consistency": "s",
    "bind": Struct({"selinux": "s", "propagation": "s", "create_host_path": "b", "recursive": "s"}),
    "volume": Struct({"labels": "map", "nocopy": "b", "subpath": "s"}),
    "tmpfs": Struct({"size": "bytes", "mode": "i"}),
    "image": Struct({"subpath": "s"}),
})
_SERVICE = Struct({
    "profiles": "strlist", "annotations": "map", "attach": "pb", "build": _BUILD,
    "develop": Struct({"watch": ("list", Struct({
        "path": "S", "action": "S", "target": "s", "exec": Struct(_HOOK.fields, pointer=False,
                                                                  always=("command",)),
        "include": "strlist", "ignore": "strlist", "initial_sync": "b"}, always=("path", "action", "exec")))}),
    "blkio_config": Struct({"weight": "i", "weight_device": ("list", Struct({"path": "s", "weight": "i"},
                                                                     rename={"path": "Path", "weight": "Weight"})),
                            "device_read_bps": ("list", _THROTTLE), "device_read_iops": ("list", _THROTTLE),
                            "device_write_bps": ("list", _THROTTLE), "device_write_iops": ("list", _THROTTLE)}),
    "cap_add": "strlist", "cap_drop": "strlist", "cgroup_parent": "s", "cgroup": "s",
    "cpu_count": "i", "cpu_percent": "f", "cpu_period": "i", "cpu_quota": "i", "cpu_rt_period": "i",
    "cpu_rt_runtime": "i", "cpus": "f", "cpuset": "s", "cpu_shares": "i",
    "command": "cmd", "configs": ("list", _FILE_REF), "container_name": "s",
    "credential_spec": Struct({"config": "s", "file": "s", "registry": "s"}),
    "depends_on": ("map", Struct({"condition": "s", "restart": "b", "required": "B"}, always=("required",))),
    "deploy": _DEPLOY, "device_cgroup_rules": "strlist",
    "devices": ("list", Struct({"source": "s", "target": "s", "permissions": "s"})),
    "dns": "strlist", "dns_opt": "strlist", "dns_search": "strlist", "dockerfile": "s", "domainname": "s",
    "entrypoint": "cmd", "provider": Struct({"type": "s", "options": "multi"}),
    "environment": "mapeq", "env_file": ("list", Struct({"path": "s", "required": "B", "format": "s"})),
    "expose": "strlist", "extends": Struct({"file": "s", "service": "s"}), "external_links": "strlist",
    "extra_hosts": "hosts", "group_add": "strlist", "gpus": ("list", _DEVICE_REQUEST), "hostname": "s",
    "healthcheck": Struct({"test": "strlist", "timeout": "pdur", "interval": "pdur", "retries": "pu",
                           "start_period": "pdur", "start_interval": "pdur", "disable": "b"}),
    "image": "s", "init": "pb", "ipc": "s", "isolation": "s", "labels": "map", "label_file": "strlist",
    "links": "strlist", "logging": Struct({"driver": "s", "options": "map"}), "log_driver": "s",
    "log_opt": "map", "mem_limit": "bytes", "mem_reservation": "bytes", "memswap_limit": "bytes",
    "mem_swappiness": "bytes", "mac_address": "s",
    "models": ("pmap", Struct({"endpoint_var": "s", "model_var": "s"})),
    "net": "s", "network_mode": "s",
    "networks": ("pmap", Struct({"aliases": "strlist", "driver_opts": "map", "gw_priority": "i",
                                 "interface_name": "s", "ipv4_address": "s", "ipv6_address": "s",
                                 "link_local_ips": "strlist", "mac_address": "s", "priority": "i"})),
    "oom_kill_disable": "b", "oom_score_adj": "i", "pid": "s", "pids_limit": "i", "platform": "s",
    "ports": ("list", Struct({"name": "s", "mode": "s", "host_ip": "s", "target": "i", "published": "s",
                              "protocol": "s", "app_protocol": "s"})),
    "privileged": "b", "pull_policy": "s", "read_only": "b", "restart": "s", "runtime": "s",
    "scale": "pi", "secrets": ("list", _FILE_REF), "security_opt": "strlist", "shm_size": "bytes",
    "stdin_open": "b", "stop_grace_period": "pdur", "stop_signal": "s", "storage_opt": "map",
    "sysctls": "map", "tmpfs": "strlist", "tty": "b", "ulimits": ("map", "ulimit"),
    "use_api_socket": "b", "user": "s", "userns_mode": "s", "uts": "s", "volume_driver": "s",
    "volumes": ("list", _VOLUME_MOUNT), "volumes_from": "strlist", "working_dir": "s",
    "post_start": ("list", _HOOK), "pre_stop": ("list", _HOOK),
}, strict=True, always=("command", "entrypoint"))
_IPAM = Struct({"driver": "s", "config": ("list", Struct({"subnet": "s", "gateway": "s", "ip_range": "s",
                                                          "aux_addresses": "map"}, extensions=False))},
               pointer=False)
_NETWORK = Struct({"name": "s", "driver": "s", "driver_opts": "map", "ipam": _IPAM, "external": "b",
                   "internal": "b", "attachable": "b", "labels": "map", "enable_ipv4": "pb",
                   "enable_ipv6": "pb"}, strict=True, always=("ipam",))
_VOLUME = Struct({"name": "s", "driver": "s", "driver_opts": "map", "external": "b", "labels": "map"},
                 strict=True)
_FILE_OBJECT = {"name": "s", "file": "s", "environment": "s", "content": "s", "external": "b",
                "labels": "map", "driver": "s", "driver_opts": "map", "template_driver": "s"}
_SECRET = Struct(_FILE_OBJECT, strict=True)
_CONFIG = Struct(_FILE_OBJECT, strict=True)
_MODEL = Struct({"name": "s", "model": "s", "context_size": "i", "runtime_flags": "strlist"}, strict=True)

_TOP_LEVEL = {"version", "name", "include", "services", "networks", "volumes", "secrets", "configs", "models"}


_SCALAR_TYPES = (str, int, float, bool, type(None))


def _check(value: Any, spec: Spec, path: KeyPath) -> None:
    """Container shapes of ``value`` against ``spec`` (a guard before the passes index into it)."""
    if value is None:
        return
    if isinstance(spec, Struct):
        if not isinstance(value, dict):
            raise RenderError("must be a mapping", path)
        for key, val in value.items():
            fspec = spec.fields.get(key)
            if fspec is not None:
                _check(val, fspec, path + (key,))
        return
    if isinstance(spec, tuple):
        kind, inner = spec
        if kind == "list":
            if not isinstance(value, list):
                raise RenderError("must be a list", path)
            for i, item in enumerate(value):
                _check(item, inner, path + (i,))
        else:
            if not isinstance(value, dict):
                raise RenderError("must be a mapping", path)
            for key, val in value.items():
                _check(val, inner, path + (key,))
        return
    if spec == "cmd" and not isinstance(value, (str, list)):
        raise RenderError("must be a string or a list", path)
    if spec in ("strlist", "cmd"):
        items = value if isinstance(value, list) else [value]
        for i, item in enumerate(items):
            if not isinstance(item, _SCALAR_TYPES):
                raise RenderError("must be a string", path + (i,))
    elif spec in ("map", "mapeq", "multi"):
        if not isinstance(value, dict):
            raise RenderError("must be a mapping", path)
        if spec != "multi":
            for key, val in value.items():
                if not isinstance(val, _SCALAR_TYPES):
                    raise RenderError("must be a string, a number or a boolean", path + (key,))
    elif spec == "hosts":
        if not isinstance(value, dict) or not all(isinstance(v, list) for v in value.values()):
            raise RenderError("must be a mapping or a list of host:ip", path)
    elif spec == "ulimit":
        if isinstance(value, dict):
            for key in ("soft", "hard", "single"):
                if not isinstance(value.get(key), _SCALAR_TYPES):
                    raise RenderError("must be a number", path + (key,))
        elif not isinstance(value, _SCALAR_TYPES):
            raise RenderError("must be a number or a mapping", path)
    elif spec not in ("any", "ssh") and not isinstance(value, _SCALAR_TYPES):
        raise RenderError("must be a scalar value", path)


def check_shapes(data: dict[str, Any], error: Callable[[str, KeyPath], ComposeError]) -> None:
    """Reject containers of the wrong kind (a list where a mapping belongs...) with their path.

    Part B's JSON Schema says the same and more; this guard keeps the loader free of
    tracebacks on its own.
    """
    try:
        services = data.get("services")
        if services is not None and not isinstance(services, dict):
            raise RenderError("must be a mapping", ("services",))
        for name, svc in (services or {}).items():
            if svc is not None and not isinstance(svc, dict):
                raise RenderError("must be a mapping", ("services", name))
            _check(svc, _SERVICE, ("services", name))
        for kind, spec in (("networks", _NETWORK), ("volumes", _VOLUME), ("secrets", _SECRET),
                           ("configs", _CONFIG), ("models", _MODEL)):
            section = data.get(kind)
            if section is None:
                continue
            if not isinstance(section, dict):
                raise RenderError("must be a mapping", (kind,))
            for name, res in section.items():
                _check(res, spec, (kind, name))
    except RenderError as exc:
        raise error(str(exc), exc.path) from None


def render(data: dict[str, Any], project_name: str, error: Callable[[str, KeyPath], ComposeError],
           ext: dict[KeyPath, dict[str, Any]] | None = None,
           models: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON document ``docker compose config --format json`` prints for ``data``;
    the structs' ``x-*`` keys (YAML only) go to ``ext`` by path when it is given."""
    out: dict[str, Any] = {"name": project_name}
    try:
        services = data.get("services") or {}
        out["services"] = {}
        for name, svc in services.items():
            if svc is None:
                svc = {}
            rendered = render_value(svc, _SERVICE, ("services", name), ext)
            out["services"][name] = rendered if rendered is not _OMIT else {}
        for kind, spec in (("networks", _NETWORK), ("volumes", _VOLUME), ("secrets", _SECRET),
                           ("configs", _CONFIG)):  # top-level models are not printed by 2.40
            section = data.get(kind)
            if not section:
                continue
            rendered_section = {}
            for name, res in section.items():
                value = dict(res) if isinstance(res, dict) else {}
                if kind == "secrets":
                    value.pop("content", None)  # compose-go never prints secret content
                if kind == "configs" and value.get("environment"):
                    value.pop("content", None)
                rendered_section[name] = render_value(value, spec, (kind, name), ext)
            out[kind] = rendered_section
        if models is not None:
            # top-level models: Compose 2.40's JSON has none, its YAML has them
            for name, model in (data.get("models") or {}).items():
                rendered = render_value(model if isinstance(model, dict) else {}, _MODEL,
                                        ("models", name), ext)
                models[name] = rendered if rendered is not _OMIT else {}
    except RenderError as exc:
        raise error(str(exc), exc.path) from None
    for key, value in data.items():
        if key.startswith("x-"):
            out[key] = value
        elif key not in _TOP_LEVEL:
            raise error(f"additional property {key} is not allowed", (key,))
    return out


def escape_dollars(value: Any) -> Any:
    """Every ``$`` doubled, as ``config`` prints an interpolated model (so it reloads the same)."""
    if isinstance(value, str):
        return value.replace("$", "$$") if "$" in value else value
    if isinstance(value, dict):
        return {escape_dollars(k) if isinstance(k, str) and "$" in k else k: escape_dollars(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [escape_dollars(v) for v in value]
    return value


def _go_order(value: Any, spec: Spec) -> Any:
    """``value`` (rendered with ``spec``) with its keys in the order go-yaml prints the Go
    value: struct fields in declaration order (then inline ``x-*`` extensions, sorted),
    map keys sorted."""
    if isinstance(spec, Struct) and isinstance(value, dict):
        rank = {spec.rename.get(k, k): i for i, k in enumerate(spec.fields)}
        inverse = {spec.rename.get(k, k): k for k in spec.fields}
        keys = sorted(value, key=lambda k: (rank.get(k, len(rank)), k))
        return {k: _go_order(value[k], spec.fields[inverse[k]]) if k in inverse else value[k]
                for k in keys}
    if isinstance(spec, tuple) and spec[0] == "list" and isinstance(value, list):
        return [_go_order(v, spec[1]) for v in value]
    if isinstance(spec, tuple) and isinstance(value, dict):
        return {k: _go_order(value[k], spec[1]) for k in sorted(value)}
    if spec in ("map", "mapeq", "multi", "hosts") and isinstance(value, dict):
        return {k: value[k] for k in sorted(value)}
    return value


_RESOURCE_SPECS = {"networks": _NETWORK, "volumes": _VOLUME, "secrets": _SECRET,
                   "configs": _CONFIG, "models": _MODEL}


def resource_order(kind: str, resource: Any) -> Any:
    """A top-level network, volume, secret, config or model in go-yaml's key order."""
    spec = _RESOURCE_SPECS.get(kind)
    return _go_order(resource, spec) if spec is not None else resource
