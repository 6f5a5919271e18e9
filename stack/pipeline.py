"""The loader: Compose files + environment -> the dict ``docker compose config`` prints.

Passes, in compose-go's order: discover (files, project directory, environment) ->
per file and per YAML document: parse with positions -> interpolate -> schema check (part
B's ``validate_file`` when present) -> canonical form -> ``extends`` -> ``include`` ->
``!reset``/``!override`` -> merge into the model; then paths resolved, implicit defaults
made explicit, profiles applied, ``env_file``s read, unused resources dropped, and the
result shaped like the Go structs' JSON. Part B's semantic ``check_config`` runs last.
"""
from __future__ import annotations

import os
import sys
TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs every command ~4 ms to import: annotations only
    from typing import Any, Callable

from .discover import ProjectSource, check_project_name, discover, normalize_project_name
from .errors import ComposeError, KeyPath, Mark
from .fieldrecord import FieldRecord
from .extends import apply_extends
from .include import apply_include
from .interpolate import Substitutor, interpolate
from .merge import RAW_MERGE, apply_resets, deep_copy, enforce_unicity, merge
from .normalize import (check_shapes, drop_unused_resources, escape_dollars, normalize, render,
                        resolve_environment, resolve_paths, set_defaults)
from .options import LoadOptions
from .profiles import apply_profiles
from .transform import canonical, depends_on_defaults
from .yamlpos import Locator, parse_yaml_documents


class LoadedConfig(FieldRecord):
    """The result of a load.

    ``config`` is exactly what ``docker compose config --format json`` prints (``$`` doubled
    when interpolation ran, so that the output reloads unchanged); ``model`` is the same
    document with the real values (single ``$``), which is what a runtime should use.

    ``extensions``: the structs' ``x-*`` keys by the path of their struct in ``config``
    (("services", "web"), ("services", "web", "ports", 0)...): Compose prints them in YAML
    only; top-level ``x-*`` keys are in ``config`` itself (JSON prints those).
    ``all_services``: every service's name before profiles and the selection applied.
    ``models``: the top-level models the services use, typed: Compose prints them in YAML only.
    """

    _fields = ("config", "model", "name", "working_dir", "config_files", "environment", "locators",
               "profiles", "extensions", "all_services", "models")

    def __init__(self, config: dict[str, Any], model: dict[str, Any], name: str, working_dir: str,
                 config_files: list[str], environment: dict[str, str],
                 locators: list[Locator] | None = None, profiles: list[str] | None = None,
                 extensions: dict[KeyPath, dict[str, Any]] | None = None,
                 all_services: list[str] | None = None, models: dict[str, Any] | None = None) -> None:
        self.config = config
        self.model = model
        self.name = name
        self.working_dir = working_dir
        self.config_files = config_files
        self.environment = environment
        self.locators = locators if locators is not None else []
        self.profiles = profiles if profiles is not None else []
        self.extensions = extensions if extensions is not None else {}
        self.all_services = all_services if all_services is not None else []
        self.models = models if models is not None else {}


def _hook(name: str) -> Callable[..., Any] | None:
    """Part B's validation hooks, imported lazily and only when their module exists."""
    try:
        from . import validate
    except ImportError as exc:
        if exc.name not in ("pystack.stack.validate", "pystack.stack"):
            raise
        return None
    return getattr(validate, name, None)


class _Positions:
    """A Locator over several files: the mark from the file that spells out most of a path."""

    def __init__(self, locators: list[Locator]) -> None:
        self.locators = locators

    def mark(self, path: KeyPath) -> Any:
        path = tuple(path)
        for depth in range(len(path), -1, -1):
            for loc in reversed(self.locators):
                pos = loc.marks.get(path[:depth])
                if pos is not None:
                    return loc.mark(path[:depth])
        return None


