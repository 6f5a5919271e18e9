"""pystack.cli.fastpath: the click-free parse of up/down/ps must equal click's, or decline."""
from __future__ import annotations

import subprocess
import sys

import click
import pytest

from pystack.cli import fastpath
from pystack.cli.group import cli


def _click_parse(argv: list[str]) -> tuple[str, dict, dict]:
    ctx = cli.make_context("pystack", list(argv))
    protected = getattr(ctx, "_protected_args", None)
    if protected is None:
        protected = ctx.protected_args
    name, cmd, args = cli.resolve_command(ctx, [*protected, *ctx.args])
    sub = cmd.make_context(name, list(args), parent=ctx)
    return name, dict(ctx.params), dict(sub.params)


def _command(name: str) -> click.Command:
    return cli.get_command(click.Context(cli), name)


def _check_spec(options: tuple, params: list) -> None:
    by_dest = {opt[0]: opt for opt in options}
    seen = set()
    for p in params:
        if isinstance(p, click.Argument):
            assert p.name == "services" and p.nargs == -1
            continue
        if p.name in ("help", "version"):
            continue  # eager options: the fast path declines them
        opt = by_dest[p.name]
        seen.add(p.name)
        assert tuple(p.opts) == opt[1], p.name
        assert tuple(p.secondary_opts) == (opt[5] if len(opt) > 5 else ()), p.name
        kind = "flag" if p.is_flag else ("multi" if p.multiple else "value")
        assert kind == opt[2], p.name
        if isinstance(p.type, click.Choice):
            assert tuple(p.type.choices) == opt[3], p.name
        elif p.type is click.INT:
            assert opt[3] is int, p.name
        elif not p.is_flag:
            assert p.type is click.STRING and opt[3] is None, p.name
    assert seen == set(by_dest)


def test_global_options_mirror_click():
    _check_spec(fastpath.GLOBAL_OPTIONS, cli.params)


@pytest.mark.parametrize("name", sorted(fastpath.COMMAND_OPTIONS))
def test_command_options_mirror_click(name):
    _check_spec(fastpath.COMMAND_OPTIONS[name][0], _command(name).params)


SAME = [
    ["ps"], ["up"], ["down"],
    ["-p", "x", "ps"], ["-px", "ps"], ["--project-name", "x", "ps"], ["--project-name=x", "ps"],
    ["-f", "a.yml", "-f", "b.yml", "-p", "p", "up", "-d"], ["--file=a.yml", "--file", "-", "ps"],
    ["--profile", "a", "--profile=b", "--env-file", "e1", "--project-directory", "/tmp", "ps"],
    ["--parallel", "3", "--ansi", "never", "--progress", "plain", "--dry-run", "up", "-d"],
    ["--parallel=-1", "--ansi=always", "--progress=quiet", "down"],
    ["-p", "a", "-p", "b", "ps"],
    ["up", "-d", "web", "db"], ["up", "web", "-d", "--wait", "--wait-timeout", "5"],
    ["up", "--pull", "never", "--pull=always", "-V", "--scale", "a=2", "--scale=b=3"],
    ["up", "--force-recreate", "--no-deps", "--no-start", "--remove-orphans", "--build",
     "--no-build", "--no-recreate"],
    ["up", "--abort-on-container-exit", "--abort-on-container-failure", "--exit-code-from", "web",
     "--attach", "a", "--attach=b", "--no-attach", "c", "--attach-dependencies", "--timestamps",
     "--no-color", "--no-log-prefix", "--quiet-pull", "-y", "--yes", "-t", "3", "-t7", "--timeout=0"],
    ["up", "-d", "--", "-weird", "--odd"],
    ["down", "--remove-orphans", "-v", "--volumes", "--rmi", "local", "-t", "0", "web"],
    ["down", "--rmi=all", "--timeout", "10"],
    ["ps", "-a", "-q", "--services", "--status", "running", "--status=exited", "--filter",
     "status=paused", "--format", "json", "--no-trunc", "--no-orphans"],
    ["ps", "--no-orphans", "--orphans", "web", "--format=table", "db"],
    ["ps", "-", "web"],
]


@pytest.mark.parametrize("argv", SAME, ids=[" ".join(a) for a in SAME])
def test_parse_equals_click(argv):
    fast = fastpath.parse_args(argv)
    assert fast is not None
    name, gparams, params = _click_parse(argv)
    assert fast == (name, gparams, params)


DECLINED = [
    [], ["-h"], ["--help"], ["--version"], ["ps", "--help"], ["up", "-h"], ["config"], ["logs"],
    ["ps", "-aq"], ["up", "-dV"], ["ps", "--bogus"], ["--bogus", "ps"], ["--parallel", "x", "ps"],
    ["--ansi", "bogus", "ps"], ["up", "--pull=bogus"], ["up", "-d=1"], ["up", "--detach=1"],
    ["-p"], ["ps", "--format"], ["up", "-t", "-1"], ["up", "-t", "soon"], ["--", "ps"],
    ["down", "--rmi", "some"], ["-p=x", "ps"],
]


@pytest.mark.parametrize("argv", DECLINED, ids=[" ".join(a) or "(none)" for a in DECLINED])
def test_declines_what_it_does_not_know(argv):
    assert fastpath.parse_args(argv) is None


@pytest.mark.parametrize("command", [["ps"], ["up", "-d"], ["down"]])
def test_fast_commands_do_not_import_click(tmp_path, command):
    (tmp_path / "compose.yaml").write_text("services:\n  web:\n    image: busybox\n")
    code = ("import sys\n"
            "from pystack.cli import main\n"
            f"sys.argv = ['pystack', *{command!r}]\n"
            "try:\n    main()\nexcept SystemExit as exc:\n    print('exit', exc.code)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'click'))\n")
    env = {"PATH": "/usr/bin:/bin", "PYSTACK_HOST": f"unix://{tmp_path}/none.sock"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True,
                          text=True)
    assert "cannot reach the engine" in proc.stderr
    assert proc.stdout.strip().splitlines()[-2:] == ["exit 1", "[]"]


def test_errors_are_worded_as_before(tmp_path):
    """The same user error, through the fast path and through click (``--ansi auto`` spelt
    ``--ansi=auto`` vs a bundled ``-dV`` that only click parses)."""
    (tmp_path / "compose.yaml").write_text("services:\n  web:\n    image: busybox\n    ports: [1]\n"
                                           "    bogus: 1\n")
    env = {"PATH": "/usr/bin:/bin", "PYSTACK_HOST": f"unix://{tmp_path}/none.sock"}
    runs = []
    for argv in (["up", "-d", "-V"], ["up", "-dV"]):
        runs.append(subprocess.run([sys.executable, "-c", "from pystack.cli import main; main()", *argv],
                                   cwd=tmp_path, env=env, capture_output=True, text=True))
    assert runs[0].returncode == runs[1].returncode != 0
    assert runs[0].stderr == runs[1].stderr
    assert "compose.yaml" in runs[0].stderr and "bogus" in runs[0].stderr
