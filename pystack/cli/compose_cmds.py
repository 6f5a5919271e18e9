"""The Compose commands: ``pystack up``, ``down``, ``ps``, ``logs``, ``exec``, ``run``...

Flags and exit codes follow Docker Compose. Each command loads the project (or, where
Compose allows it, works from ``-p`` and labels alone), talks to the engine through
``pystack.compose.client`` and nothing else, and keeps its imports inside the function so
that ``pystack ps`` pays only for ``ps``. The bodies of ``up``, ``down`` and ``ps`` are in
``pystack.cli.compose_run`` (no click), which ``pystack.cli.fastpath`` calls directly.
"""
from __future__ import annotations

import os
import sys
from typing import Any

import click

from pystack.cli.compose_run import (  # noqa: F401 - helpers shared with the fast path
    _client, _color, _parallel, _parse_scale, _progress, _up_options)
from pystack.errors import UserError


# -- shared helpers ---------------------------------------------------------------------
def _gopts(ctx: click.Context) -> Any:
    obj = ctx.find_object(object)
    if obj is None or not hasattr(obj, "files"):
        from pystack.cli import GlobalOptions

        obj = GlobalOptions()
    return obj


def _lifecycle(ctx: click.Context, title: str) -> Any:
    from pystack.cli.compose_run import _lifecycle as lifecycle

    return lifecycle(_gopts(ctx), title)


def _since(value: str | None) -> str | None:
    """Compose's ``--since/--until``: a duration ago (``10m``), RFC 3339, or a unix time."""
    if not value:
        return None
    import time

    from pystack.compose.durations import seconds

    try:
        float(value)
        return value
    except ValueError:
        pass
    try:
        return f"{time.time() - (seconds(value) or 0):.9f}"
    except UserError:
        pass
    try:
        from datetime import datetime

        return f"{datetime.fromisoformat(value.replace('Z', '+00:00')).timestamp():.9f}"
    except ValueError:
        raise UserError(f"invalid time: {value!r}") from None


def _pick(containers: list, service: str, index: int | None) -> Any:
    mine = [c for c in containers if c.service == service]
    if index is not None:
        mine = [c for c in mine if c.number == index]
    running = [c for c in mine if c.state == "running"]
    if not running:
        raise UserError(f'service "{service}" is not running')
    return running[0]


# -- up / create ------------------------------------------------------------------------
@click.command("up")
@click.argument("services", nargs=-1)
@click.option("-d", "--detach", is_flag=True, help="Run containers in the background.")
@click.option("--wait", is_flag=True, help="Wait for services to be running|healthy. Implies detached mode.")
@click.option("--wait-timeout", type=int, default=None, help="Maximum seconds to wait with --wait.")
@click.option("--pull", type=click.Choice(["always", "missing", "never", "policy"]), default="policy")
@click.option("--build", is_flag=True, hidden=True)
@click.option("--no-build", is_flag=True, hidden=True)
@click.option("--force-recreate", is_flag=True)
@click.option("--no-recreate", is_flag=True)
@click.option("--no-deps", is_flag=True)
@click.option("--no-start", is_flag=True)
@click.option("--remove-orphans", is_flag=True)
@click.option("-V", "--renew-anon-volumes", is_flag=True)
@click.option("--scale", multiple=True, help="SERVICE=NUM; overrides the file's scale.")
@click.option("--abort-on-container-exit", is_flag=True)
@click.option("--abort-on-container-failure", is_flag=True)
@click.option("--exit-code-from", default=None)
@click.option("--attach", "attach", multiple=True)
@click.option("--no-attach", "no_attach", multiple=True)
@click.option("--attach-dependencies", is_flag=True)
@click.option("--timestamps", is_flag=True)
@click.option("--no-color", is_flag=True)
@click.option("--no-log-prefix", is_flag=True)
@click.option("--quiet-pull", is_flag=True)
@click.option("-y", "--yes", is_flag=True, hidden=True)
@click.option("-t", "--timeout", type=int, default=None, help="Shutdown timeout in seconds.")
@click.pass_context
def up_cmd(ctx, services, detach, wait, wait_timeout, pull, build, no_build, force_recreate,
           no_recreate, no_deps, no_start, remove_orphans, renew_anon_volumes, scale,
           abort_on_container_exit, abort_on_container_failure, exit_code_from, attach, no_attach,
           attach_dependencies, timestamps, no_color, no_log_prefix, quiet_pull, yes, timeout):
    """Create and start containers."""
    from pystack.cli import compose_run

    return compose_run.up(_gopts(ctx), services, detach, wait, wait_timeout, pull, build, no_build,
                          force_recreate, no_recreate, no_deps, no_start, remove_orphans,
                          renew_anon_volumes, scale, abort_on_container_exit,
                          abort_on_container_failure, exit_code_from, attach, no_attach,
                          attach_dependencies, timestamps, no_color, no_log_prefix, quiet_pull, yes,
                          timeout)


