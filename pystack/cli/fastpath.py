"""The common command lines of ``up``, ``down`` and ``ps``, parsed without click.

Importing click costs a command ~20-30 ms of CPU (it pulls in inspect, typing, uuid,
platform, gettext, datetime...), more than the rest of ``pystack ps`` does. The options
below mirror the click declarations in ``pystack.cli.group`` and
``pystack.cli.compose_cmds`` (a test compares them, option by option, and compares the
values parsed here with click's on many command lines). :func:`parse` accepts only what
it fully understands: long options (``--opt value``, ``--opt=value``), single short
options (``-p value``, ``-pvalue``), flags, positional services and ``--`` after the
command. Anything else (another command, ``--help``, ``--version``, bundled short flags
such as ``-dV``, a value click would refuse or that looks like an option, an unknown
option) returns ``None`` and the command line goes to click, which runs it or words the
error exactly as before.
"""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs every command ~4 ms to import: annotations only
    from typing import Any, Callable

# an option: (destination, its spellings, kind, converter or choices, default)
#   kind "flag": no value (spellings map to the value they set), "value": the last one
#   wins, "multi": every occurrence, in order (a tuple)
_FLAG, _VALUE, _MULTI = "flag", "value", "multi"

GLOBAL_OPTIONS: tuple = (
    ("files", ("-f", "--file"), _MULTI, None, ()),
    ("project_name", ("-p", "--project-name"), _VALUE, None, None),
    ("profiles", ("--profile",), _MULTI, None, ()),
    ("env_files", ("--env-file",), _MULTI, None, ()),
    ("project_directory", ("--project-directory",), _VALUE, None, None),
    ("parallel", ("--parallel",), _VALUE, int, -1),
    ("ansi", ("--ansi",), _VALUE, ("never", "always", "auto"), "auto"),
    ("progress", ("--progress",), _VALUE, ("auto", "tty", "plain", "json", "quiet"), "auto"),
    ("dry_run", ("--dry-run",), _FLAG, None, False),
)

_PULL = ("always", "missing", "never", "policy")

# command -> (its options, the name of its body in pystack.cli.compose_run); every one of
# these commands also takes SERVICES... (nargs=-1)
COMMAND_OPTIONS: dict[str, tuple] = {
    "up": ((
        ("detach", ("-d", "--detach"), _FLAG, None, False),
        ("wait", ("--wait",), _FLAG, None, False),
        ("wait_timeout", ("--wait-timeout",), _VALUE, int, None),
        ("pull", ("--pull",), _VALUE, _PULL, "policy"),
        ("build", ("--build",), _FLAG, None, False),
        ("no_build", ("--no-build",), _FLAG, None, False),
        ("force_recreate", ("--force-recreate",), _FLAG, None, False),
        ("no_recreate", ("--no-recreate",), _FLAG, None, False),
        ("no_deps", ("--no-deps",), _FLAG, None, False),
        ("no_start", ("--no-start",), _FLAG, None, False),
        ("remove_orphans", ("--remove-orphans",), _FLAG, None, False),
        ("renew_anon_volumes", ("-V", "--renew-anon-volumes"), _FLAG, None, False),
        ("scale", ("--scale",), _MULTI, None, ()),
        ("abort_on_container_exit", ("--abort-on-container-exit",), _FLAG, None, False),
        ("abort_on_container_failure", ("--abort-on-container-failure",), _FLAG, None, False),
        ("exit_code_from", ("--exit-code-from",), _VALUE, None, None),
        ("attach", ("--attach",), _MULTI, None, ()),
        ("no_attach", ("--no-attach",), _MULTI, None, ()),
        ("attach_dependencies", ("--attach-dependencies",), _FLAG, None, False),
        ("timestamps", ("--timestamps",), _FLAG, None, False),
        ("no_color", ("--no-color",), _FLAG, None, False),
        ("no_log_prefix", ("--no-log-prefix",), _FLAG, None, False),
        ("quiet_pull", ("--quiet-pull",), _FLAG, None, False),
        ("yes", ("-y", "--yes"), _FLAG, None, False),
        ("timeout", ("-t", "--timeout"), _VALUE, int, None),
    ), "up"),
    "down": ((
        ("remove_orphans", ("--remove-orphans",), _FLAG, None, False),
        ("volumes", ("-v", "--volumes"), _FLAG, None, False),
        ("rmi", ("--rmi",), _VALUE, ("local", "all"), None),
        ("timeout", ("-t", "--timeout"), _VALUE, int, None),
    ), "down"),
    "ps": ((
        ("show_all", ("-a", "--all"), _FLAG, None, False),
        ("quiet", ("-q", "--quiet"), _FLAG, None, False),
        ("only_services", ("--services",), _FLAG, None, False),
        ("status", ("--status",), _MULTI, None, ()),
        ("filters", ("--filter",), _MULTI, None, ()),
        ("fmt", ("--format",), _VALUE, None, "table"),
        ("no_trunc", ("--no-trunc",), _FLAG, None, False),
        # --orphans/--no-orphans: a flag pair, the second spelling sets False
        ("orphans", ("--orphans",), _FLAG, None, True, ("--no-orphans",)),
    ), "ps"),
}

