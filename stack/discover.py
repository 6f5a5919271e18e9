"""Which files, which project directory, which name, which environment (before any YAML).

The order follows Docker Compose v2's ``ToProjectOptions``: the shell environment (plus
``PWD``) always wins; then the env files (``--env-file``, else ``COMPOSE_ENV_FILES``,
else ``.env`` in the project directory) fill in what is not set; then ``COMPOSE_FILE``
(which may itself come from ``.env``) or the default file names searched upwards; and,
because the project directory may only now be known, the env files once more.
"""
from __future__ import annotations

import os

from .dotenv import read_dotenv
from .errors import ComposeError
from .options import LoadOptions
from .fieldrecord import FieldRecord

DEFAULT_FILES = ("compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml")
OVERRIDE_FILES = ("compose.override.yml", "compose.override.yaml",
                  "docker-compose.override.yml", "docker-compose.override.yaml")

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")


class ProjectSource(FieldRecord):
    """Everything the YAML passes need that does not come from the YAML itself."""

    _fields = ("files", "working_dir", "environment", "project_name", "default_name", "profiles",
               "env_files")

    def __init__(self, files: list[str], working_dir: str, environment: dict[str, str],
                 project_name: str | None, default_name: str, profiles: list[str] | None = None,
                 env_files: list[str] | None = None) -> None:
        self.files = files                  # absolute paths, or "-" for stdin
        self.working_dir = working_dir      # absolute project directory
        self.environment = environment      # the interpolation environment
        self.project_name = project_name    # from -p or COMPOSE_PROJECT_NAME (else the files decide)
        self.default_name = default_name    # normalized base name of the project directory
        self.profiles = profiles if profiles is not None else []
        self.env_files = env_files if env_files is not None else []


def normalize_project_name(name: str) -> str:
    """Compose's normalization: lower-case, keep ``[a-z0-9_-]``, no leading ``_``/``-``."""
    return "".join([c for c in name.lower() if c in _NAME_CHARS]).lstrip("_-")


def check_project_name(name: str) -> str:
    """``name`` itself when valid, else a ComposeError saying what a name may hold."""
    if not name or normalize_project_name(name) != name:
        raise ComposeError(
            f"invalid project name {name!r}: must consist only of lowercase alphanumeric "
            "characters, hyphens, and underscores as well as start with a letter or number")
    return name


def _abs(path: str, base: str) -> str:
    return os.path.normpath(os.path.join(base, os.path.expanduser(path)))


class _Discovery:
    def __init__(self, options: LoadOptions) -> None:
        self.opts = options
        self.cwd = os.path.abspath(options.working_dir or os.getcwd())
        environ = os.environ if options.environ is None else options.environ
        self.env: dict[str, str] = dict(environ)
        self.env["PWD"] = self.cwd
        self.files: list[str] = [f if f == "-" else _abs(f, self.cwd) for f in options.files]
        self.project_dir = _abs(options.project_directory, self.cwd) if options.project_directory else None
        self.env_files: list[str] = []

    def working_dir(self) -> str:
        if self.project_dir:
            return self.project_dir
        for f in self.files:
            if f != "-":
                return os.path.dirname(f)
        return self.cwd

    def load_env_files(self) -> None:
        """``--env-file``s, else ``COMPOSE_ENV_FILES``, else ``<working dir>/.env``."""
        if self.opts.env_files:
            files = [_abs(f, self.cwd) for f in self.opts.env_files]
            required = True
        elif self.env.get("COMPOSE_ENV_FILES"):
            files = [_abs(f, self.cwd) for f in self.env["COMPOSE_ENV_FILES"].split(",") if f]
            required = True
        else:
            dotenv = os.path.join(self.working_dir(), ".env")
            files = [dotenv] if os.path.isfile(dotenv) else []
            required = False
        loaded: dict[str, str] = {}
        for path in files:
            if os.path.isdir(path):
                raise ComposeError(f"{path} is a directory")
            if not os.path.exists(path):
                if required:
                    raise ComposeError(f"Couldn't find env file: {path}")
                continue

            def lookup(name: str) -> str | None:
                found = self.env.get(name)
                return found if found is not None else loaded.get(name)
            loaded.update(read_dotenv(path, lookup))
            if path not in self.env_files:
                self.env_files.append(path)
        for key, value in loaded.items():
            self.env.setdefault(key, value)

    def compose_file_env(self) -> None:
        if self.files or not self.env.get("COMPOSE_FILE"):
            return
        sep = self.env.get("COMPOSE_PATH_SEPARATOR") or os.pathsep
        self.files = [_abs(f, self.cwd) for f in self.env["COMPOSE_FILE"].split(sep) if f]

    def default_files(self) -> None:
        if self.files:
            return
        directory = self.working_dir()
        while True:
            found = [os.path.join(directory, n) for n in DEFAULT_FILES
                     if os.path.isfile(os.path.join(directory, n))]
            if found:
                self.files.append(found[0])
                overrides = [os.path.join(directory, n) for n in OVERRIDE_FILES
                             if os.path.isfile(os.path.join(directory, n))]
                if overrides:
                    self.files.append(overrides[0])
                return
            parent = os.path.dirname(directory)
            if parent == directory:
                raise ComposeError("no configuration file provided: not found "
                                   "(looked for compose.yaml, compose.yml, docker-compose.yml, "
                                   "docker-compose.yaml in this directory and its parents)")
            directory = parent


def discover(options: LoadOptions) -> ProjectSource:
    """Resolve files, project directory, environment, profiles and any imposed project name."""
    d = _Discovery(options)
    if options.project_name:
        check_project_name(options.project_name)
    d.load_env_files()
    d.compose_file_env()
    d.default_files()
    d.load_env_files()
    for f in d.files:
        if f != "-" and not os.path.exists(f):
            raise ComposeError(f"open {f}: no such file or directory")
    working_dir = d.working_dir()
    if working_dir != d.cwd and d.project_dir is None:
        working_dir = os.path.realpath(working_dir) if os.path.islink(working_dir) else working_dir
    name = options.project_name or d.env.get("COMPOSE_PROJECT_NAME") or None
    if options.profiles:
        profiles = list(options.profiles)
    else:
        profiles = [p for p in d.env.get("COMPOSE_PROFILES", "").split(",") if p]
    return ProjectSource(files=d.files, working_dir=working_dir, environment=d.env,
                         project_name=name, default_name=normalize_project_name(os.path.basename(working_dir)),
                         profiles=profiles, env_files=d.env_files)
