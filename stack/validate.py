"""Validation of Compose files: the JSON Schema per file, then semantic checks on the project.

Two stages, as compose-go does them:

* :func:`validate_file` runs after interpolation, on each file as the loader merges it
  (compose-go checks the model merged so far), so an error names the file the user
  wrote, with line and column, and the key path; then compose-go's structure checks.
* :func:`check_config` runs on the merged, normalized dict (the shape that
  ``docker compose config --format json`` prints) and finds what a schema cannot see:
  references to things that do not exist, dependency cycles, options that exclude each
  other, values that do not parse.

The schema is first checked with closures compiled from it (:mod:`.schema`), which is
cheap; jsonschema is imported only to word the error when a file is invalid.
"""
from __future__ import annotations

import contextvars
import re
from collections.abc import Iterable, Iterator, Mapping
TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs every command ~4 ms to import: annotations only
    from typing import Any, Protocol

from .errors import ComposeError, KeyPath, Mark
from .schema import TYPE_CHECKS, is_valid, load_schema, subschema_checker

__all__ = ["validate_file", "check_config", "consistency_checks", "parse_duration",
           "parse_bytes", "schema_errors"]


if TYPE_CHECKING:
    class LocatorLike(Protocol):
        """What validation needs from stack.yamlpos.Locator: the position of a key path."""

        def mark(self, path: KeyPath) -> Mark | None: ...


# --------------------------------------------------------------------------- schema

_VALIDATOR: Any = None


def _jsonschema_validator() -> Any:
    """The jsonschema Draft-07 validator, built once per process, only when needed."""
    global _VALIDATOR
    if _VALIDATOR is None:
        import jsonschema  # lazy: ~0.15 s of imports, paid only for invalid files

        _VALIDATOR = jsonschema.Draft7Validator(load_schema())
    return _VALIDATOR


def _string_keys(value: Any) -> Any:
    """A copy whose mapping keys are strings (jsonschema's regexes need str keys)."""
    if isinstance(value, dict):
        return {k if isinstance(k, str) else str(k): _string_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_string_keys(v) for v in value]
    return value


_TYPE_WORDS = {"object": "a mapping", "array": "a list", "string": "a string",
               "boolean": "a boolean", "null": "null", "number": "a number",
               "integer": "an integer"}


def _short(value: Any) -> str:
    text = repr(value) if not isinstance(value, str) else f'"{value}"'
    return text if len(text) <= 60 else text[:57] + "..."


def _describe(error: Any) -> tuple[str, KeyPath, KeyPath]:
    """One line for a jsonschema error, the key path it names, and the key path to
    position it at (an extra property's own key, else the same)."""
    path: KeyPath = tuple(error.absolute_path)
    kind = error.validator
    schema = error.schema
    inst = error.instance
    if kind == "additionalProperties" and isinstance(inst, dict):
        props = schema.get("properties", {})
        patterns = [re.compile(p) for p in schema.get("patternProperties", {})]
        extra = [k for k in inst if k not in props and not any(p.search(k) for p in patterns)]
        if extra:
            names = ", ".join(f"'{k}'" for k in extra)
            verb = "property" if len(extra) == 1 else "properties"
            return f"additional {verb} {names} not allowed", path, path + (extra[0],)
    if kind == "type":
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        words = " or ".join(_TYPE_WORDS.get(n, n) for n in names)
        return f"must be {words}, not {_short(inst)}", path, path
    if kind == "required":
        return f"{error.message.split(' is a required')[0]} is required", path, path
    if kind == "enum":
        options = ", ".join(_short(o) for o in schema["enum"])
        return f"must be one of {options}, not {_short(inst)}", path, path
    if kind == "pattern":
        return f"{_short(inst)} does not match pattern {schema['pattern']}", path, path
    if kind in ("minimum", "maximum"):
        op = ">=" if kind == "minimum" else "<="
        return f"must be {op} {schema[kind]}, not {_short(inst)}", path, path
    if kind == "uniqueItems":
        return "has duplicate items", path, path
    if kind == "oneOf":
        matching = [alt for alt in schema["oneOf"] if subschema_checker(alt)(inst)]
        if len(matching) > 1:
            return f"{_short(inst)} is ambiguous (matches several allowed forms)", path, path
        inner = _error_in_matching_form(error)
        if inner is not None:
            return _describe(inner)
        kinds = " or ".join(_TYPE_WORDS.get(k, k) for k in _alternative_types(schema["oneOf"]))
        if kinds:
            return f"must be {kinds}, not {_short(inst)}", path, path
        return f"{_short(inst)} is not a valid value here", path, path
    return error.message, path, path