@click.command("create")
@click.argument("services", nargs=-1)
@click.option("--pull", type=click.Choice(["always", "missing", "never", "policy"]), default="policy")
@click.option("--build", is_flag=True, hidden=True)
@click.option("--no-build", is_flag=True, hidden=True)
@click.option("--force-recreate", is_flag=True)
@click.option("--no-recreate", is_flag=True)
@click.option("--remove-orphans", is_flag=True)
@click.option("--scale", multiple=True)
@click.option("--quiet-pull", is_flag=True)
@click.option("-y", "--yes", is_flag=True, hidden=True)
@click.pass_context
def create_cmd(ctx, services, pull, build, no_build, force_recreate, no_recreate, remove_orphans,
               scale, quiet_pull, yes):
    """Create containers for the services without starting them."""
    from pystack.compose.project import load
    from pystack.compose.reconcile import Reconciler

    gopts = _gopts(ctx)
    opts = _up_options(services, force_recreate, no_recreate, False, True, remove_orphans, False,
                       scale, pull, None, gopts.dry_run)
    progress = _progress(gopts, "Creating")
    try:
        Reconciler(_client(), load(gopts), progress, _parallel(gopts)).up(opts)
    finally:
        progress.close()
    return 0


# -- down / stop / start / restart / kill / rm / pause ----------------------------------
@click.command("down")
@click.argument("services", nargs=-1)
@click.option("--remove-orphans", is_flag=True)
@click.option("-v", "--volumes", is_flag=True, help="Remove named volumes declared in the file and anonymous volumes.")
@click.option("--rmi", type=click.Choice(["local", "all"]), default=None)
@click.option("-t", "--timeout", type=int, default=None)
@click.pass_context
def down_cmd(ctx, services, remove_orphans, volumes, rmi, timeout):
    """Stop and remove containers, networks (and volumes with -v)."""
    from pystack.cli import compose_run

    return compose_run.down(_gopts(ctx), services, remove_orphans, volumes, rmi, timeout)


@click.command("stop")
@click.argument("services", nargs=-1)
@click.option("-t", "--timeout", type=int, default=None)
@click.pass_context
def stop_cmd(ctx, services, timeout):
    """Stop running containers without removing them."""
    lc = _lifecycle(ctx, "Stopping")
    try:
        lc.stop(lc.containers(services), timeout)
    finally:
        lc.progress.close()
    return 0


@click.command("start")
@click.argument("services", nargs=-1)
@click.option("--wait", is_flag=True)
@click.option("--wait-timeout", type=int, default=None)
@click.pass_context
def start_cmd(ctx, services, wait, wait_timeout):
    """Start existing containers."""
    lc = _lifecycle(ctx, "Starting")
    targets = lc.containers(services)
    if not targets:
        raise UserError("no containers to start")
    try:
        lc.start(targets)
        if wait:
            from pystack.compose.waiting import wait_stack

            wait_stack(lc.client, [(c.service, c.name, c.id) for c in targets], wait_timeout,
                       lambda name, st: lc.progress.event("Container", name, st))
    finally:
        lc.progress.close()
    return 0


@click.command("restart")
@click.argument("services", nargs=-1)
@click.option("--no-deps", is_flag=True)
@click.option("-t", "--timeout", type=int, default=None)
@click.pass_context
def restart_cmd(ctx, services, no_deps, timeout):
    """Restart service containers (and dependents declared with ``restart: true``)."""
    lc = _lifecycle(ctx, "Restarting")
    names = set(services)
    if services and not no_deps and lc.project is not None:
        for s, svc in lc.project.services.items():
            if any(cfg.get("restart") and d in names for d, cfg in (svc.get("depends_on") or {}).items()):
                names.add(s)
    try:
        lc.restart(lc.containers(tuple(sorted(names)) if services else ()), timeout)
    finally:
        lc.progress.close()
    return 0


