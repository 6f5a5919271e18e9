"""``run``: a one-off container of a service, Compose's way.

Dependencies are brought up first (unless ``--no-deps``) and their conditions waited for;
the one-off is named ``<project>-<service>-run-<12 hex>``, labelled ``oneoff=True`` with
its ``slug``, publishes no ports unless ``-P``/``-p``, has no restart policy, registers
only its container name in DNS unless ``--use-aliases``, and its exit status is the
command's. ``--rm`` removes it afterwards.
"""
from __future__ import annotations

import shlex
import uuid
from dataclasses import dataclass, field
from typing import Any

from pystack.compose.progress import Progress
from pystack.compose.reconcile import Reconciler, UpOptions
from pystack.errors import UserError


@dataclass
class RunOptions:
    service: str
    command: list[str] = field(default_factory=list)
    rm: bool = False
    detach: bool = False
    name: str | None = None
    entrypoint: str | None = None
    env: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    publish: list[str] = field(default_factory=list)
    service_ports: bool = False
    use_aliases: bool = False
    no_deps: bool = False
    tty: bool = False
    interactive: bool = True
    user: str | None = None
    volumes: list[str] = field(default_factory=list)
    workdir: str | None = None
    pull: str | None = None
    remove_orphans: bool = False


def _publish(values: list[str]) -> tuple[dict, dict]:
    """``-p [ip:][host:]container[/proto]`` -> (ExposedPorts, PortBindings)."""
    exposed: dict[str, dict] = {}
    bindings: dict[str, list[dict]] = {}
    for v in values:
        spec, _, proto = v.partition("/")
        parts = spec.rsplit(":", 2)
        if len(parts) == 3:
            ip, host, cont = parts
        elif len(parts) == 2:
            ip, (host, cont) = "", parts
        else:
            ip, host, cont = "", "", parts[0]
        if not cont.isdigit():
            raise UserError(f"--publish: invalid port {v!r}")
        key = f"{cont}/{proto or 'tcp'}"
        exposed[key] = {}
        bindings.setdefault(key, []).append({"HostIp": ip, "HostPort": host})
    return exposed, bindings


def run_oneoff(client: Any, project: Any, opts: RunOptions, progress: Progress, parallel: int) -> int:
    rec = Reconciler(client, project, progress, parallel)
    svc = project.service(opts.service)
    deps = list((svc.get("depends_on") or {}).keys())
    if deps and not opts.no_deps:
        rec.up(UpOptions(services=deps, remove_orphans=opts.remove_orphans, pull=opts.pull))
        rec.wait_dependencies(opts.service, svc, set(rec.selected(UpOptions(services=deps))))
    else:
        rec.ensure_networks([opts.service])
        rec.ensure_volumes([opts.service])
    images = rec.ensure_images([opts.service], opts.pull)
    from pystack.compose.state import list_containers

    for dep in deps:  # service:x references resolve to the dependency's container
        cs = list_containers(client, project.name, services=(dep,))
        if cs:
            rec.ids[dep] = cs[0].id
    slug = uuid.uuid4().hex
    name = opts.name or f"{project.name}-{opts.service}-run-{slug[:12]}"
    overrides: dict[str, Any] = {
        "Tty": opts.tty, "OpenStdin": opts.interactive, "StdinOnce": opts.interactive,
        "AttachStdin": opts.interactive,
        "HostConfig": {"RestartPolicy": {"Name": "", "MaximumRetryCount": 0}},
    }
    if opts.command:
        overrides["Cmd"] = opts.command
    if opts.entrypoint is not None:
        overrides["Entrypoint"] = shlex.split(opts.entrypoint)
        if not opts.command:
            overrides["Cmd"] = None
    if opts.env:
        base = [f"{k}={v}" for k, v in (svc.get("environment") or {}).items() if v is not None]
        overrides["Env"] = base + opts.env
    if opts.user:
        overrides["User"] = opts.user
    if opts.workdir:
        overrides["WorkingDir"] = opts.workdir
    if opts.labels:
        overrides["Labels"] = dict(label.partition("=")[::2] for label in opts.labels)
    if opts.publish:
        exposed, bindings = _publish(opts.publish)
        overrides["ExposedPorts"] = exposed
        overrides["HostConfig"]["PortBindings"] = bindings
    if opts.volumes:
        binds = []
        for v in opts.volumes:
            src, sep, rest = v.partition(":")
            if sep and (src.startswith(".") or src.startswith("~")):
                import os

                src = os.path.abspath(os.path.expanduser(src))
            binds.append(f"{src}{sep}{rest}")
        overrides["HostConfig"]["Binds"] = binds
    cid = rec.create_container(opts.service, None, images[opts.service], name=name, oneoff=True,
                               slug=slug, use_aliases=opts.use_aliases,
                               publish=opts.service_ports, overrides=overrides)
    if opts.detach:
        client.start(cid)
        print(name)
        return 0
    from pystack.compose.stdio import pump

    conn = client.attach(cid, stdin=opts.interactive)
    try:
        client.start(cid)
    except BaseException:
        conn.close()
        if opts.rm:
            client.remove(cid, force=True)
        raise
    try:
        pump(conn, tty=opts.tty, stdin=opts.interactive,
             resize=lambda h, w: client.resize(cid, h, w))
        code = client.wait(cid)
    except KeyboardInterrupt:
        client.stop(cid, 0)
        code = 130
    finally:
        if opts.rm:
            try:
                client.remove(cid, force=True, volumes=True)
            except UserError:
                pass
    return code
