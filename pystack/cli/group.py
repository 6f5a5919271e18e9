"""The click group behind ``pystack``: global options, and subcommands imported only when run.

``pystack.cli.main`` hands a command line here unless ``pystack.cli.fastpath`` could run
it without click (the common forms of ``up``, ``down`` and ``ps``).
"""
from __future__ import annotations

import importlib

import click

from pystack.cli import COMMANDS, GlobalOptions


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


def run(argv: list[str] | None) -> int:
    """Run a command line through click (what ``main`` does when the fast path declines)."""
    try:
        rv = cli.main(args=argv, prog_name="pystack", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        return 130
    return rv if isinstance(rv, int) else 0
