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
from typing import Any, Callable

from .dotenv import read_dotenv
from .errors import ComposeError

# (files, project_dir, environment, included chain) -> merged model with absolute paths
ModelLoader = Callable[[list[str], str, dict[str, str], list[str]], dict[str, Any]]


def apply_include(data: dict[str, Any], working_dir: str, environment: dict[str, str],
                  included: list[str], load_model: ModelLoader, filename: str) -> None:
    """Load every ``include`` entry of ``data`` and import its resources (in place)."""
    entries = data.pop("include", None)
    if not entries:
        return
    if not isinstance(entries, list):
        raise ComposeError("include must be a list", path=("include",), file=filename)
    for index, entry in enumerate(entries):
        if entry is None:
            continue  # Compose imports nothing for a null entry
        if not isinstance(entry, dict):
            raise ComposeError("include entry must give a path", path=("include", index), file=filename)
        paths = [os.path.normpath(os.path.join(working_dir, os.path.expanduser(str(p))))
                 for p in entry.get("path") or ()]
        # an entry without a path (``{}``, ``{path: []}``) imports nothing, as in Compose
        # (its env files are still checked)
        main = paths[0] if paths else working_dir
        if paths and main in included:
            chain = "\n include ".join(included[1:] + [main])
            raise ComposeError(f"include cycle detected:\n{included[0]}\n include {chain}",
                               path=("include", index), file=filename)
        project_dir = entry.get("project_directory")
        if not project_dir:
            project_dir = os.path.dirname(main)
        else:
            project_dir = os.path.normpath(os.path.join(working_dir, os.path.expanduser(str(project_dir))))
        env_files = entry.get("env_file")
        if not env_files:
            dotenv = os.path.join(project_dir, ".env")
            env_files = [dotenv] if os.path.isfile(dotenv) else []
        else:
            resolved = []
            for f in env_files:
                if f == "/dev/null":
                    continue
                f = os.path.normpath(os.path.join(working_dir, str(f)))
                if not os.path.exists(f):
                    raise ComposeError(f"include env file {f} not found", path=("include", index), file=filename)
                if os.path.isdir(f):
                    raise ComposeError(f"{f} is not a file", path=("include", index), file=filename)
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
                raise ComposeError(f"open {p}: no such file or directory", path=("include", index), file=filename)
        imported = load_model(paths, project_dir, env, included + [main])
        _import_resources(imported, data, paths[0], filename)


def _import_resources(imported: dict[str, Any], data: dict[str, Any], source: str, filename: str) -> None:
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
                raise ComposeError(f"imported compose file {source} defines conflicting {singular} {name}",
                                   path=(kind, name), file=filename)
            ours[name] = value
