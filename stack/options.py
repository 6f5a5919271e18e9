"""What the caller asks the loader for: files, project, env files, profiles, switches.

One dataclass so that the CLI, the compose front and tests build a load the same way
and every pass of the pipeline reads its settings from one place.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping


@dataclass
class LoadOptions:
    """Options of one load, mirroring Docker Compose's global flags.

    ``files`` may hold ``-`` for stdin (read from ``stdin_text`` when given, else
    ``sys.stdin``); ``environ`` defaults to ``os.environ`` and is the "shell environment"
    that wins over ``--env-file`` and ``.env``.
    """

    files: list[str] = field(default_factory=list)
    project_name: str | None = None
    project_directory: str | None = None
    env_files: list[str] = field(default_factory=list)
    profiles: list[str] = field(default_factory=list)
    services: list[str] = field(default_factory=list)
    interpolate: bool = True
    normalize: bool = True
    resolve_paths: bool = True
    environ: Mapping[str, str] | None = None
    stdin_text: str | None = None
    working_dir: str | None = None  # where discovery starts (default: os.getcwd())
    warn: bool = True  # print warnings (unset variables, obsolete version) on stderr