@click.command("kill")
@click.argument("services", nargs=-1)
@click.option("-s", "--signal", "sig", default="SIGKILL")
@click.option("--remove-orphans", is_flag=True)
@click.pass_context
def kill_cmd(ctx, services, sig, remove_orphans):
    """Force stop service containers."""
    lc = _lifecycle(ctx, "Killing")
    try:
        lc.kill(lc.containers(services), sig)
    finally:
        lc.progress.close()
    return 0


@click.command("rm")
@click.argument("services", nargs=-1)
@click.option("-f", "--force", is_flag=True)
@click.option("-s", "--stop", "stop_first", is_flag=True)
@click.option("-v", "--volumes", is_flag=True)
@click.pass_context
def rm_cmd(ctx, services, force, stop_first, volumes):
    """Remove stopped service containers."""
    lc = _lifecycle(ctx, "Removing")
    targets = lc.containers(services)
    try:
        if stop_first:
            lc.stop(targets, None)
            targets = lc.containers(services)
        stopped = [c for c in targets if not c.running]
        if not stopped:
            click.echo("No stopped containers", err=True)
            return 0
        if not force and sys.stdin.isatty():
            names = ", ".join(c.name for c in stopped)
            if not click.confirm(f"Going to remove {names}\n? Are you sure?", default=False, err=True):
                return 0
        lc.remove(stopped, volumes=volumes)
    finally:
        lc.progress.close()
    return 0


@click.command("pause")
@click.argument("services", nargs=-1)
@click.pass_context
def pause_cmd(ctx, services):
    """Pause services."""
    lc = _lifecycle(ctx, "Pausing")
    lc.pause([c for c in lc.containers(services) if c.state == "running"])
    return 0


@click.command("unpause")
@click.argument("services", nargs=-1)
@click.pass_context
def unpause_cmd(ctx, services):
    """Unpause services."""
    lc = _lifecycle(ctx, "Unpausing")
    lc.pause([c for c in lc.containers(services) if c.state == "paused"], unpause=True)
    return 0


# -- ps / ls / images / top / port ------------------------------------------------------
@click.command("ps")
@click.argument("services", nargs=-1)
@click.option("-a", "--all", "show_all", is_flag=True)
@click.option("-q", "--quiet", is_flag=True)
@click.option("--services", "only_services", is_flag=True)
@click.option("--status", multiple=True)
@click.option("--filter", "filters", multiple=True)
@click.option("--format", "fmt", default="table")
@click.option("--no-trunc", is_flag=True)
@click.option("--orphans/--no-orphans", default=True)
@click.pass_context
def ps_cmd(ctx, services, show_all, quiet, only_services, status, filters, fmt, no_trunc, orphans):
    """List containers."""
    from pystack.cli import compose_run

    return compose_run.ps(_gopts(ctx), services, show_all, quiet, only_services, status, filters,
                          fmt, no_trunc, orphans)


@click.command("ls")
@click.option("-a", "--all", "show_all", is_flag=True)
@click.option("-q", "--quiet", is_flag=True)
@click.option("--filter", "filters", multiple=True)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
def ls_cmd(show_all, quiet, filters, fmt):
    """List running Compose projects."""
    from pystack.compose import listing

    click.echo(listing.ls_output(_client(), show_all, quiet, filters, fmt), nl=False)
    return 0


@click.command("images")
@click.argument("services", nargs=-1)
@click.option("-q", "--quiet", is_flag=True)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.pass_context
def images_cmd(ctx, services, quiet, fmt):
    """List images used by the created containers."""
    from pystack.compose import listing
    from pystack.compose.project import load_or_name
    from pystack.compose.state import list_containers

    project, name = load_or_name(_gopts(ctx))
    client = _client()
    containers = list_containers(client, name, all=True, oneoff=None, services=services)
    click.echo(listing.images_output(client, containers, quiet, fmt), nl=False)
    return 0


@click.command("top")
@click.argument("services", nargs=-1)
@click.pass_context
def top_cmd(ctx, services):
    """Display the running processes."""
    from pystack.compose import listing
    from pystack.compose.project import load_or_name
    from pystack.compose.state import list_containers

    _, name = load_or_name(_gopts(ctx))
    client = _client()
    containers = [c for c in list_containers(client, name, all=False, services=services) if c.running]
    click.echo(listing.top_output(client, containers), nl=False)
    return 0


