"""What the caller asks the loader for: files, project, env files, profiles, switches.

One class so that the CLI, the compose front and tests build a load the same way
and every pass of the pipeline reads its settings from one place.
"""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs every command ~4 ms to import: annotations only
    from typing import Mapping

from .fieldrecord import FieldRecord


class LoadOptions(FieldRecord):
    """Options of one load, mirroring Docker Compose's global flags.

    ``files`` may hold ``-`` for stdin (read from ``stdin_text`` when given, else
    ``sys.stdin``); ``environ`` defaults to ``os.environ`` and is the "shell environment"
    that wins over ``--env-file`` and ``.env``.
    """

    _fields = ("files", "project_name", "project_directory", "env_files", "profiles", "services",
               "interpolate", "normalize", "resolve_paths", "environ", "stdin_text", "working_dir",
               "warn")

    def __init__(self, files: list[str] | None = None, project_name: str | None = None,
                 project_directory: str | None = None, env_files: list[str] | None = None,
                 profiles: list[str] | None = None, services: list[str] | None = None,
                 interpolate: bool = True, normalize: bool = True, resolve_paths: bool = True,
                 environ: Mapping[str, str] | None = None, stdin_text: str | None = None,
                 working_dir: str | None = None, warn: bool = True) -> None:
        self.files = files if files is not None else []
        self.project_name = project_name
        self.project_directory = project_directory
        self.env_files = env_files if env_files is not None else []
        self.profiles = profiles if profiles is not None else []
        self.services = services if services is not None else []
        self.interpolate = interpolate
        self.normalize = normalize
        self.resolve_paths = resolve_paths
        self.environ = environ
        self.stdin_text = stdin_text
        self.working_dir = working_dir  # where discovery starts (default: os.getcwd())
        self.warn = warn  # print warnings (unset variables, obsolete version) on stderr
