"""``include``: other Compose applications imported as a whole into this one.

Each include entry is loaded as its own model (compose-go ``loader/include.go``): its
first file decides its project directory unless ``project_directory`` is given; its env
files (default: that directory's ``.env``) add to, but never override, the including
environment; its relative paths resolve against its own project directory. Imported
services, networks, volumes, secrets and configs must not clash with different
definitions of the same name; an include cycle is an error.
"""
from __future__ import annotations

import os
from collections.abc import Callable
TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs every command ~4 ms to import: annotations only
    from typing import Any

from .dotenv import read_dotenv
from .errors import ComposeError, KeyPath

# (files, project_dir, environment, included chain) -> merged model with absolute paths
ModelLoader = Callable[[list[str], str, dict[str, str], list[str]], "dict[str, Any]"]


ErrorFn = Callable[[str, KeyPath], ComposeError]


def _decode_entry(entry: dict[str, Any], index: int, err: ErrorFn) -> tuple[list[str], str | None, list[str]]:
    """path, project_directory and env_file of one entry, typed as compose-go decodes its
    ``IncludeConfig`` (not checked by the schema: ``include`` is gone before it runs):
    other keys are ignored, a null is as absent, a string list holds only strings."""
    lists = {}
    for key in ("path", "env_file"):
        value = entry.get(key)
        items = value if isinstance(value, list) else [] if value is None else [value]
        if not all(isinstance(item, str) for item in items):
            raise err("must be a string or a list of strings", ("include", index, key))
        lists[key] = items
    project_dir = entry.get("project_directory")
    if isinstance(project_dir, int) and not isinstance(project_dir, bool):
        project_dir = str(project_dir)  # as Go's weakly typed decoding does
    if project_dir is not None and not isinstance(project_dir, str):
        raise err("must be a string", ("include", index, "project_directory"))
    return lists["path"], project_dir, lists["env_file"]


def apply_include(data: dict[str, Any], working_dir: str, environment: dict[str, str],
                  included: list[str], load_model: ModelLoader, filename: str,
                  err: ErrorFn | None = None) -> None:
    """Load every ``include`` entry of ``data`` and import its resources (in place).
    ``err`` positions a mistake (the including file's locator); mistakes in the
    included files carry their own positions."""
    if err is None:
        def err(message: str, path: KeyPath) -> ComposeError:
            return ComposeError(message, path=path, file=filename)
    entries = data.pop("include", None)
    if not entries:
        return
    if not isinstance(entries, list):
        raise err("must be a list", ("include",))
    for index, entry in enumerate(entries):
        if entry is None:
            continue  # Compose imports nothing for a null entry
        if not isinstance(entry, dict):
            raise err("must be a string or a mapping", ("include", index))
        path_list, project_dir, env_files = _decode_entry(entry, index, err)
        paths = [os.path.normpath(os.path.join(working_dir, os.path.expanduser(p)))
                 for p in path_list]
        # an entry without a path (``{}``, ``{path: []}``) imports nothing, as in Compose
        # (its env files are still checked)
        main = paths[0] if paths else working_dir
        if paths and main in included:
            chain = " -> ".join(included + [main])
            raise err(f"include cycle detected: {chain}", ("include", index))
        if not project_dir:
            project_dir = os.path.dirname(main)
        else:
            project_dir = os.path.normpath(os.path.join(working_dir, os.path.expanduser(project_dir)))
        if not env_files:
            dotenv = os.path.join(project_dir, ".env")
            env_files = [dotenv] if os.path.isfile(dotenv) else []
        else:
            resolved = []
            for f in env_files:
                if f == "/dev/null":
                    continue
                f = os.path.normpath(os.path.join(working_dir, f))
                if not os.path.exists(f):
                    raise err(f"include env file {f} not found", ("include", index, "env_file"))
                if os.path.isdir(f):
                    raise err(f"{f} is not a file", ("include", index, "env_file"))
                resolved.append(f)
            env_files = resolved
        env = dict(environment)
        loaded: dict[str, str] = {}
        for f in env_files:
            loaded.update(read_dotenv(f, lambda k: environment.get(k, loaded.get(k))))
        for k, v in loaded.items():
            env.setdefault(k, v)
        if not paths:
            continue
        for p in paths:
            if not os.path.exists(p):
                raise err(f"open {p}: no such file or directory", ("include", index, "path"))
        imported = load_model(paths, project_dir, env, included + [main])
        _carry_environment(imported, loaded, env)
        _import_resources(imported, data, paths[0], err)


def _carry_environment(imported: dict[str, Any], from_files: dict[str, str],
                       environment: dict[str, str]) -> None:
    """compose-go takes the value of an included ``environment`` secret along as
    ``x-#value``, which only the raw model prints (from the include's env files: the raw
    model has no other environment); an included ``environment`` config gets it as
    ``content`` and so fails its own check (Compose 2.40 refuses such a project, whatever
    the value; interpolating, the shell's variables count too)."""
    from .merge import RAW_MERGE

    raw = RAW_MERGE.get()
    for name, secret in (imported.get("secrets") or {}).items():
        key = secret.get("environment") if isinstance(secret, dict) else None
        if isinstance(key, str) and key in from_files and raw:
            secret["x-#value"] = from_files[key]
    for name, config in (imported.get("configs") or {}).items():
        key = config.get("environment") if isinstance(config, dict) else None
        if isinstance(key, str) and key in (from_files if raw else environment):
            raise ComposeError("file|environment|content attributes are mutually exclusive "
                               "(Compose 2.40 gives an included environment config a content "
                               "from the include's env files)", path=("configs", name))


def _import_resources(imported: dict[str, Any], data: dict[str, Any], source: str, err: ErrorFn) -> None:
    for kind in ("services", "volumes", "networks", "secrets", "configs", "models"):
        theirs = imported.get(kind)
        if not isinstance(theirs, dict):
            continue
        ours = data.get(kind)
        if not isinstance(ours, dict):
            ours = {}
            data[kind] = ours
        for name, value in theirs.items():
            if name in ours and ours[name] != value:
                singular = kind[:-1]
                raise err(f"imported compose file {source} defines conflicting {singular} {name}",
                          (kind, name))
            ours[name] = value
