"""The bodies of the hot Compose commands (``up``, ``down``, ``ps``) and the helpers every
Compose command shares, without click.

``pystack.cli.compose_cmds`` declares the commands for click; ``pystack.cli.fastpath``
parses the common command lines of these three itself and calls the same functions
here, so that ``pystack ps`` does not pay for importing click (~20-30 ms with what it
imports: inspect, typing, uuid, platform, gettext...). Output goes through :func:`echo`,
which writes what ``click.echo`` would.
"""
from __future__ import annotations

import os
import sys

from pystack.errors import UserError


def echo(message: str = "", nl: bool = True, err: bool = False) -> None:
    """``click.echo`` for text: the same bytes on a UTF-8 stream without ANSI codes (anything
    else, such as styled text to a file, goes to click.echo itself)."""
    stream = sys.stderr if err else sys.stdout
    out = message + "\n" if nl else message
    encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "")
    if stream is None or "\x1b" in out or encoding != "utf8":
        import click

        click.echo(message, nl=nl, err=err)
        return
    if out:
        stream.write(out)
    stream.flush()


def _client():
    """The engine client: ``PYSTACK_HOST``, else the default socket (pystackd started on demand)."""
    from pystack.compose.autostart import engine_socket_path
    from pystack.compose.client import EngineClient

    return EngineClient(engine_socket_path())


def _progress(gopts, title: str = "Running"):
    from pystack.compose.progress import Progress, choose_mode

    return Progress(choose_mode(gopts.progress, gopts.ansi, sys.stderr), title=title)


def _parallel(gopts) -> int:
    env = os.environ.get("COMPOSE_PARALLEL_LIMIT")
    if gopts.parallel == -1 and env:
        try:
            return int(env)
        except ValueError:
            raise UserError(f"COMPOSE_PARALLEL_LIMIT: not a number: {env!r}") from None
    return gopts.parallel


def _color(gopts, no_color: bool) -> bool:
    if no_color or gopts.ansi == "never" or os.environ.get("NO_COLOR"):
        return False
    return gopts.ansi == "always" or sys.stdout.isatty()


def _lifecycle(gopts, title: str):
    from pystack.compose.lifecycle import Lifecycle
    from pystack.compose.project import load_or_name

    project, name = load_or_name(gopts)
    return Lifecycle(_client(), name, project, _progress(gopts, title), _parallel(gopts))


def _parse_scale(values: tuple[str, ...]) -> dict[str, int]:
    out = {}
    for v in values:
        svc, sep, n = v.partition("=")
        if not sep or not n.isdigit():
            raise UserError(f"--scale: expected SERVICE=NUM, got {v!r}")
        out[svc] = int(n)
    return out


def _up_options(services, force_recreate, no_recreate, no_deps, no_start, remove_orphans,
                renew_anon_volumes, scale, pull, timeout, dry_run):
    from pystack.compose.reconcile import UpOptions

    if force_recreate and no_recreate:
        raise UserError("--force-recreate and --no-recreate are incompatible")
    if pull == "policy":
        pull = None
    return UpOptions(services=list(services), no_deps=no_deps, force_recreate=force_recreate,
                     no_recreate=no_recreate, no_start=no_start, remove_orphans=remove_orphans
                     or bool(os.environ.get("COMPOSE_REMOVE_ORPHANS")),
                     renew_anon_volumes=renew_anon_volumes, scale=_parse_scale(scale), pull=pull,
                     timeout=timeout, dry_run=dry_run)


# -- up -----------------------------------------------------------------------------------
def up(gopts, services, detach, wait, wait_timeout, pull, build, no_build, force_recreate,
       no_recreate, no_deps, no_start, remove_orphans, renew_anon_volumes, scale,
       abort_on_container_exit, abort_on_container_failure, exit_code_from, attach, no_attach,
       attach_dependencies, timestamps, no_color, no_log_prefix, quiet_pull, yes, timeout):
    """Create and start containers."""
    from pystack.compose.project import load
    from pystack.compose.reconcile import Reconciler

    if exit_code_from:
        abort_on_container_exit = True
    if wait:
        detach = True
    if detach and (abort_on_container_exit or abort_on_container_failure or attach):
        raise UserError("--abort-on-container-exit, --abort-on-container-failure and --attach "
                        "are incompatible with --detach")
    opts = _up_options(services, force_recreate, no_recreate, no_deps, no_start, remove_orphans,
                       renew_anon_volumes, scale, pull, timeout, gopts.dry_run)
    project = load(gopts)
    if exit_code_from:
        project.service(exit_code_from)
    import time

    t0 = time.time()
    client = _client()
    progress = _progress(gopts)
    rec = Reconciler(client, project, progress, _parallel(gopts))
    try:
        containers = rec.up(opts)
    finally:
        progress.close()
    if gopts.dry_run or no_start:
        return 0
    if wait:
        from pystack.compose.waiting import wait_stack

        wait_stack(client, containers, wait_timeout,
                   lambda name, st: progress.event("Container", name, st))
        return 0
    if detach:
        return 0
    selection = rec.selected(opts)
    if attach:
        shown = set(attach)
    else:
        base = set(opts.services) if (opts.services and not attach_dependencies) else set(selection)
        shown = {s for s in base if project.service(s).get("attach", True) is not False}
    shown -= set(no_attach)
    from pystack.compose.attached import run_attached

    return run_attached(client, project, containers, shown, t0=t0,
                        color=_color(gopts, no_color), prefix=not no_log_prefix, timestamps=timestamps,
                        abort_on_exit=abort_on_container_exit,
                        abort_on_failure=abort_on_container_failure, exit_code_from=exit_code_from,
                        timeout=timeout, progress=progress, parallel=_parallel(gopts))


# -- down ---------------------------------------------------------------------------------
def down(gopts, services, remove_orphans, volumes, rmi, timeout):
    """Stop and remove containers, networks (and volumes with -v)."""
    lc = _lifecycle(gopts, "Running")
    if gopts.dry_run:
        for c in lc.containers(oneoff=None):
            lc.progress.event("Container", c.name, "Remove")
        return 0
    try:
        if services:
            targets = lc.containers(services)
            lc.stop(targets, timeout)
            lc.remove(targets, volumes=volumes)
        else:
            lc.down(remove_orphans=remove_orphans or bool(os.environ.get("COMPOSE_REMOVE_ORPHANS")),
                    volumes=volumes, rmi=rmi, timeout=timeout)
    finally:
        lc.progress.close()
    return 0


# -- ps -----------------------------------------------------------------------------------
def ps(gopts, services, show_all, quiet, only_services, status, filters, fmt, no_trunc, orphans):
    """List containers."""
    from pystack.compose import listing
    from pystack.compose.project import load_or_name
    from pystack.compose.state import list_containers

    project, name = load_or_name(gopts)
    if project is not None:
        project.check_services(services)
    statuses = set(status)
    for f in filters:
        key, _, value = f.partition("=")
        if key != "status":
            raise UserError(f"--filter: only status=... is supported, got {f!r}")
        statuses.add(value)
    containers = list_containers(_client(), name, all=True, oneoff=None, services=services)
    if project is not None and not orphans:
        containers = [c for c in containers if c.service in project.services]
    if statuses:
        containers = [c for c in containers if c.state in statuses]
    elif not show_all:
        containers = [c for c in containers if c.running]
    if only_services:
        for s in dict.fromkeys(c.service for c in containers):
            echo(s)
        return 0
    if quiet:
        for c in containers:
            echo(c.id if no_trunc else c.id)
        return 0
    echo(listing.ps_output(containers, fmt, no_trunc), nl=False)
    return 0
