"""The ``pystack`` command: a click group whose subcommands are imported only when run.

Each command lives in its own module; ``COMMANDS`` maps a name to ``module:attribute`` so
that ``pystack ps`` never pays for the imports of ``pystack image push``. To add a
command, write its module and add one line here.
"""
from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass, field

import click

from pystack.errors import UserError

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


@dataclass
class GlobalOptions:
    """Options every Compose command shares (Docker Compose's global flags)."""

    files: list[str] = field(default_factory=list)
    project_name: str | None = None
    profiles: list[str] = field(default_factory=list)
    env_files: list[str] = field(default_factory=list)
    project_directory: str | None = None
    parallel: int = -1
    ansi: str = "auto"
    progress: str = "auto"
    dry_run: bool = False


class LazyGroup(click.Group):
    """A group that imports a subcommand's module only when that subcommand is invoked."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                return None  # command not built yet
            raise
        return getattr(module, attr, None)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-f", "--file", "files", multiple=True, help="Compose configuration files ('-' for stdin).")
@click.option("-p", "--project-name", help="Project name.")
@click.option("--profile", "profiles", multiple=True, help="Enable a profile.")
@click.option("--env-file", "env_files", multiple=True, help="Alternate environment file.")
@click.option("--project-directory", help="Alternate working directory (default: the first file's).")
@click.option("--parallel", type=int, default=-1, help="Maximum parallelism, -1 for unlimited.")
@click.option("--ansi", type=click.Choice(["never", "always", "auto"]), default="auto")
@click.option("--progress", type=click.Choice(["auto", "tty", "plain", "json", "quiet"]), default="auto")
@click.option("--dry-run", is_flag=True, help="Show what would be done, change nothing.")
@click.version_option(package_name="pystack", prog_name="pystack")
@click.pass_context
def cli(ctx: click.Context, files, project_name, profiles, env_files, project_directory,
        parallel, ansi, progress, dry_run) -> None:
    """Define and run multi-container applications on pystack's own engine."""
    ctx.obj = GlobalOptions(list(files), project_name, list(profiles), list(env_files),
                            project_directory, parallel, ansi, progress, dry_run)


def main(argv: list[str] | None = None) -> None:
    """Entry point: user mistakes become one line on stderr and a non-zero exit."""
    try:
        rv = cli.main(args=argv, prog_name="pystack", standalone_mode=False)
    except UserError as exc:
        click.echo(str(exc), err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        sys.exit(130)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        # stdout closed early (e.g. `| head`): not an error worth a traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    sys.exit(rv if isinstance(rv, int) else 0)