_INDEX: dict[int, dict[str, tuple[tuple, Any]]] = {}


def _index(options: tuple) -> dict[str, tuple[tuple, Any]]:
    """Spelling -> (option, the value a flag spelling sets)."""
    out = _INDEX.get(id(options))
    if out is None:
        out = {}
        for opt in options:
            for spelling in opt[1]:
                out[spelling] = (opt, True)
            for spelling in (opt[5] if len(opt) > 5 else ()):
                out[spelling] = (opt, False)
        _INDEX[id(options)] = out
    return out


class _Decline(Exception):
    """The command line is not one the fast path understands: click takes it."""


def _convert(opt: tuple, value: str) -> Any:
    conv = opt[3]
    if conv is None:
        return value
    if conv is int:
        try:
            return int(value)
        except ValueError:
            raise _Decline from None
    if value in conv:
        return value
    raise _Decline


def _parse(args: list[str], options: tuple, interspersed: bool) -> tuple[dict[str, Any], list[str]]:
    """Options and positional arguments; without ``interspersed`` (the group), parsing
    stops at the first positional argument (the command), which starts the rest."""
    index = _index(options)
    values: dict[str, Any] = {}
    positional: list[str] = []
    i = 0
    n = len(args)
    while i < n:
        arg = args[i]
        i += 1
        if arg == "--":
            if not interspersed:
                raise _Decline
            positional.extend(args[i:])
            break
        if arg[:1] != "-" or arg == "-":
            if not interspersed:
                return values, args[i - 1:]
            positional.append(arg)
            continue
        if arg[:2] == "--":
            name, eq, value = arg.partition("=")
            has_value = bool(eq)
        else:
            name, value = arg[:2], arg[2:]
            has_value = bool(value)
            if has_value and value[0] == "=":
                raise _Decline
        found = index.get(name)
        if found is None:
            raise _Decline
        opt, flag_value = found
        kind = opt[2]
        if kind == _FLAG:
            if has_value:
                raise _Decline
            values[opt[0]] = flag_value
            continue
        if not has_value:
            if i >= n:
                raise _Decline
            value = args[i]
            i += 1
            if value[:1] == "-" and value != "-":
                raise _Decline
        converted = _convert(opt, value)
        if kind == _MULTI:
            values[opt[0]] = values.get(opt[0], ()) + (converted,)
        else:
            values[opt[0]] = converted
    return values, positional


def _with_defaults(options: tuple, values: dict[str, Any]) -> dict[str, Any]:
    return {opt[0]: values.get(opt[0], opt[4]) for opt in options}


def parse_args(argv: list[str]) -> tuple[str, dict[str, Any], dict[str, Any]] | None:
    """``(command, global values, command values)`` as click would pass them, or ``None``."""
    try:
        gvalues, rest = _parse(argv, GLOBAL_OPTIONS, interspersed=False)
        if not rest or rest[0] not in COMMAND_OPTIONS:
            return None
        command = rest[0]
        options = COMMAND_OPTIONS[command][0]
        cvalues, services = _parse(rest[1:], options, interspersed=True)
    except _Decline:
        return None
    params = {"services": tuple(services), **_with_defaults(options, cvalues)}
    return command, _with_defaults(GLOBAL_OPTIONS, gvalues), params


def parse(argv: list[str]) -> Callable[[], Any] | None:
    """A function running the command line, or ``None`` when click must handle it."""
    parsed = parse_args(argv)
    if parsed is None:
        return None
    command, g, params = parsed

    def run() -> Any:
        from pystack.cli import GlobalOptions
        from pystack.cli import compose_run

        gopts = GlobalOptions(list(g["files"]), g["project_name"], list(g["profiles"]),
                              list(g["env_files"]), g["project_directory"], g["parallel"],
                              g["ansi"], g["progress"], g["dry_run"])
        return getattr(compose_run, COMMAND_OPTIONS[command][1])(gopts, **params)
    return run
