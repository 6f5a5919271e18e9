"""The ``pystack`` command: a click group whose subcommands are imported only when run.

Each command lives in its own module; ``COMMANDS`` maps a name to ``module:attribute`` so
that ``pystack ps`` never pays for the imports of ``pystack image push``. To add a
command, write its module and add one line here.

Start-up is part of every command's time, so this module imports nothing heavy: the
common command lines of ``up``, ``down`` and ``ps`` are parsed by ``pystack.cli.fastpath``
and run without importing click at all; everything else (any other command, ``--help``,
an option the fast path does not know, a mistake to report) goes to the click group in
``pystack.cli.group``, which behaves exactly as before.
"""
from __future__ import annotations

import os
import sys
TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs every command ~4 ms to import: annotations only
    from typing import Any

from pystack.errors import UserError
from pystack.stack.fieldrecord import FieldRecord

# name -> "module:attribute" of a click.Command. Keep sorted by area.
COMMANDS: dict[str, str] = {
    # the stack model (issue: foundation)
    "config": "pystack.cli.config_cmd:config",
    # images (issue: images)
    "image": "pystack.cli.image_cmd:image",
    "login": "pystack.cli.image_cmd:login",
    "logout": "pystack.cli.image_cmd:logout",
    # volumes (issue: storage)
    "volume": "pystack.cli.volume_cmd:volume",
    # engine (issue: pystackd)
    "info": "pystack.cli.engine_cmd:info",
    "engine": "pystack.cli.engine_cmd:engine",
    # compose front (issue: up and friends)
    **{name: f"pystack.cli.compose_cmds:{name}_cmd" for name in (
        "up", "down", "ps", "logs", "exec", "run", "create", "start", "stop", "restart",
        "kill", "rm", "pause", "unpause", "top", "port", "images", "ls", "events", "wait",
        "cp", "pull", "push", "version")},
}


class GlobalOptions(FieldRecord):
    """Options every Compose command shares (Docker Compose's global flags)."""

    __slots__ = ("files", "project_name", "profiles", "env_files", "project_directory",
                 "parallel", "ansi", "progress", "dry_run")
    _fields = __slots__

    def __init__(self, files: list[str] | None = None, project_name: str | None = None,
                 profiles: list[str] | None = None, env_files: list[str] | None = None,
                 project_directory: str | None = None, parallel: int = -1, ansi: str = "auto",
                 progress: str = "auto", dry_run: bool = False) -> None:
        self.files = files if files is not None else []
        self.project_name = project_name
        self.profiles = profiles if profiles is not None else []
        self.env_files = env_files if env_files is not None else []
        self.project_directory = project_directory
        self.parallel = parallel
        self.ansi = ansi
        self.progress = progress
        self.dry_run = dry_run


def __getattr__(name: str) -> Any:
    # the click group and its class, imported (with click) only when asked for
    if name in ("cli", "LazyGroup"):
        from pystack.cli import group

        return getattr(group, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _echo_err(message: str) -> None:
    from pystack.cli.compose_run import echo

    echo(message, err=True)


def main(argv: list[str] | None = None) -> None:
    """Entry point: user mistakes become one line on stderr and a non-zero exit."""
    try:
        from pystack.cli.fastpath import parse

        fast = parse(sys.argv[1:] if argv is None else list(argv))
        if fast is None:
            from pystack.cli.group import run

            rv = run(argv)
        else:
            try:
                rv = fast()
            except (EOFError, KeyboardInterrupt):
                _echo_err("")  # what click does before it aborts
                sys.exit(130)
            rv = rv if isinstance(rv, int) else 0
    except UserError as exc:
        _echo_err(str(exc))
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        # stdout closed early (e.g. `| head`): not an error worth a traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    sys.exit(rv)