def _error_in_matching_form(error: Any) -> Any:
    """For a failed oneOf whose instance has the type of exactly one alternative (a
    mapping where "a list or a mapping" is allowed), that alternative's most relevant
    error: it says what is wrong inside, not that no form matched."""
    from jsonschema.exceptions import best_match

    alternatives = error.schema["oneOf"]
    kinds = [_alternative_types([alt]) for alt in alternatives]
    fitting = [i for i, names in enumerate(kinds)
               if any(TYPE_CHECKS[n](error.instance) for n in names if n in TYPE_CHECKS)]
    if len(fitting) != 1:
        return None
    inner = [e for e in error.context if e.schema_path and e.schema_path[0] == fitting[0]]
    return best_match(inner) if inner else None


def _alternative_types(alternatives: list) -> list[str]:
    """The JSON types a oneOf accepts (following one level of $ref), in schema order."""
    root = load_schema()
    kinds: list[str] = []
    for alt in alternatives:
        ref = alt.get("$ref", "")
        if ref.startswith("#/definitions/"):
            alt = root["definitions"].get(ref.rsplit("/", 1)[-1], {})
        names = alt.get("type", [])
        for name in names if isinstance(names, list) else [names]:
            if name not in kinds:
                kinds.append(name)
    return kinds


def schema_errors(data: Any) -> list[tuple[str, KeyPath]]:
    """Every schema violation of ``data`` as (message, key path); [] when valid."""
    if is_valid(data):
        return []
    validator = _jsonschema_validator()
    return [(message, mark_path) for message, _path, mark_path in
            (_describe(e) for e in validator.iter_errors(_string_keys(data)))]


def validate_file(data: Any, locator: LocatorLike | None, filename: str) -> None:
    """Check one parsed, interpolated compose file against the compose-spec schema.

    Raises ComposeError ``file:line:col: services.web: additional property 'x' not
    allowed`` for the most relevant error (jsonschema's best_match).
    """
    if data is None:
        raise ComposeError("empty compose file", file=filename)
    if not isinstance(data, dict):
        raise ComposeError(f"top-level object must be a mapping, not {_short(data)}",
                           mark=locator.mark(()) if locator else None, file=filename)
    if is_valid(data):
        _structure(data, locator, filename)
        return
    from jsonschema.exceptions import best_match

    error = best_match(_jsonschema_validator().iter_errors(_string_keys(data)))
    if error is None:  # pragma: no cover - the fast checker and jsonschema disagree
        return
    message, path, mark_path = _describe(error)
    mark = locator.mark(mark_path) if locator is not None else None
    raise ComposeError(message, path=path or None, mark=mark, file=filename)


