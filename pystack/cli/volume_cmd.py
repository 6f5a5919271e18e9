"""``pystack volume``: create, ls, inspect, rm, prune, snapshot, restore (Docker's verbs).

Every command goes through the engine (pystackd, started on demand) over the Docker
Engine API's ``/volumes`` endpoints, so one process owns the volume store and its locks;
snapshot and restore use the engine-only ``/pystack/volumes/...`` extras. Output follows
``docker volume``'s.
"""
from __future__ import annotations

import json

import click

from pystack.errors import UserError


def _client():
    from pystack.cli.engine_client import client

    return client()


def _q(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")


def _pairs(values: tuple[str, ...], what: str) -> dict[str, str]:
    out = {}
    for v in values:
        key, eq, val = v.partition("=")
        if not key:
            raise UserError(f"invalid {what} {v!r}: expected KEY=VALUE")
        out[key] = val
    return out


def _filters(values: tuple[str, ...]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for v in values:
        key, eq, val = v.partition("=")
        if not eq:
            raise UserError(f"bad format of filter {v!r} (expected name=value)")
        out.setdefault(key, []).append(val)
    return out


class _VolumeGroup(click.Group):
    """Turns a permission problem on the state directory into one line, not a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except PermissionError as exc:
            raise UserError(f"{exc.filename or 'volume store'}: permission denied (volumes need root, "
                            f"or a PYSTACK_ROOT you own)") from None


@click.group(cls=_VolumeGroup)
def volume() -> None:
    """Manage volumes."""


@volume.command("create")
@click.argument("name", required=False)
@click.option("-d", "--driver", default="local", show_default=True, help="Volume driver (only local).")
@click.option("-o", "--opt", "opts", multiple=True, help="Driver option KEY=VALUE (type, o, device).")
@click.option("--label", "labels", multiple=True, help="Label KEY=VALUE.")
def create(name: str | None, driver: str, opts: tuple[str, ...], labels: tuple[str, ...]) -> None:
    """Create a volume (anonymous when NAME is omitted)."""
    vol = _client().request("POST", "/volumes/create", body={
        "Name": name or "", "Driver": driver, "DriverOpts": _pairs(opts, "option"), "Labels": _pairs(labels, "label")})
    click.echo(vol["Name"])


@volume.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Only display volume names.")
@click.option("-f", "--filter", "filters", multiple=True, help="Filter (name=, label=, dangling=, driver=).")
@click.option("--format", "fmt", default=None, help="json for one JSON object per line.")
def ls(quiet: bool, filters: tuple[str, ...], fmt: str | None) -> None:
    """List volumes."""
    recs = _client().request("GET", "/volumes", {"filters": _filters(filters) or None}).get("Volumes") or []
    if quiet:
        for r in recs:
            click.echo(r["Name"])
    elif fmt == "json":
        for r in recs:
            labels = r.get("Labels") or {}
            click.echo(json.dumps({"Driver": r["Driver"], "Labels": ",".join(f"{k}={v}" for k, v in labels.items()),
                                   "Mountpoint": r["Mountpoint"], "Name": r["Name"], "Scope": r.get("Scope", "local")}))
    else:
        click.echo(f"{'DRIVER':<10}VOLUME NAME")
        for r in recs:
            click.echo(f"{r['Driver']:<10}{r['Name']}")


@volume.command("inspect")
@click.argument("names", nargs=-1, required=True)
def inspect(names: tuple[str, ...]) -> None:
    """Show volumes as JSON (the Engine API's Volume objects)."""
    cli = _client()
    found, missing = [], []
    for n in names:  # like docker: print what exists, then fail for what does not
        try:
            found.append(cli.request("GET", f"/volumes/{_q(n)}"))
        except UserError as exc:
            missing.append(str(exc))
    click.echo(json.dumps(found, indent=4))
    if missing:
        raise UserError("; ".join(missing))


@volume.command("rm")
@click.argument("names", nargs=-1, required=True)
@click.option("-f", "--force", is_flag=True, help="Do not fail on missing volumes.")
def rm(names: tuple[str, ...], force: bool) -> None:
    """Remove volumes (refused while a container uses them)."""
    cli = _client()
    errors = []
    for n in names:
        try:
            cli.request("DELETE", f"/volumes/{_q(n)}", {"force": force})
            click.echo(n)
        except UserError as exc:
            errors.append(str(exc))
    if errors:
        raise UserError("; ".join(errors))


@volume.command("prune")
@click.option("-a", "--all", "all_", is_flag=True, help="Remove all unused volumes, not just anonymous ones.")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation.")
@click.option("--filter", "filters", multiple=True, help="Filter (label=...).")
def prune(all_: bool, force: bool, filters: tuple[str, ...]) -> None:
    """Remove unused volumes."""
    if not force:
        what = "all volumes not used by at least one container" if all_ else \
            "all anonymous volumes not used by at least one container"
        click.confirm(f"WARNING! This will remove {what}.\nAre you sure you want to continue?", abort=True)
    f = _filters(filters)
    if all_:
        f["all"] = ["true"]
    result = _client().request("POST", "/volumes/prune", {"filters": f or None})
    removed, reclaimed = result.get("VolumesDeleted") or [], result.get("SpaceReclaimed") or 0
    if removed:
        click.echo("Deleted Volumes:")
        for n in removed:
            click.echo(n)
        click.echo("")
    click.echo(f"Total reclaimed space: {_human(reclaimed)}")


def _human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.4g}{unit}" if unit != "B" else f"{int(n)}B"
        n /= 1000
    return f"{n}"


@volume.command("snapshot")
@click.argument("name")
@click.argument("tag", required=False)
@click.option("--list", "list_", is_flag=True, help="List the volume's snapshots instead.")
@click.option("--rm", "remove", is_flag=True, help="Delete snapshot TAG instead.")
def snapshot(name: str, tag: str | None, list_: bool, remove: bool) -> None:
    """Freeze a copy of volume NAME's data as TAG (reflink where the filesystem allows)."""
    cli = _client()
    if list_:
        click.echo(f"{'VOLUME':<24}{'TAG':<20}{'METHOD':<9}{'FILES':>8}{'BYTES':>14}  CREATED")
        for s in cli.request("GET", f"/pystack/volumes/{_q(name)}/snapshots"):
            click.echo(f"{s['volume']:<24}{s['tag']:<20}{s['method']:<9}{s['files']:>8}{s['bytes']:>14}  "
                       f"{s['created_at']}")
        return
    if not tag:
        raise UserError("volume snapshot: TAG is required")
    if remove:
        cli.request("DELETE", f"/pystack/volumes/{_q(name)}/snapshots/{_q(tag)}")
        click.echo(f"{name}:{tag}")
        return
    info = cli.request("POST", f"/pystack/volumes/{_q(name)}/snapshots", {"tag": tag})
    if info.get("note"):
        click.echo(info["note"], err=True)
    click.echo(f"{name}:{tag}")


@volume.command("restore")
@click.argument("name")
@click.argument("tag")
def restore(name: str, tag: str) -> None:
    """Put volume NAME's data back as it was at snapshot TAG (refused while in use)."""
    info = _client().request("POST", f"/pystack/volumes/{_q(name)}/restore", {"tag": tag})
    if info.get("note"):
        click.echo(info["note"], err=True)
    click.echo(f"{name}:{tag}")