@click.command("port")
@click.argument("service")
@click.argument("private_port")
@click.option("--protocol", type=click.Choice(["tcp", "udp"]), default="tcp")
@click.option("--index", type=int, default=None)
@click.pass_context
def port_cmd(ctx, service, private_port, protocol, index):
    """Print the public port for a port binding."""
    from pystack.compose.project import load_or_name
    from pystack.compose.state import list_containers

    project, name = load_or_name(_gopts(ctx))
    if project is not None:
        project.service(service)
    client = _client()
    c = _pick(list_containers(client, name, services=(service,)), service, index)
    ports = ((client.inspect(c.id).get("NetworkSettings") or {}).get("Ports") or {})
    port = private_port if "/" in private_port else f"{private_port}/{protocol}"
    bindings = ports.get(port) or []
    if not bindings:
        raise UserError(f"no port {port} for container {c.name}")
    b = bindings[0]
    click.echo(f"{b.get('HostIp') or '0.0.0.0'}:{b.get('HostPort')}")
    return 0


# -- logs / events / wait ---------------------------------------------------------------
@click.command("logs")
@click.argument("services", nargs=-1)
@click.option("-f", "--follow", is_flag=True)
@click.option("-t", "--timestamps", is_flag=True)
@click.option("-n", "--tail", default="all")
@click.option("--since", default=None)
@click.option("--until", default=None)
@click.option("--no-color", is_flag=True)
@click.option("--no-log-prefix", is_flag=True)
@click.option("--index", type=int, default=None)
@click.pass_context
def logs_cmd(ctx, services, follow, timestamps, tail, since, until, no_color, no_log_prefix, index):
    """View output from containers."""
    from pystack.compose.logs import LogFollower, LogPrinter
    from pystack.compose.project import load_or_name

    gopts = _gopts(ctx)
    project, name = load_or_name(gopts)
    if project is not None:
        project.check_services(services)
    printer = LogPrinter(color=_color(gopts, no_color), prefix=not no_log_prefix, timestamps=timestamps)
    follower = LogFollower(_client(), name, printer, services=tuple(services), follow=follow,
                           tail=None if tail == "all" else tail, since=_since(since),
                           until=_since(until), index=index)
    try:
        follower.run()
    except KeyboardInterrupt:
        follower.stop.set()
    return 0


@click.command("events")
@click.argument("services", nargs=-1)
@click.option("--json", "as_json", is_flag=True)
@click.option("--since", default=None)
@click.option("--until", default=None)
@click.pass_context
def events_cmd(ctx, services, as_json, since, until):
    """Receive real-time events from containers."""
    import json as _json

    from pystack.compose import labels as L
    from pystack.compose.project import load_or_name

    _, name = load_or_name(_gopts(ctx))
    filters = {"type": ["container"], "label": [L.project_filter(name)]}
    try:
        for ev in _client().events(filters=filters, since=_since(since), until=_since(until)):
            attrs = dict((ev.get("Actor") or {}).get("Attributes") or {})
            service = attrs.get(L.SERVICE, "")
            if services and service not in services:
                continue
            attrs = {k: v for k, v in attrs.items() if not k.startswith("com.docker.compose.")}
            from datetime import datetime, timezone

            nanos = int(ev.get("timeNano") or int(ev.get("time", 0)) * 10**9)
            when = datetime.fromtimestamp(nanos // 10**9, timezone.utc)
            stamp = when.strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos % 10**9:09d}Z"
            action = ev.get("Action") or ev.get("status") or ""
            cid = (ev.get("Actor") or {}).get("ID") or ev.get("id", "")
            if as_json:
                click.echo(_json.dumps({"action": action, "attributes": attrs, "id": cid,
                                        "service": service, "time": stamp, "type": "container"}))
            else:
                shown = ", ".join(f"{k}={v}" for k, v in sorted(attrs.items()))
                click.echo(f"{when.strftime('%Y-%m-%d %H:%M:%S')}.{nanos % 10**9 // 1000:06d} "
                           f"container {action} {cid} ({shown})")
    except KeyboardInterrupt:
        pass
    return 0


@click.command("wait")
@click.argument("services", nargs=-1, required=True)
@click.option("--down-project", is_flag=True)
@click.pass_context
def wait_cmd(ctx, services, down_project):
    """Block until the first container of the services stops; exit with its exit code."""
    import queue
    import threading

    from pystack.compose.project import load_or_name
    from pystack.compose.state import list_containers

    gopts = _gopts(ctx)
    project, name = load_or_name(gopts)
    client = _client()
    containers = list_containers(client, name, services=services)
    if not containers:
        raise UserError("no containers for the given services")
    results: queue.Queue = queue.Queue()
    for c in containers:
        threading.Thread(target=lambda cid=c.id: results.put(client.wait(cid)), daemon=True).start()
    code = results.get()
    if down_project:
        from pystack.compose.lifecycle import Lifecycle

        Lifecycle(client, name, project, _progress(gopts), _parallel(gopts)).down()
    return code