def _structure(data: dict, locator: LocatorLike | None, filename: str) -> None:
    """What compose-go's ``validation`` package checks right after the schema (so on
    resources no service uses, too): secrets/configs with exactly one source, external
    volumes with nothing but a name, non-blank watch paths, device requests that do not
    give both ``count`` and ``device_ids``."""
    def fail(message: str, path: KeyPath) -> None:
        raise ComposeError(message, path=path, mark=locator.mark(path) if locator else None,
                           file=filename)

    for kind, keys in (("secrets", ("file", "environment")),
                       ("configs", ("file", "environment", "content"))):
        for name, item in (data.get(kind) or {}).items():
            if not isinstance(item, dict):
                continue
            present = [k for k in keys if k in item]
            if len(present) > 1:
                fail(f"{'|'.join(keys)} attributes are mutually exclusive", (kind, name))
            if not present and "driver" not in item and "external" not in item:
                fail(f"one of {'|'.join(keys)} must be set", (kind, name))
            if kind == "secrets" and "content" in item:
                fail("content is not allowed for secrets", (kind, name, "content"))
    for name, volume in (data.get("volumes") or {}).items():
        if isinstance(volume, dict) and volume.get("external") is True:
            for key in volume:
                if key not in ("name", "external") and not key.startswith("x-"):
                    fail(f'conflicting parameters "external" and "{key}" specified',
                         ("volumes", name, key))
    for sname, svc in (data.get("services") or {}).items():
        if not isinstance(svc, dict):
            continue
        develop = svc.get("develop")
        for i, watch in enumerate((develop or {}).get("watch") or []
                                  if isinstance(develop, dict) else []):
            if isinstance(watch, dict) and watch.get("path") == "":
                fail("value can't be blank", ("services", sname, "develop", "watch", i, "path"))
        requests: list[tuple[KeyPath, Any]] = []
        if isinstance(svc.get("gpus"), list):
            requests += [(("services", sname, "gpus", i), r) for i, r in enumerate(svc["gpus"])]
        devices = (((svc.get("deploy") or {}).get("resources") or {}).get("reservations") or {}
                   ).get("devices") if isinstance(svc.get("deploy"), dict) else None
        if isinstance(devices, list):
            requests += [(("services", sname, "deploy", "resources", "reservations", "devices", i),
                          r) for i, r in enumerate(devices)]
        for path, request in requests:
            if isinstance(request, dict) and "count" in request and "device_ids" in request:
                fail('"count" and "device_ids" attributes are exclusive', path)


# ------------------------------------------------------------------ value parsers

# compiled on first use (re's cache), not at import: ~2 ms per command
_DURATION_RE = r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)"
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0,
                   "m": 60.0, "h": 3600.0}