class _Loader:
    """One load: keeps the environment, the locators and the caches the passes share."""

    def __init__(self, options: LoadOptions, source: ProjectSource) -> None:
        self.options = options
        self.source = source
        self.env = source.environment
        self.locators: list[Locator] = []
        self.sub = Substitutor(self.env, warn=options.warn)
        self.validate_file = _hook("validate_file")
        self._texts: dict[str, str] = {}
        self.home = self.env.get("HOME")

    # -- reading ---------------------------------------------------------------

    def read(self, path: str) -> tuple[str, str]:
        """Text and display name of a file (``-`` is stdin)."""
        if path == "-":
            if self.options.stdin_text is not None:
                return self.options.stdin_text, "-"
            return sys.stdin.read(), "-"
        if path in self._texts:
            return self._texts[path], path
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        except FileNotFoundError:
            raise ComposeError(f"open {path}: no such file or directory") from None
        except IsADirectoryError:
            raise ComposeError(f"{path} is a directory, not a Compose file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ComposeError(f"cannot read {path}: {exc}") from None
        self._texts[path] = text
        return text, path

    def documents(self, path: str, sub: Substitutor) -> list[tuple[dict[str, Any], Locator, dict[str, Any]]]:
        """Each YAML document of ``path``: canonical, its locator, and the interpolated
        document as written (what compose-go's schema check sees, merged over the model
        so far: ``environment: ["=x"]`` is valid there, ``depends_on: {db: {}}`` is not)."""
        text, display = self.read(path)
        docs = parse_yaml_documents(text, display)
        # as compose-go: a file without any document adds nothing (the project as a
        # whole must not be empty, see load_config); an empty document is not a mapping
        out = []
        for data, locator in docs:
            self.locators.append(locator)
            if not isinstance(data, dict):
                raise ComposeError("top-level object must be a mapping",
                                   mark=Mark(display, *locator.start))
            if self.options.interpolate:
                data = interpolate(data, sub, locator)
            written = deep_copy(data)
            # compose-go applies ``include`` before the schema check: only its decoding
            # (include.py) says what an entry may hold
            written.pop("include", None)
            data = canonical(data, locator.error, raw=not self.options.interpolate)
            out.append((data, locator, written))
        return out

    # -- extends and include ------------------------------------------------------

    def other_file(self, sub: Substitutor) -> Callable[[str], tuple[dict[str, Any], list[KeyPath]]]:
        def load(path: str) -> tuple[dict[str, Any], list[KeyPath]]:
            if not os.path.exists(path):
                raise ComposeError(f"open {path}: no such file or directory")
            merged: dict[str, Any] = {}
            resets: list[KeyPath] = []
            for data, locator, _ in self.documents(path, sub):
                resets.extend(locator.reset_paths + locator.override_paths)
                merged = merge(merged, data)
            depends_on_defaults(merged)
            if self.options.resolve_paths:
                resolve_paths(merged, os.path.dirname(path), self.home)
            return merged, resets
        return load

    def rebase(self, service: dict[str, Any], rel_dir: str) -> None:
        """A base service from another file, paths not resolved: its relative paths are
        put relative to the extending file (``rel_dir`` in front)."""
        from .normalize import PathResolver

        PathResolver(rel_dir, self.home).service(service)

    def model(self, files: list[str], working_dir: str, env: dict[str, str], included: list[str],
              sub: Substitutor) -> dict[str, Any]:
        """Files merged into one model (compose-go ``loadYamlModel``), before normalization."""
        model: dict[str, Any] = {}
        for path in files:
            for data, locator, written in self.documents(path, sub):
                resets = locator.reset_paths + locator.override_paths
                apply_extends(data, locator.file, working_dir, resets, self.other_file(sub), locator.error,
                              None if self.options.resolve_paths else self.rebase)
                if "include" in data:
                    main = path if path != "-" else os.path.join(working_dir, "-")
                    apply_include(data, working_dir, env, included + [main] if not included else included,
                                  self.include_loader(), locator.file, locator.error)
                apply_resets(model, resets)
                if self.validate_file is not None:
                    # as compose-go: the schema checks the file as written merged over the
                    # (canonical) model so far, before the file's own canonical transform
                    self.validate_file(merge(model, written), _Positions(self.locators), locator.file)
                model = merge(model, data)
                depends_on_defaults(model)
        if not files:
            model = enforce_unicity(model)
        set_defaults(model)
        self.check_mounts_and_ports(model)
        return model

    def check_mounts_and_ports(self, model: dict[str, Any]) -> None:
        """compose-go's checks of the merged canonical model (with or without consistency
        checks): every port has a target (the short syntax ``"80:0"`` has none; the long
        ``{target: 0}`` keeps its 0), every volume a target (``""`` is ``.``), every bind
        mount a source when paths are resolved (``""`` is the project directory)."""
        services = model.get("services")
        for name, svc in (services.items() if isinstance(services, dict) else ()):
            if not isinstance(svc, dict):
                continue
            ports = svc.get("ports")
            for i, port in enumerate(ports if isinstance(ports, list) else ()):
                if isinstance(port, dict) and port.get("target") is None:
                    raise self.error("service port is missing a target port",
                                     ("services", name, "ports", i))
            volumes = svc.get("volumes")
            for i, vol in enumerate(volumes if isinstance(volumes, list) else ()):
                if not isinstance(vol, dict):
                    continue
                if vol.get("target") is None:
                    raise self.error("service volume is missing a mount target",
                                     ("services", name, "volumes", i))
                if (vol.get("type") == "bind" and vol.get("source") is None
                        and self.options.resolve_paths):  # compose-go's path resolution says so
                    raise self.error('invalid mount config for type "bind": field Source must '
                                     'not be empty', ("services", name, "volumes", i))

    def include_loader(self) -> Callable[[list[str], str, dict[str, str], list[str]], dict[str, Any]]:
        def load(files: list[str], project_dir: str, env: dict[str, str], included: list[str]) -> dict[str, Any]:
            sub = Substitutor(env, warn=self.options.warn, warned=self.sub.warned)
            model = self.model(files, project_dir, env, included, sub)
            if self.options.resolve_paths:
                resolve_paths(model, project_dir, self.home)
            return model
        return load

    # -- errors -------------------------------------------------------------------

    def error(self, message: str, path: KeyPath) -> ComposeError:
        """A ComposeError positioned in the file that spells out most of ``path``."""
        best = None
        best_depth = -1
        for loc in reversed(self.locators):
            for depth in range(len(path), best_depth, -1):
                if tuple(path[:depth]) in loc.marks:
                    if depth > best_depth:
                        best, best_depth = loc, depth
                    break
        if best is not None:
            return best.error(message, path)
        return ComposeError(message, path=path)


def _name_from_files(loader: _Loader, files: list[str]) -> str | None:
    """Top-level ``name:`` of the files (the last one that sets it), interpolated."""
    name = None
    for path in files:
        text, display = loader.read(path)
        if "name" not in text:
            continue
        for data, _ in parse_yaml_documents(text, display):
            if isinstance(data, dict) and isinstance(data.get("name"), (str, int, float)):
                value = str(data["name"])
                name = loader.sub.substitute(value) if loader.options.interpolate else value
    return name or None


def load_config(options: LoadOptions) -> LoadedConfig:
    """Run the whole pipeline; any mistake in the files raises :class:`ComposeError`,
    positioned (file:line:col) wherever its key path is written in a file."""
    source = discover(options)
    loader = _Loader(options, source)
    token = RAW_MERGE.set(not options.interpolate)
    try:
        return _load(options, source, loader)
    except ComposeError as exc:
        if exc.mark is not None or exc.file is not None or not exc.path:
            raise
        # a pass that knows only the key path (env_file reading, a missing extends file...)
        positioned = loader.error(exc.message, exc.path)
        if positioned.mark is None:
            raise
        raise positioned from None
    finally:
        RAW_MERGE.reset(token)


def _load(options: LoadOptions, source: ProjectSource, loader: _Loader) -> LoadedConfig:
    name = source.project_name
    if name:
        check_project_name(name)
    else:
        # a top-level name: is normalized, not checked (as Compose 2.40 does)
        name = normalize_project_name(_name_from_files(loader, source.files) or "")
    if not name:
        name = source.default_name
        if not name:
            raise ComposeError("project name must not be empty")
    loader.env["COMPOSE_PROJECT_NAME"] = name
    working_dir = source.working_dir
    included = [source.files[0]] if source.files else []
    data = loader.model(source.files, working_dir, loader.env, included, loader.sub)
    if not {k: v for k, v in data.items() if k != "version"}:
        others = f" (and so is {', '.join(source.files[1:])})" if len(source.files) > 1 else ""
        raise ComposeError(f"empty compose file{others}", file=source.files[0] if source.files else None)
    if "version" in data and options.warn:
        print('WARN[0000] the attribute `version` is obsolete, it will be ignored, '
              'please remove it to avoid potential confusion', file=sys.stderr)
    data.pop("version", None)
    written_name = data.pop("name", None)
    if options.interpolate:
        check_shapes(data, loader.error)
    raw = not options.interpolate
    if options.resolve_paths:
        resolve_paths(data, working_dir, loader.home, raw=raw)
    if options.normalize:
        normalize(data, name, loader.env, raw=raw)
    every = dict(data.get("services") or {}) if not raw else {}
    enabled = _hook("consistency_enabled")
    profiles = source.profiles if raw else apply_profiles(
        data, source.profiles, options.services, check=enabled is not None and enabled())
    dropped = {k: v for k, v in every.items() if k not in (data.get("services") or {})}
    if dropped:
        # Compose decodes every service before it applies profiles and selection: a
        # value that does not decode (a duration without unit...) in a disabled service
        # is an error too
        render(deep_copy({"services": dropped}), name, loader.error)
    if raw:
        # Compose prints the merged model as it stands (its ``ToModel``): no Go typing
        # the project name is set by normalization; without it only a name: of the files
        top = {"name": name} if options.normalize else (
            {"name": written_name} if written_name is not None else {})
        raw_model = {**top, **{k: v for k, v in data.items() if v is not None}}
        return LoadedConfig(config=raw_model, model=raw_model, name=name, working_dir=working_dir,
                            config_files=list(source.files), environment=dict(loader.env),
                            locators=loader.locators, profiles=profiles)
    resolve_environment(data, loader.env)
    drop_unused_resources(data)
    extensions: dict[KeyPath, dict[str, Any]] = {}
    models: dict[str, Any] = {}
    model = render(data, name, loader.error, extensions, models)
    check = _hook("check_config")
    if check is not None and options.normalize:
        # part B's load_checked also skips the semantic checks without normalization
        check(model, loader.locators, all_services=list(every))
    config = escape_dollars(model) if options.interpolate else model
    if options.interpolate:
        extensions = {p: escape_dollars(x) for p, x in extensions.items()}
        models = escape_dollars(models)
    return LoadedConfig(config=config, model=model, name=name, working_dir=working_dir,
                        config_files=list(source.files), environment=dict(loader.env),
                        locators=loader.locators, profiles=profiles, extensions=extensions,
                        all_services=list(every), models=models)


__all__ = ["LoadOptions", "LoadedConfig", "load_config", "deep_copy"]
