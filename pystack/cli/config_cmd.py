"""``pystack config``: parse, check and print the project in canonical form, as
``docker compose config`` does.

Only the loader, the semantic checks and an output format are imported: no pydantic,
no networkx, and jsonschema only when a file is invalid, so that a cold run stays close
to the Go binary's time.
"""
from __future__ import annotations

import sys
from typing import Any

import click

# Compose prints the project's top-level keys in its struct's order (YAML) or sorted
# (JSON); services in Go struct order either way (see stack.hash.GO_ORDER).
_YAML_TOP = ("name", "services", "networks", "volumes", "secrets", "configs", "models")


@click.command("config", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("services", nargs=-1)
@click.option("--format", "fmt", type=click.Choice(["yaml", "json"]), default=None,
              help="Format the output (default yaml).")
@click.option("--services", "list_services", is_flag=True, help="Print the service names, one per line.")
@click.option("--volumes", "list_volumes", is_flag=True, help="Print the volume names, one per line.")
@click.option("--networks", "list_networks", is_flag=True, help="Print the network names, one per line.")
@click.option("--profiles", "list_profiles", is_flag=True, help="Print the profile names, one per line.")
@click.option("--images", "list_images", is_flag=True, help="Print the image names, one per line.")
@click.option("--models", "list_models", is_flag=True, help="Print the model names, one per line.")
@click.option("--variables", "list_variables", is_flag=True,
              help="Print model variables and default values.")
@click.option("--environment", "list_environment", is_flag=True,
              help="Print the environment used for interpolation.")
@click.option("--hash", "hash_of", metavar="SERVICES",
              help="Print the service config hash, one per line ('*' or comma-separated names).")
@click.option("-q", "--quiet", is_flag=True, help="Only validate the configuration, print nothing.")
@click.option("--no-interpolate", is_flag=True, help="Don't interpolate environment variables.")
@click.option("--no-normalize", is_flag=True, help="Don't normalize the compose model.")
@click.option("--no-path-resolution", is_flag=True, help="Don't resolve file paths.")
@click.option("--no-env-resolution", is_flag=True,
              help="Don't resolve service env files (Compose 2.40.3 prints the same either way).")
@click.option("--no-consistency", is_flag=True,
              help="Don't check model consistency (may print an invalid model).")
@click.option("--resolve-image-digests", is_flag=True,
              help="Pin image tags to digests (asks each image's registry; no engine needed).")
@click.option("--lock-image-digests", is_flag=True,
              help="Produces an override file with image digests (asks each image's registry).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Save to file (default stdout).")
@click.pass_context
def config(ctx: click.Context, services: tuple[str, ...], fmt: str | None, list_services: bool,
           list_volumes: bool, list_networks: bool, list_profiles: bool, list_images: bool,
           list_models: bool, list_variables: bool, list_environment: bool,
           hash_of: str | None, quiet: bool,
           no_interpolate: bool, no_normalize: bool, no_path_resolution: bool,
           no_env_resolution: bool, no_consistency: bool, resolve_image_digests: bool,
           lock_image_digests: bool, output: str | None) -> None:
    """Parse, resolve and render the compose file in canonical format."""
    from pystack.stack.load import load_checked
    from pystack.stack.validate import consistency_checks

    del no_env_resolution  # accepted for compatibility: Compose 2.40.3 prints the same
    options = _load_options(ctx, services, no_interpolate, no_normalize, no_path_resolution)
    if list_variables:
        options.interpolate = False  # the variables as written, defaults included
    if hash_of is not None or list_services or list_volumes or list_networks:
        options.services = []  # Compose ignores SERVICE arguments for these
    with consistency_checks(not no_consistency):
        loaded = load_checked(options)
    cfg: dict[str, Any] = loaded.config  # what Compose prints: "$" doubled

    if list_services:
        return _emit(_service_names(cfg), quiet)
    if list_volumes:
        return _emit(sorted(cfg.get("volumes") or {}), quiet)
    if list_networks:
        return _emit(sorted(cfg.get("networks") or {}), quiet)
    if hash_of is not None:
        return _emit(_hashes(getattr(loaded, "model", cfg), hash_of), quiet)
    if list_profiles:
        # every service's profiles, enabled or not (Compose's AllServices): load again
        # with all profiles on, now that the load as asked has passed its checks
        options.profiles, options.services = ["*"], []
        with consistency_checks(not no_consistency):
            every = load_checked(options).config.get("services") or {}
        found = {p for svc in every.values() for p in svc.get("profiles") or []}
        return _emit(sorted(found), quiet)
    if list_images:
        return _emit([svc.get("image") or f"{cfg.get('name')}-{name}"
                      for name, svc in sorted((cfg.get("services") or {}).items())], quiet)
    if list_models:
        # Compose prints each used top-level model's `model` (the OCI reference)
        models = getattr(loaded, "models", None) or cfg.get("models") or {}
        return _emit([m.get("model", name) if isinstance(m, dict) else name
                      for name, m in sorted(models.items())], quiet)
    if list_variables:
        return _emit(_variables_report(_variables(cfg), fmt), quiet)
    if list_environment:
        env = getattr(loaded, "environment", None) or {}
        return _emit([f"{k}={v}" for k, v in sorted(env.items())], quiet)

    # only the printed project has its images pinned (the listings above print them as
    # written, as Compose does)
    extensions = getattr(loaded, "extensions", None)
    if resolve_image_digests or lock_image_digests:
        cfg = _resolve_digests(cfg)
    if lock_image_digests:
        cfg, extensions = _images_only(cfg, fmt or "yaml", raw=no_interpolate), None
    content = _render(cfg, fmt or "yaml", raw=no_interpolate, extensions=extensions,
                      locators=getattr(loaded, "locators", None),
                      models=None if lock_image_digests else getattr(loaded, "models", None))
    if quiet:
        return
    if output:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(content)
        return
    sys.stdout.write(content)
    sys.stdout.flush()


def _resolve_digests(cfg: dict[str, Any]) -> dict[str, Any]:
    """compose-go's ``WithImagesResolved``: every service image as a fully qualified
    reference with its manifest digest (``docker.io/library/nginx:latest@sha256:...``; a
    reference that has a digest keeps only that). Docker Compose asks the engine's
    ``/distribution`` endpoint; pystack asks the registry itself (mirrors, insecure
    registries and credentials as ``pystack pull`` uses them), so this needs the registry
    to be reachable, and a registry error is the one line printed."""
    from pystack.errors import UserError
    from pystack.runtime.images.errors import RegistryError
    from pystack.runtime.images.pull import endpoints
    from pystack.runtime.images.reference import parse
    from pystack.runtime.images.registry import socket_error_types

    services = dict(cfg.get("services") or {})
    for name, svc in sorted(services.items()):
        image = svc.get("image") if isinstance(svc, dict) else None
        if not image:
            continue
        try:
            ref = parse(str(image).replace("$$", "$"))
        except (UserError, ValueError) as exc:
            raise UserError(f"service {name!r}: invalid image reference {image!r}: {exc}") from None
        if ref.digest:
            pinned = f"{ref.name}@{ref.digest}"
        else:
            ref = ref.with_tag(ref.tag or "latest")
            digest, last = None, None
            for client, _mirror in endpoints(ref):
                try:
                    _data, _media, digest = client.get_manifest(ref.repository, ref.tag)
                    break
                except (RegistryError, UserError, *socket_error_types()) as exc:
                    last = exc
            if digest is None:
                raise UserError(f"failed to resolve digest for {ref}: {last}") from None
            pinned = f"{ref}@{digest}"
        services[name] = {**svc, "image": pinned}
    return {**cfg, "services": services}


def _images_only(cfg: dict[str, Any], fmt: str, raw: bool) -> dict[str, Any]:
    """``--lock-image-digests``: an override file that pins each service's image and
    nothing else (Compose 2.40's ``imagesOnly``: a new project with the services' images;
    its JSON has an empty name and the null command/entrypoint of a Go service, its YAML
    neither; without interpolation the raw model keeps only ``services.*.image``)."""
    services: dict[str, Any] = {}
    for name, svc in (cfg.get("services") or {}).items():
        image = svc.get("image") if isinstance(svc, dict) else None
        pinned = {"image": image} if image else {}
        services[name] = pinned if raw else {"command": None, "entrypoint": None, **pinned}
    if raw or fmt != "json":
        return {"services": services}
    return {"name": "", "services": services}


def _load_options(ctx: click.Context, services: tuple[str, ...], no_interpolate: bool,
                  no_normalize: bool, no_path_resolution: bool) -> Any:
    """LoadOptions from the global flags (ctx.obj) and this command's switches."""
    from pystack.stack.options import LoadOptions

    g = ctx.obj
    return LoadOptions(
        files=list(getattr(g, "files", None) or []),
        project_name=getattr(g, "project_name", None),
        project_directory=getattr(g, "project_directory", None),
        env_files=list(getattr(g, "env_files", None) or []),
        profiles=list(getattr(g, "profiles", None) or []),
        services=list(services),
        interpolate=not no_interpolate,
        normalize=not no_normalize,
        resolve_paths=not no_path_resolution,
    )


def _variables(model: Any) -> dict[str, dict[str, Any]]:
    """Every ``$VAR``/``${VAR...}`` in the model's values (compose-go
    ``template.ExtractVariables``): name -> Name, DefaultValue, PresenceValue, Required.
    Defaults are searched too (``${A:-${B}}`` also names B)."""
    found: dict[str, dict[str, Any]] = {}

    def scan(text: str) -> None:
        i = 0
        while True:
            i = text.find("$", i)
            if i < 0 or i + 1 >= len(text):
                return
            nxt = text[i + 1]
            if nxt == "$":
                i += 2
                continue
            if nxt == "{":
                close, depth, k = -1, 0, i
                while k < len(text):
                    if text.startswith("${", k):
                        depth += 1
                        k += 2
                        continue
                    if text[k] == "}":
                        depth -= 1
                        if depth == 0:
                            close = k
                            break
                    k += 1
                if close < 0:
                    return
                body, i = text[i + 2:close], close + 1
            else:
                k = i + 1
                while k < len(text) and (text[k].isalnum() or text[k] == "_"):
                    k += 1
                body, i = text[i + 1:k], max(k, i + 1)
            _record(body)

    def _record(body: str) -> None:
        k = 0
        while k < len(body) and (body[k].isalnum() or body[k] == "_"):
            k += 1
        name, rest = body[:k], body[k:]
        if not name or not (name[0].isalpha() or name[0] == "_"):
            return
        var = {"Name": name, "DefaultValue": "", "PresenceValue": "", "Required": False}
        op = rest[1:2] if rest.startswith(":") else rest[:1]
        arg = rest[2:] if rest.startswith(":") else rest[1:]
        if op == "?":
            var["Required"] = True
        elif op == "-":
            var["DefaultValue"] = arg
        elif op == "+":
            var["PresenceValue"] = arg
        found[name] = var
        if var["DefaultValue"]:
            scan(var["DefaultValue"])

    def walk(value: Any) -> None:
        if isinstance(value, str):
            scan(value)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(model)
    return dict(sorted(found.items()))


def _variables_report(variables: dict[str, dict[str, Any]], fmt: str | None) -> list[str]:
    """As Compose prints ``--variables``: a table, or ``--format json``/``yaml``."""
    if fmt == "json":
        import json

        return [json.dumps(variables, indent=4), ""]
    if fmt == "yaml":
        lowered = {n: {k.lower(): v for k, v in var.items()} for n, var in variables.items()}
        return [go_yaml(lowered, indent=4).rstrip("\n")]
    rows = [("NAME", "REQUIRED", "DEFAULT VALUE", "ALTERNATE VALUE")] + [
        (v["Name"], "true" if v["Required"] else "false", v["DefaultValue"], v["PresenceValue"])
        for v in variables.values()]
    widths = [max(20, max(len(r[c]) for r in rows) + 3) for c in range(3)]
    return ["".join(r[c].ljust(widths[c]) for c in range(3)) + r[3] for r in rows]


def _emit(lines: list[str], quiet: bool) -> None:
    if not quiet:
        for line in lines:
            click.echo(line)


def _service_names(cfg: dict[str, Any]) -> list[str]:
    """Service names in dependency order (dependencies first), as Compose prints them."""
    from pystack.stack.graph import dependency_edges

    services = cfg.get("services") or {}
    needs: dict[str, set[str]] = {name: set() for name in services}
    for name, dep, _attrs in dependency_edges(cfg):
        if dep in services:
            needs[name].add(dep)
    out: list[str] = []
    done: set[str] = set()
    while len(out) < len(needs):
        ready = sorted(n for n in needs if n not in done and needs[n] <= done)
        if not ready:  # a cycle slipped through (--no-consistency): keep the rest sorted
            ready = sorted(n for n in needs if n not in done)
        out.extend(ready)
        done.update(ready)
    return out


def _hashes(cfg: dict[str, Any], spec: str) -> list[str]:
    from pystack.errors import NotFound
    from pystack.stack.hash import service_hash

    services = cfg.get("services") or {}
    names = sorted(services) if spec == "*" else sorted(n for n in spec.split(",") if n)
    lines = []
    for name in names:
        if name not in services:
            raise NotFound(f"no such service: {name}")
        lines.append(f"{name} {service_hash(services[name])}")
    return lines


def _ordered(cfg: dict[str, Any], top: tuple[str, ...] | None) -> dict[str, Any]:
    """Keys in Compose's print order: top-level by ``top`` (None: sorted, for JSON, which
    prints whole floats as integers), services in Go struct order, other sections sorted."""
    from pystack.stack.hash import _ordered
    from pystack.stack.normalize import resource_order

    def go_ordered(value: Any, pattern: str, parent: str) -> Any:
        return _ordered(value, pattern, parent, ints=top is None)

    keys = list(cfg)
    if top is None:
        keys.sort()
    else:
        rank = {k: i for i, k in enumerate(top)}
        keys.sort(key=lambda k: (rank.get(k, len(rank)), k))
    out: dict[str, Any] = {}
    for key in keys:
        value = cfg[key]
        if key == "services" and isinstance(value, dict):
            value = {n: go_ordered(s, "", "") for n, s in sorted(value.items())}
        elif isinstance(value, dict) and key in ("networks", "volumes", "secrets", "configs", "models"):
            value = {n: resource_order(key, v) for n, v in sorted(value.items())}
        elif key.startswith("x-"):
            value = go_ordered(value, key, key)  # extensions are Go maps: sorted keys
        out[key] = value
    return out


_YAML11_BOOLS = {"y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "on", "On", "ON",
                 "off", "Off", "OFF"}
# Go pointers to structs: printed even when empty
_KEEP_EMPTY = {"volume", "bind", "tmpfs", "image", "healthcheck", "build", "deploy", "develop",
               "logging", "blkio_config", "credential_spec", "provider", "restart_policy",
               "update_config", "rollback_config", "limits", "reservations"}
# Go maps: their values are printed whatever they hold (omitempty is for struct fields)
_USER_MAPS = {("services",), ("networks",), ("volumes",), ("secrets",), ("configs",),
              ("models",), ("services", "*", "networks"), ("services", "*", "depends_on"),
              ("services", "*", "ulimits"), ("services", "*", "build", "ulimits"),
              ("services", "*", "models")}


def _sorted_deep(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted_deep(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted_deep(v) for v in value]
    return value


def _yaml_omitempty(cfg: dict[str, Any]) -> dict[str, Any]:
    """Compose's YAML leaves out what its JSON spells as null or {} (Go ``omitempty``
    on the yaml tags): ``command: null``, ``ipam: {}``. A null *value in a map* (a
    service's ``networks: {default: null}``) stays, and so does ``services: {}``."""
    def prune(value: Any, path: tuple[str, ...]) -> Any:
        if isinstance(value, dict):
            out = {}
            user_map = path in _USER_MAPS
            for key, item in value.items():
                if isinstance(key, str) and key.startswith("x-"):
                    out[key] = item  # extensions: Go maps, printed as they are
                    continue
                child = path + ("*",) if path in (("services",),) or (
                    len(path) == 1 and path[0] in ("networks", "volumes", "secrets", "configs",
                                                   "models")) else path + (str(key),)
                item = prune(item, child)  # children first: {command: null} becomes {}
                if not user_map and ((item == {} and key not in _KEEP_EMPTY) or (
                        item is None and key in _NULLABLE_FIELDS)):
                    continue
                out[key] = item
            return out
        if isinstance(value, list):
            return [prune(v, path) for v in value]
        return value

    out = prune(cfg, ())
    if "services" not in out:  # printed even when empty, in its place after the name
        out = {**{k: v for k, v in out.items() if k == "name"}, "services": {},
               **{k: v for k, v in out.items() if k != "name"}}
    for svc in (out.get("services") or {}).values():
        if isinstance(svc, dict):
            for key in [k for k, v in svc.items() if v is None and not k.startswith("x-")]:
                del svc[key]
    return out


# struct fields that JSON prints as null and YAML omits (hooks' and watch execs' too)
_NULLABLE_FIELDS = {"command", "entrypoint"}


def _with_extensions(cfg: dict[str, Any], extensions: dict[Any, dict[str, Any]]) -> dict[str, Any]:
    """``cfg`` with the structs' ``x-*`` keys put back (after the struct's fields, sorted,
    as go-yaml prints Go's inline ``Extensions`` map), for the YAML printout."""
    import copy

    out = copy.deepcopy(cfg)
    for path, keys in extensions.items():
        node: Any = out
        for part in path:
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
                node = node[part]
            else:
                node = None
                break
        if isinstance(node, dict):
            for key in sorted(keys):
                node[key] = _sorted_deep(keys[key])
    return out


def _check_ssh_json(doc: dict[str, Any], locators: Any) -> None:
    """Compose 2.40 cannot print an ssh key with a path as JSON (its ``SSHKey`` JSON is
    invalid): it fails, and so does this, naming the key."""
    from pystack.stack.errors import ComposeError

    for name, svc in (doc.get("services") or {}).items():
        build = svc.get("build") if isinstance(svc, dict) else None
        for key in (build.get("ssh") or ()) if isinstance(build, dict) else ():
            if isinstance(key, str) and ": " in key:
                path = ("services", name, "build", "ssh")
                mark = next((loc.mark(path) for loc in reversed(list(locators or ()))
                             if path in getattr(loc, "marks", {})), None)
                raise ComposeError("json: error calling MarshalJSON for type types.SSHKey: "
                                   "invalid character ':' after top-level value", path=path, mark=mark)


def _not_json(doc: Any, locators: Any) -> Exception:
    """Go's encoder refuses Inf and NaN (a YAML ``.inf`` in an ``x-*`` value or, without
    interpolation, anywhere): Compose's message, with where the value is."""
    import math

    from pystack.stack.errors import ComposeError
    from pystack.stack.transform import go_str

    def find(value: Any, path: tuple) -> tuple | None:
        if isinstance(value, float) and not math.isfinite(value):
            return path + (value,)
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(
            value, list) else ()
        for key, item in items:
            found = find(item, path + (key,))
            if found is not None:
                return found
        return None

    found = find(doc, ()) or ((), math.inf)
    path, value = found[:-1], found[-1]
    mark = None
    for loc in reversed(list(locators or ())):
        if path in getattr(loc, "marks", {}):
            mark = loc.mark(path)
            break
    return ComposeError(f"json: unsupported value: {go_str(value)}", path=path, mark=mark)


def _render(cfg: dict[str, Any], fmt: str, raw: bool = False,
            extensions: dict[Any, dict[str, Any]] | None = None, locators: Any = None,
            models: dict[str, Any] | None = None) -> str:
    if models and fmt != "json" and not raw:
        cfg = {**cfg, "models": models}  # Compose 2.40 prints them in YAML only
    if extensions and fmt != "json" and not raw:
        cfg = _with_extensions(cfg, extensions)
    if raw and fmt != "json":
        # without interpolation Compose prints its model as a Go map: every key sorted,
        # nothing left out
        return go_yaml(_sorted_deep(cfg), indent=2)
    if fmt == "json":
        import json

        doc = _sorted_deep(cfg) if raw else _ordered(cfg, None)
        if not raw:
            _check_ssh_json(doc, locators)
        try:
            text = json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False)
        except ValueError:
            raise _not_json(doc, locators) from None
        # Go's encoder is HTML-safe
        return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return go_yaml(_yaml_omitempty(_ordered(cfg, _YAML_TOP)), indent=2)


def go_yaml(data: Any, indent: int) -> str:
    """YAML as go-yaml v3 writes it: lists indented under their key, double quotes where
    YAML (1.1 or 1.2) would read plain text as another type ("8080", "Y"), literal blocks
    for several lines, keys in the given order."""
    import yaml

    class _Dumper(yaml.SafeDumper):
        def increase_indent(self, flow: bool = False, indentless: bool = False) -> Any:
            return super().increase_indent(flow, False)

    def _str(dumper: Any, value: str) -> Any:
        tag = "tag:yaml.org,2002:str"
        style = None
        if "\n" in value:
            style = "|"
        elif value in _YAML11_BOOLS or dumper.resolve(yaml.ScalarNode, value, (True, False)) != tag:
            style = '"'
        return dumper.represent_scalar(tag, value, style=style)

    def _float(dumper: Any, value: float) -> Any:
        text = go_yaml_float(value)  # plain, whatever PyYAML's YAML 1.1 would read it as
        return dumper.represent_scalar(dumper.resolve(yaml.ScalarNode, text, (True, False)), text)

    _Dumper.add_representer(str, _str)
    _Dumper.add_representer(float, _float)
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, indent=indent,
                     default_flow_style=False, allow_unicode=True, width=1 << 16)


def go_yaml_float(value: float) -> str:
    """A float as go-yaml writes it: ``strconv.FormatFloat(v, 'g', -1, 64)`` (shortest
    digits; an exponent, of at least two digits, below 1e-4 or from 1e+06 on) with YAML's
    ``.inf``/``.nan``."""
    import math
    from decimal import Decimal

    if math.isnan(value):
        return ".nan"
    if math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    sign = "-" if math.copysign(1.0, value) < 0 else ""
    if value == 0:
        return sign + "0"
    _, digits_t, exponent = Decimal(repr(abs(value))).normalize().as_tuple()
    digits = "".join(map(str, digits_t))
    point = len(digits) + int(exponent)  # digits before the decimal point
    exp = point - 1
    if exp < -4 or exp >= 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return sign + digits + "0" * (point - len(digits))
    return f"{sign}{digits[:point]}.{digits[point:]}"