def parse_duration(value: Any) -> float:
    """A Compose duration (Go syntax ``1m30s``, ``1.5s``, ``500ms``, ``0``; a unit is
    required, as Compose requires it) in seconds; an int or float (from Python callers)
    is taken as seconds. ValueError when it does not parse."""
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if not isinstance(value, str) or not value:
        raise ValueError(f"invalid duration {value!r}")
    text = value.strip()
    sign = 1.0
    if text[:1] in "+-":
        sign = -1.0 if text[0] == "-" else 1.0
        text = text[1:]
    if text == "0":  # Go's time.ParseDuration: the only number without a unit
        return 0.0
    pos = 0
    total = 0.0
    for m in re.finditer(_DURATION_RE, text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or pos == 0:
        raise ValueError(f"invalid duration {value!r}")
    return sign * total


_BYTES_RE = r"^\s*(\d+(?:\.\d+)?)\s*([kmgtpKMGTP]?)([iI]?[bB]?)\s*$"
_BYTE_UNITS = {"": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3, "t": 1024 ** 4, "p": 1024 ** 5}


def parse_bytes(value: Any) -> int:
    """A Compose byte size (``512m``, ``1g``, ``1.5GB``, ``64000``; binary units, as
    docker's go-units RAMInBytes; ``-1``, as the printed model spells an integer -1:
    unlimited) in bytes. ValueError when it does not parse."""
    if isinstance(value, bool):
        raise ValueError(f"invalid size {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, str):
        raise ValueError(f"invalid size {value!r}")
    if re.fullmatch(r"-\d+", value.strip()):
        # a negative number of bytes is how the printed model spells a YAML integer such
        # as memswap_limit: -1 (unlimited), which Compose accepts
        return int(value)
    m = re.match(_BYTES_RE, value)
    if not m:
        raise ValueError(f"invalid size {value!r}")
    number, unit, _suffix = m.groups()
    return int(float(number) * _BYTE_UNITS[unit.lower()])


# ------------------------------------------------------------------ semantic checks

def _is_ip(text: str) -> bool:
    """An IPv4 or IPv6 address (brackets allowed around v6), as a port's host_ip."""
    import ipaddress  # lazy: only projects that bind ports to an address pay

    try:
        ipaddress.ip_address(text[1:-1] if text.startswith("[") and text.endswith("]") else text)
    except ValueError:
        return False
    return True


_DURATION_KEYS = ("interval", "timeout", "start_period", "start_interval")
_BYTES_KEYS = ("mem_limit", "memswap_limit", "mem_reservation", "shm_size")


class _Checker:
    """Semantic checks of one normalized project dict; errors carry a key path."""

    all_services: set[str] | None = None
    consistency: bool = True
    implied: bool = True  # links/volumes_from without a depends_on entry are checked

    def __init__(self, config: Mapping[str, Any], locators: Iterable[LocatorLike] | None) -> None:
        self.config = config
        self.services: Mapping[str, Any] = config.get("services") or {}
        if isinstance(locators, Mapping):
            locators = locators.values()
        self.locators = [loc for loc in (locators or []) if hasattr(loc, "mark")]

    def fail(self, message: str, path: KeyPath) -> None:
        """Raise, positioned in the file that spells out the deepest part of ``path``."""
        best: Mark | None = None
        best_depth = -1
        for loc in self.locators:
            depth = self._depth(loc, path)
            if depth > best_depth:
                mark = loc.mark(path)
                if mark is not None:
                    best, best_depth = mark, depth
        raise ComposeError(message, path=path, mark=best)

    @staticmethod
    def _depth(loc: Any, path: KeyPath) -> int:
        marks = getattr(loc, "marks", None)
        if marks is None:
            return 0
        p = tuple(path)
        while p and p not in marks:
            p = p[:-1]
        return len(p)

    def run(self) -> None:
        for name, svc in self.services.items():
            if not isinstance(svc, Mapping):
                self.fail("must be a mapping", ("services", name))
            self.service(name, svc)
        if self.consistency:
            self.container_names()
            self.cycles()

    # one service ------------------------------------------------------------
    def service(self, name: str, svc: Mapping[str, Any]) -> None:
        at = ("services", name)
        # values that do not decode: Compose rejects them even with --no-consistency
        for i, vol in enumerate(svc.get("volumes") or []):
            self.volume(vol, at + ("volumes", i))
        self.healthcheck(svc.get("healthcheck"), at + ("healthcheck",))
        self.ports(svc.get("ports") or [], at + ("ports",))
        self.values(svc, at)
        if not self.consistency:
            return
        build = svc.get("build")
        if not build and not svc.get("image") and not svc.get("provider"):
            self.fail(f'service "{name}" has neither an image nor a build context specified', at)
        if isinstance(build, Mapping):
            if build.get("dockerfile_inline") and build.get("dockerfile") not in (None, "", "Dockerfile"):
                self.fail("dockerfile and dockerfile_inline are mutually exclusive", at + ("build",))
            platforms = build.get("platforms") or []
            if platforms and svc.get("platform") and svc["platform"] not in platforms:
                self.fail(f'build.platforms must include service.platform "{svc["platform"]}"',
                          at + ("platform",))
            for i, secret in enumerate(build.get("secrets") or []):
                self._ref("secrets", secret, at + ("build", "secrets", i), "build secret")
        if svc.get("network_mode") and svc.get("networks"):
            self.fail("`network_mode` and `networks` are mutually exclusive", at + ("network_mode",))
        for net in svc.get("networks") or {}:
            if net not in (self.config.get("networks") or {}):
                self.fail(f"refers to undefined network {net}", at + ("networks", net))
        for kind in ("secrets", "configs"):
            for i, ref in enumerate(svc.get(kind) or []):
                self._ref(kind, ref, at + (kind, i), kind[:-1])
        self.references(name, svc, at)
        self.scale(name, svc, at)
        self.mounts(svc, at)
        develop = svc.get("develop") or {}
        for i, watch in enumerate(develop.get("watch") or [] if isinstance(develop, Mapping) else []):
            if not watch.get("target") and watch.get("action") not in ("rebuild", "restart"):
                self.fail("target is required for non-rebuild actions", at + ("develop", "watch", i))

    def _ref(self, kind: str, ref: Any, path: KeyPath, word: str) -> None:
        source = ref.get("source") if isinstance(ref, Mapping) else ref
        if source not in (self.config.get(kind) or {}):
            self.fail(f"refers to undefined {word} {source}", path)

    def volume(self, vol: Any, path: KeyPath) -> None:
        if not isinstance(vol, Mapping):
            self.fail(f"invalid volume {_short(vol)}", path)
        vtype = vol.get("type")
        if vtype not in ("volume", "bind", "tmpfs", "npipe", "cluster", "image"):
            self.fail(f"invalid volume type {_short(vtype)}", path + ("type",))
        if vtype == "volume" and vol.get("source") and self.consistency:
            if vol["source"] not in (self.config.get("volumes") or {}):
                self.fail(f"refers to undefined volume {vol['source']}", path)
        # a bind mount without a source: the loader's check of the canonical model
        # (stack.pipeline), where "" (the project directory) is still told from missing
        tmpfs = vol.get("tmpfs")
        if isinstance(tmpfs, Mapping) and tmpfs.get("size") is not None:
            self._bytes(tmpfs["size"], path + ("tmpfs", "size"))

    def healthcheck(self, hc: Any, path: KeyPath) -> None:
        if not isinstance(hc, Mapping):
            return
        test = hc.get("test")
        if (self.consistency and isinstance(test, list) and test
                and test[0] not in ("CMD", "CMD-SHELL", "NONE")):
            self.fail('test must start either by "CMD", "CMD-SHELL" or "NONE"', path + ("test",))
        for key in _DURATION_KEYS:
            if hc.get(key) is not None:
                self._duration(hc[key], path + (key,))

    def references(self, name: str, svc: Mapping[str, Any], at: KeyPath) -> None:
        for dep in svc.get("depends_on") or {}:
            if dep not in self.services:
                entry = (svc["depends_on"].get(dep) if isinstance(svc["depends_on"], Mapping) else None) or {}
                optional = entry.get("required", True) is False and (
                    self.all_services is None or dep in self.all_services)
                if not optional:
                    self.fail(f'service "{name}" depends on undefined service "{dep}"',
                              self._implied_by(svc, at, dep))
        depends = svc.get("depends_on") if isinstance(svc.get("depends_on"), Mapping) else {}
        for i, link in enumerate(svc.get("links") or []):
            target = str(link).split(":", 1)[0]
            # normalized, a link is a dependency (checked above, ``required`` honoured);
            # Compose itself checks links only that way
            if target not in self.services and target not in depends and self._implied(target):
                self.fail(f'service "{name}" links to undefined service "{target}"', at + ("links", i))
        for key in ("network_mode", "ipc", "pid", "uts", "cgroup"):
            value = svc.get(key)
            if isinstance(value, str) and value.startswith("service:"):
                target = value[len("service:"):]
                if target not in self.services:
                    self.fail(f'service "{name}" refers to undefined service "{target}"', at + (key,))
        for i, source in enumerate(svc.get("volumes_from") or []):
            text = str(source)
            if text.startswith("container:"):
                continue
            target = text.split(":", 1)[0]
            if text.startswith("service:"):
                target = text.split(":")[1]
            if target not in self.services and target not in depends and self._implied(target):
                self.fail(f'service "{name}" uses volumes from undefined service "{target}"',
                          at + ("volumes_from", i))

    def _implied(self, target: str) -> bool:
        """Whether a link or ``volumes_from`` target missing from the project is checked
        here: not without normalization (Compose does not), nor for a service a profile
        or the selection left out (the loader checked the dependency before selecting)."""
        return self.implied and (self.all_services is None or target not in self.all_services)

    def _implied_by(self, svc: Mapping[str, Any], at: KeyPath, dep: str) -> KeyPath:
        """Where a dependency is written: in ``depends_on``, else the link, the
        ``volumes_from`` entry or the ``service:`` reference that normalization turned
        into it."""
        path = at + ("depends_on", dep)
        if any(path in getattr(loc, "marks", {}) for loc in self.locators):
            return path
        for i, link in enumerate(svc.get("links") or []):
            if str(link).split(":", 1)[0] == dep:
                return at + ("links", i)
        for i, source in enumerate(svc.get("volumes_from") or []):
            if str(source).split(":", 1)[0] == dep:
                return at + ("volumes_from", i)
        for key in ("network_mode", "ipc", "pid", "uts", "cgroup"):
            if svc.get(key) == f"service:{dep}":
                return at + (key,)
        return path

    def ports(self, ports: list, path: KeyPath) -> None:
        """Only what Compose itself rejects at ``config`` time: a host_ip that is not an
        address (``"80:80:80"``). Out-of-range ports in long form pass ``config`` in
        Compose too and fail when the port is published."""
        for i, port in enumerate(ports):
            if not isinstance(port, Mapping):
                continue  # short syntax is expanded (and checked) by normalize
            host_ip = port.get("host_ip")
            if host_ip not in (None, "") and not _is_ip(str(host_ip)):
                self.fail(f"invalid IP address {_short(host_ip)} (is this a valid port mapping?)",
                          path + (i, "host_ip"))

    def values(self, svc: Mapping[str, Any], at: KeyPath) -> None:
        for key in _BYTES_KEYS:
            if svc.get(key) is not None:
                self._bytes(svc[key], at + (key,))
        build = svc.get("build")
        if isinstance(build, Mapping) and build.get("shm_size") is not None:
            self._bytes(build["shm_size"], at + ("build", "shm_size"))
        if svc.get("stop_grace_period") is not None:
            self._duration(svc["stop_grace_period"], at + ("stop_grace_period",))
        deploy = svc.get("deploy")
        if isinstance(deploy, Mapping):
            for section in ("update_config", "rollback_config"):
                sub = deploy.get(section)
                if isinstance(sub, Mapping):
                    for key in ("delay", "monitor"):
                        if sub.get(key) is not None:
                            self._duration(sub[key], at + ("deploy", section, key))
            policy = deploy.get("restart_policy")
            if isinstance(policy, Mapping):
                for key in ("delay", "window"):
                    if policy.get(key) is not None:
                        self._duration(policy[key], at + ("deploy", "restart_policy", key))
            resources = deploy.get("resources")
            if isinstance(resources, Mapping):
                for part in ("limits", "reservations"):
                    sub = resources.get(part)
                    if isinstance(sub, Mapping) and sub.get("memory") is not None:
                        self._bytes(sub["memory"], at + ("deploy", "resources", part, "memory"))

    def _duration(self, value: Any, path: KeyPath) -> None:
        try:
            parse_duration(value)
        except ValueError:
            self.fail(f"invalid duration {_short(value)}", path)

    def _bytes(self, value: Any, path: KeyPath) -> None:
        try:
            parse_bytes(value)
        except ValueError:
            self.fail(f"invalid size {_short(value)}", path)

    def scale(self, name: str, svc: Mapping[str, Any], at: KeyPath) -> None:
        scale = svc.get("scale")
        deploy = svc.get("deploy") if isinstance(svc.get("deploy"), Mapping) else None
        replicas = deploy.get("replicas") if deploy else None
        if scale is not None and replicas is not None and scale != replicas:
            self.fail("can't set distinct values on 'scale' and 'deploy.replicas'", at)
        if scale is not None and scale < 0:
            self.fail("must be greater than or equal to 0", at + ("scale",))
        if replicas is not None and replicas < 0:
            self.fail("must be greater than or equal to 0", at + ("deploy", "replicas"))
        if scale is not None and isinstance(deploy, dict) and replicas is None:
            # compose-go's consistency check writes scale into deploy (Go field order)
            items = list(deploy.items())
            at_index = 1 if items and items[0][0] == "mode" else 0
            items.insert(at_index, ("replicas", scale))
            deploy.clear()
            deploy.update(items)
        count = scale if scale is not None else (replicas if replicas is not None else 1)
        if count > 1 and svc.get("container_name"):
            attr = "scale" if scale is not None else "deploy.replicas"
            self.fail(f"can't set container_name and {attr} as container name must be unique",
                      at + ("container_name",))
        limits = ((deploy or {}).get("resources") or {}).get("limits") if deploy else None
        reservations = ((deploy or {}).get("resources") or {}).get("reservations") if deploy else None
        pairs = (("cpus", limits, "cpus", "deploy.resources.limits.cpus", float),
                 ("mem_limit", limits, "memory", "deploy.resources.limits.memory", parse_bytes),
                 ("mem_reservation", reservations, "memory",
                  "deploy.resources.reservations.memory", parse_bytes),
                 ("pids_limit", limits, "pids", "deploy.resources.limits.pids", int))
        for key, section, sub, label, conv in pairs:
            mine = svc.get(key)
            if mine in (None, 0, "0") or not isinstance(section, Mapping):
                continue
            try:
                theirs = conv(section[sub]) if section.get(sub) is not None else 0
                same = conv(mine) == theirs
            except (TypeError, ValueError):
                same = False
            if not same:
                self.fail(f"can't set distinct values on '{key}' and '{label}'", at)

    def mounts(self, svc: Mapping[str, Any], at: KeyPath) -> None:
        seen: dict[str, str] = {}
        tmpfs = svc.get("tmpfs") or []
        for i, entry in enumerate([tmpfs] if isinstance(tmpfs, str) else tmpfs):
            where = at + ("tmpfs", i)
            self._mount(str(entry).split(":")[0], where, seen)
        for i, vol in enumerate(svc.get("volumes") or []):
            if isinstance(vol, Mapping) and vol.get("target"):
                self._mount(vol["target"], at + ("volumes", i), seen)

    def _mount(self, target: str, path: KeyPath, seen: dict[str, str]) -> None:
        from .errors import format_path

        if target in seen:
            self.fail(f"target {target} already mounted as {seen[target]}", path)
        seen[target] = format_path(path)

    # whole project -------------------------------------------------------------
    def container_names(self) -> None:
        owners: dict[str, str] = {}
        for name, svc in self.services.items():
            cname = svc.get("container_name")
            if not cname:
                continue
            if cname in owners:
                self.fail(f'container name "{cname}" is already in use by service "{owners[cname]}"',
                          ("services", name, "container_name"))
            owners[cname] = name

    def cycles(self) -> None:
        from .graph import dependency_edges, find_cycle

        cycle = find_cycle(dependency_edges(self.config))
        if cycle:
            self.fail("dependency cycle detected: " + " -> ".join(cycle),
                      ("services", cycle[0], "depends_on"))


def check_config(config: Mapping[str, Any], locators: Iterable[LocatorLike] | None = None,
                 *, all_services: Iterable[str] | None = None, normalized: bool = True) -> None:
    """Semantic checks of a normalized project dict; raises the first ComposeError found.

    ``locators`` (one per loaded file) let the error name file:line:col; the file that
    spells out the deepest part of the key path wins. ``all_services``: every service
    name before profiles were applied; a ``required: false`` dependency on one of them
    that a profile disabled is fine, on a name that exists nowhere it is an error (as in
    Compose). Without it, any ``required: false`` dependency is let through.

    Not ``normalized`` (``config --no-normalize``), links and ``volumes_from`` are not
    dependencies and, as in Compose, not checked.

    Like compose-go's consistency check, this also completes the project in one place:
    a service with both ``scale`` and a ``deploy`` section gets ``deploy.replicas``.
    """
    checker = _Checker(config, locators)
    checker.all_services = set(all_services) if all_services is not None else None
    checker.consistency = _CONSISTENCY.get()
    checker.implied = normalized
    checker.run()


_CONSISTENCY: "contextvars.ContextVar[bool]" = contextvars.ContextVar("consistency", default=True)


def consistency_enabled() -> bool:
    """False inside ``consistency_checks(False)`` (``config --no-consistency``)."""
    return _CONSISTENCY.get()


class consistency_checks:  # noqa: N801 - used as a function: ``with consistency_checks(x):``
    """``config --no-consistency``: within this block check_config (called deep inside
    the loader) skips what compose-go's consistency check does (references, cycles,
    exclusive options, container names) and keeps only values that do not decode.
    (A class, not contextlib.contextmanager: contextlib costs every command ~1 ms.)"""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._tokens: list = []

    def __enter__(self) -> None:
        self._tokens.append(_CONSISTENCY.set(self.enabled))

    def __exit__(self, *exc: object) -> None:
        _CONSISTENCY.reset(self._tokens.pop())