# -- exec / run / cp --------------------------------------------------------------------
def _env_list(values: tuple[str, ...]) -> list[str]:
    out = []
    for v in values:
        if "=" in v:
            out.append(v)
        elif v in os.environ:
            out.append(f"{v}={os.environ[v]}")
    return out


@click.command("exec", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("service")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("-d", "--detach", is_flag=True)
@click.option("-e", "--env", "env", multiple=True)
@click.option("-u", "--user", default=None)
@click.option("-w", "--workdir", default=None)
@click.option("-T", "--no-TTY", "no_tty", is_flag=True)
@click.option("--index", type=int, default=None)
@click.option("--privileged", is_flag=True)
@click.pass_context
def exec_cmd(ctx, service, command, detach, env, user, workdir, no_tty, index, privileged):
    """Execute a command in a running container; exits with its exit code."""
    from pystack.compose.project import load_or_name
    from pystack.compose.state import list_containers
    from pystack.compose.stdio import pump

    project, name = load_or_name(_gopts(ctx))
    if project is not None:
        project.service(service)
    client = _client()
    c = _pick(list_containers(client, name, services=(service,)), service, index or 1)
    tty = not no_tty and sys.stdin.isatty() and sys.stdout.isatty()
    body = {"AttachStdin": not detach, "AttachStdout": not detach, "AttachStderr": not detach,
            "Tty": tty, "Cmd": list(command), "Env": _env_list(env), "Privileged": privileged}
    if user:
        body["User"] = user
    if workdir:
        body["WorkingDir"] = workdir
    eid = client.exec_create(c.id, body)
    if detach:
        client.exec_start(eid, tty, detach=True)
        return 0
    conn = client.exec_start(eid, tty)
    pump(conn, tty=tty, stdin=True, resize=lambda h, w: client.exec_resize(eid, h, w))
    import time

    for _ in range(50):
        info = client.exec_inspect(eid)
        if not info.get("Running"):
            return int(info.get("ExitCode") or 0)
        time.sleep(0.02)
    return int(client.exec_inspect(eid).get("ExitCode") or 0)


@click.command("run", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("service")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("--rm", is_flag=True)
@click.option("-d", "--detach", is_flag=True)
@click.option("--name", default=None)
@click.option("--entrypoint", default=None)
@click.option("-e", "--env", "env", multiple=True)
@click.option("-l", "--label", "labels", multiple=True)
@click.option("-p", "--publish", multiple=True)
@click.option("-P", "--service-ports", is_flag=True)
@click.option("--use-aliases", is_flag=True)
@click.option("--no-deps", is_flag=True)
@click.option("-T", "--no-TTY", "no_tty", is_flag=True)
@click.option("-i", "--interactive/--no-interactive", default=True)
@click.option("-u", "--user", default=None)
@click.option("-v", "--volume", "volumes", multiple=True)
@click.option("-w", "--workdir", default=None)
@click.option("--pull", type=click.Choice(["always", "missing", "never", "policy"]), default="policy")
@click.option("--remove-orphans", is_flag=True)
@click.option("-q", "--quiet", is_flag=True)
@click.option("--quiet-pull", is_flag=True)
@click.option("--build", is_flag=True, hidden=True)
@click.pass_context
def run_cmd(ctx, service, command, rm, detach, name, entrypoint, env, labels, publish, service_ports,
            use_aliases, no_deps, no_tty, interactive, user, volumes, workdir, pull, remove_orphans,
            quiet, quiet_pull, build):
    """Run a one-off command on a service; exits with the container's exit code."""
    from pystack.compose.oneoff import RunOptions, run_oneoff
    from pystack.compose.project import load

    gopts = _gopts(ctx)
    project = load(gopts)
    project.service(service)
    opts = RunOptions(service=service, command=list(command), rm=rm, detach=detach, name=name,
                      entrypoint=entrypoint, env=_env_list(env), labels=list(labels),
                      publish=list(publish), service_ports=service_ports, use_aliases=use_aliases,
                      no_deps=no_deps, tty=not no_tty and sys.stdin.isatty() and not detach,
                      interactive=interactive and not detach, user=user, volumes=list(volumes),
                      workdir=workdir, pull=None if pull == "policy" else pull,
                      remove_orphans=remove_orphans)
    progress = _progress(gopts, "Running")
    if quiet:
        progress.mode = "quiet"
    return run_oneoff(_client(), project, opts, progress, _parallel(gopts))


@click.command("cp")
@click.argument("src")
@click.argument("dest")
@click.option("--index", type=int, default=None)
@click.option("--all", "all_", is_flag=True, hidden=True)
@click.option("-a", "--archive", is_flag=True)
@click.option("-L", "--follow-link", is_flag=True)
@click.pass_context
def cp_cmd(ctx, src, dest, index, all_, archive, follow_link):
    """Copy files between a service container and the local filesystem (SERVICE:PATH)."""
    from pystack.compose.copy import copy
    from pystack.compose.project import load_or_name
    from pystack.compose.state import list_containers

    _, name = load_or_name(_gopts(ctx))
    client = _client()

    def resolve(service: str) -> str:
        cs = [c for c in list_containers(client, name, services=(service,))
              if index is None or c.number == index]
        if not cs:
            raise UserError(f'no container found for service "{service}"')
        return cs[0].id

    copy(client, src, dest, resolve, follow_link=follow_link)
    return 0


# -- images: pull / push ----------------------------------------------------------------
@click.command("pull")
@click.argument("services", nargs=-1)
@click.option("--ignore-pull-failures", is_flag=True)
@click.option("--include-deps", is_flag=True)
@click.option("--policy", type=click.Choice(["missing", "always"]), default="always")
@click.option("-q", "--quiet", is_flag=True)
@click.option("--ignore-buildable", is_flag=True)
@click.pass_context
def pull_cmd(ctx, services, ignore_pull_failures, include_deps, policy, quiet, ignore_buildable):
    """Pull service images."""
    from pystack.compose.ordering import closure
    from pystack.compose.project import load
    from pystack.compose.reconcile import Reconciler
    from pystack.compose.state import project_graph

    gopts = _gopts(ctx)
    project = load(gopts)
    project.check_services(services)
    chosen = list(services) or list(project.services)
    if services and include_deps:
        chosen = sorted(closure(services, project_graph(project)))
    progress = _progress(gopts, "Pulling")
    if quiet:
        progress.mode = "quiet"
    rec = Reconciler(_client(), project, progress, _parallel(gopts))
    failed = False
    for s in chosen:
        svc = project.service(s)
        if not svc.get("image"):
            continue
        try:
            if policy == "missing":
                rec.ensure_images([s], "missing")
            else:
                rec.pull_image(svc["image"], s)
        except UserError as exc:
            if not ignore_pull_failures:
                raise
            progress.warn(str(exc))
            failed = True
    progress.close()
    return 0 if not failed or ignore_pull_failures else 1


@click.command("push")
@click.argument("services", nargs=-1)
@click.option("--ignore-push-failures", is_flag=True)
@click.option("--include-deps", is_flag=True)
@click.option("-q", "--quiet", is_flag=True)
@click.pass_context
def push_cmd(ctx, services, ignore_push_failures, include_deps, quiet):
    """Push service images."""
    from pystack.compose.project import load

    gopts = _gopts(ctx)
    project = load(gopts)
    project.check_services(services)
    client = _client()
    progress = _progress(gopts, "Pushing")
    if quiet:
        progress.mode = "quiet"
    for s in list(services) or list(project.services):
        ref = project.service(s).get("image")
        if not ref:
            continue
        progress.event("Image", ref, "Pushing")
        try:
            for msg in client.push(ref):
                if msg.get("error"):
                    raise UserError(f"service {s!r}: push {ref}: {msg['error']}")
        except UserError as exc:
            progress.event("Image", ref, "Error", error=True)
            if not ignore_push_failures:
                raise
            progress.warn(str(exc))
            continue
        progress.event("Image", ref, "Pushed")
    progress.close()
    return 0


@click.command("version")
@click.option("-f", "--format", "fmt", type=click.Choice(["pretty", "json"]), default="pretty")
@click.option("--short", is_flag=True)
def version_cmd(fmt, short):
    """Show the pystack version."""
    import json as _json

    from pystack import __version__

    if short:
        click.echo(__version__)
    elif fmt == "json":
        click.echo(_json.dumps({"version": f"v{__version__}"}))
    else:
        click.echo(f"pystack version v{__version__}")
    return 0
