"""``pystack image ...`` (ls/images, inspect, history, rm/rmi, tag, prune, load, save, import,
pull, push) and top-level ``pystack login`` / ``logout``, with the docker CLI's flags and output.

Every command goes through the engine (pystackd, started on demand by
``pystack.compose.autostart``) over the Docker Engine API, so one process owns the image
store and its locks. Credentials stay in ``~/.docker/config.json`` (as docker keeps them):
``login`` asks the engine to check them (``POST /auth``) and stores them here; pull and push
send them to the engine as ``X-Registry-Auth``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from pystack.errors import UserError


def _client():
    from pystack.cli.engine_client import client
    return client()


def _q(ref: str) -> str:
    from pystack.cli.engine_client import quote
    return quote(ref)


def _filters(values: tuple[str, ...]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for f in values:
        key, sep, value = f.partition("=")
        if not sep:
            raise UserError(f"invalid filter {f!r} (dangling, reference, label, before, since)")
        out.setdefault(key, []).append(value)
    return out


def _rows(summaries: list[dict]) -> list[dict]:
    """``docker images`` rows from the engine's ImageSummary list (one per tag)."""
    import time
    from datetime import datetime, timezone
    from pystack.runtime.images.display import human_duration, human_size
    rows = []
    for img in summaries:
        digests = {d.split("@")[0]: d.split("@")[1] for d in img.get("RepoDigests") or [] if "@" in d}
        tags = [t for t in img.get("RepoTags") or [] if t != "<none>:<none>"]
        pairs = [(t.rsplit(":", 1)[0], t.rsplit(":", 1)[1]) for t in tags] or \
            [(r, "<none>") for r in digests] or [("<none>", "<none>")]
        created = int(img.get("Created") or 0)
        for repo, tag in pairs:
            rows.append({"Repository": repo, "Tag": tag, "ID": img["Id"], "Digest": digests.get(repo, "<none>"),
                         "CreatedSince": human_duration(time.time() - created) + " ago",
                         "CreatedAt": datetime.fromtimestamp(created, timezone.utc).strftime(
                             "%Y-%m-%d %H:%M:%S +0000 UTC"),
                         "Size": human_size(img.get("Size") or 0), "Containers": "N/A"})
    return rows


@click.group("image")
def image() -> None:
    """Manage images."""


@image.command("ls")
@click.argument("reference", required=False)
@click.option("-a", "--all", "all_", is_flag=True, help="Show all images (default hides none here).")
@click.option("-q", "--quiet", is_flag=True, help="Only show image IDs.")
@click.option("--no-trunc", is_flag=True, help="Don't truncate output.")
@click.option("--digests", is_flag=True, help="Show digests.")
@click.option("--format", "fmt", help="'table', 'json' or a Go-template subset ({{.Repository}}).")
@click.option("-f", "--filter", "filters", multiple=True,
              help="dangling=true|false, reference=PATTERN, label=KEY[=VALUE], before=IMAGE, since=IMAGE")
def ls(reference: str | None, all_: bool, quiet: bool, no_trunc: bool, digests: bool, fmt: str | None,
       filters: tuple[str, ...]) -> None:
    """List images."""
    from pystack.runtime.images.display import render
    rows = _rows(_client().request("GET", "/images/json", {"filters": _filters(filters) or None}))
    if reference:
        from fnmatch import fnmatch
        from pystack.runtime.images.reference import parse
        slash, colon = reference.rfind("/"), reference.rfind(":")
        want_repo, want_tag = (reference[:colon], reference[colon + 1:]) if colon > slash else (reference, "")
        want_repo = parse(want_repo).familiar_name if "*" not in want_repo else want_repo
        rows = [r for r in rows if fnmatch(r["Repository"], want_repo) and (not want_tag or fnmatch(r["Tag"], want_tag))]
    for r in rows:
        if not no_trunc:
            r["ID"] = r["ID"].split(":", 1)[1][:12]
    if quiet:
        seen = []
        for r in rows:
            if r["ID"] not in seen:
                seen.append(r["ID"])
        click.echo("\n".join(seen)) if seen else None
        return
    if fmt == "json":
        for r in rows:
            click.echo(json.dumps(r))
        return
    if fmt and fmt != "table" and not fmt.startswith("table "):
        for r in rows:
            click.echo(render(fmt, r))
        return
    cols = ["Repository", "Tag"] + (["Digest"] if digests else []) + ["ID", "CreatedSince", "Size"]
    heads = {"Repository": "REPOSITORY", "Tag": "TAG", "Digest": "DIGEST", "ID": "IMAGE ID",
             "CreatedSince": "CREATED", "Size": "SIZE"}
    table = [[heads[c] for c in cols]] + [[str(r[c]) for c in cols] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(cols))]
    for row in table:
        click.echo("   ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())


image.add_command(ls, "images")
image.add_command(ls, "list")


@image.command("inspect")
@click.argument("images", nargs=-1, required=True)
@click.option("-f", "--format", "fmt", help="Go-template subset, e.g. '{{.Id}}' or '{{json .Config}}'.")
def inspect(images: tuple[str, ...], fmt: str | None) -> None:
    """Display detailed information on one or more images."""
    from pystack.runtime.images.display import render
    cli = _client()
    docs, missing = [], []
    for ref in images:
        try:
            docs.append(cli.request("GET", f"/images/{_q(ref)}/json"))
        except UserError as exc:
            missing.append(str(exc))
    if fmt:
        for d in docs:
            click.echo(render(fmt, d))
    else:
        click.echo(json.dumps(docs, indent=4))
    if missing:
        raise UserError("Error: " + "; ".join(missing))


@image.command("history")
@click.argument("name")
@click.option("-q", "--quiet", is_flag=True, help="Only show image IDs.")
@click.option("--no-trunc", is_flag=True, help="Don't truncate output.")
@click.option("--format", "fmt", help="'json' or a Go-template subset ({{.CreatedBy}}).")
def history(name: str, quiet: bool, no_trunc: bool, fmt: str | None) -> None:
    """Show the history of an image."""
    from datetime import datetime, timezone
    from pystack.runtime.images.display import human_size, render, since
    rows = _client().request("GET", f"/images/{_q(name)}/history")
    for r in rows:
        r.pop("Tags", None)
        r["Created"] = datetime.fromtimestamp(r["Created"], timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") \
            if r.get("Created") else ""
        if r["Id"] != "<missing>" and not no_trunc:
            r["Id"] = r["Id"].split(":", 1)[1][:12]
    if quiet:
        click.echo("\n".join(r["Id"] for r in rows))
        return
    if fmt == "json":
        for r in rows:
            click.echo(json.dumps(r))
        return
    if fmt:
        for r in rows:
            click.echo(render(fmt, r))
        return
    table = [["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]]
    for r in rows:
        by = r["CreatedBy"] if no_trunc or len(r["CreatedBy"]) <= 45 else r["CreatedBy"][:44] + "…"
        table.append([r["Id"], since(r["Created"]) if r["Created"] else "", by, human_size(r["Size"]), r["Comment"]])
    widths = [max(len(row[i]) for row in table) for i in range(5)]
    for row in table:
        click.echo("   ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())


@image.command("rm")
@click.argument("images", nargs=-1, required=True)
@click.option("-f", "--force", is_flag=True, help="Force removal of an image with several tags.")
def rm(images: tuple[str, ...], force: bool) -> None:
    """Remove one or more images."""
    cli = _client()
    errors = []
    for ref in images:
        try:
            for line in cli.request("DELETE", f"/images/{_q(ref)}", {"force": force}):
                for k, v in line.items():
                    click.echo(f"{k}: {v}")
        except UserError as exc:
            errors.append(str(exc).removeprefix("Error response from daemon: "))
    if errors:
        raise UserError("Error response from daemon: " + "; ".join(errors))


image.add_command(rm, "rmi")


@image.command("tag")
@click.argument("source")
@click.argument("target")
def tag(source: str, target: str) -> None:
    """Create a tag TARGET that refers to SOURCE."""
    from pystack.compose.client import split_ref
    from pystack.runtime.images.reference import parse
    parse(target)  # a bad name is refused here, with the library's message
    repo, tag_ = split_ref(target)
    _client().request("POST", f"/images/{_q(source)}/tag", {"repo": repo, "tag": tag_ or None})


@image.command("prune")
@click.option("-a", "--all", "all_", is_flag=True, help="Remove all unused images, not just dangling ones.")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation.")
def prune(all_: bool, force: bool) -> None:
    """Remove unused images (dangling ones, or all with -a) and their layers."""
    from pystack.runtime.images.display import human_size
    if not force:
        what = "all images without at least one container associated to them" if all_ else "all dangling images"
        if not click.confirm(f"WARNING! This will remove {what}.\nAre you sure you want to continue?"):
            return
    filters = {"dangling": ["false"]} if all_ else None
    result = _client().request("POST", "/images/prune", {"filters": filters})
    if result["ImagesDeleted"]:
        click.echo("Deleted Images:")
        for line in result["ImagesDeleted"]:
            for k, v in line.items():
                click.echo(f"{k.lower()}: {v}")
        click.echo()
    click.echo(f"Total reclaimed space: {human_size(result['SpaceReclaimed'])}")


@image.command("load")
@click.option("-i", "--input", "input_", type=click.Path(), help="Read from tar archive file (or an OCI layout dir).")
@click.option("-q", "--quiet", is_flag=True, help="Suppress the load output.")
def load(input_: str | None, quiet: bool) -> None:
    """Load images from a docker-save or OCI archive (or STDIN)."""
    from pystack.cli.engine_client import check_line, json_lines, upload
    if input_ is None:
        if sys.stdin.isatty():
            raise UserError("requested load from stdin, but stdin is empty")
        source = sys.stdin.buffer
    else:
        source = Path(input_)
        if not source.exists():
            raise UserError(f"open {input_}: no such file or directory")
    cli = _client()
    try:
        resp = upload(cli, "/images/load", {"quiet": quiet}, source)
    except UserError as exc:
        raise UserError(str(exc).replace("the loaded archive", input_ or "stdin")) from None
    for line in json_lines(resp):
        check_line(line)
        text = line.get("stream")
        if text:
            click.echo(text.replace("the loaded archive", input_ or "stdin"), nl=False)


@image.command("save")
@click.argument("images", nargs=-1, required=True)
@click.option("-o", "--output", type=click.Path(), help="Write to a file, instead of STDOUT.")
def save(images: tuple[str, ...], output: str | None) -> None:
    """Save images to a tar archive (docker save + OCI layout; loadable by docker and skopeo)."""
    import os
    import uuid
    if not output and sys.stdout.isatty():
        raise UserError("cowardly refusing to save to a terminal. Use the -o flag or redirect")
    cli = _client()
    query = "&".join(f"names={_q(n)}" for n in images)
    resp = cli.stream("GET", f"/images/get?{query}")
    tmp = None
    try:
        if output:
            out = Path(output)
            tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.tmp")
            try:
                fh = open(tmp, "wb")
            except OSError as exc:
                raise UserError(f"save: cannot write {output}: {exc.strerror}") from None
        else:
            fh = sys.stdout.buffer
        try:
            while True:
                chunk = resp.read1(1 << 20)
                if not chunk:
                    break
                fh.write(chunk)
        finally:
            if output:
                fh.close()
        if tmp is not None:
            os.replace(tmp, output)
            tmp = None
        else:
            fh.flush()
    finally:
        resp.close()
        if tmp is not None:
            tmp.unlink(missing_ok=True)


@image.command("import")
@click.argument("source")
@click.argument("reference", required=False)
@click.option("-c", "--change", "changes", multiple=True, help="Apply a Dockerfile instruction (CMD, ENV, ...).")
@click.option("-m", "--message", default="", help="Set the commit message for the imported image.")
@click.option("--platform", help="Set platform (os/arch[/variant]).")
def import_(source: str, reference: str | None, changes: tuple[str, ...], message: str, platform: str | None) -> None:
    """Import a root filesystem (directory or tarball, '-' for STDIN) as an image."""
    from pystack.cli.engine_client import check_line, json_lines, upload
    from pystack.compose.client import split_ref
    from pystack.runtime.images.changes import apply_changes
    repo, tag_ = "", ""
    if reference:
        from pystack.runtime.images.reference import parse
        if parse(reference).digest:
            raise UserError(f"cannot import to a digest reference: {reference}")
        repo, tag_ = split_ref(reference)
    apply_changes({}, list(changes))  # validate before sending anything
    if source == "-":
        body = sys.stdin.buffer
    elif "://" in source:
        raise UserError(f"import from a URL is not supported: {source}")
    else:
        body = Path(source)
        if not body.exists() and not body.is_symlink():
            raise UserError(f"import: {source}: no such file or directory")
    params = {"fromSrc": "-", "repo": repo or None, "tag": tag_ or None, "message": message or None,
              "platform": platform, "changes": list(changes)}
    resp = upload(_client(), "/images/create", params, body)
    image_id = None
    for line in json_lines(resp):
        check_line(line)
        image_id = line.get("status", image_id)
    click.echo(image_id)


image.add_command(import_, "import")


def _progress(quiet: bool):
    from pystack.runtime.images.progress import for_terminal
    return for_terminal(quiet)


def _follow(lines, progress, show_status: bool = True) -> list[str]:
    """Feed Docker's JSON messages to a progress reporter; error lines raise."""
    from pystack.cli.engine_client import check_line
    statuses = []
    for line in lines:
        check_line(line)
        status = line.get("status")
        if not status:
            continue
        if line.get("id"):
            detail = line.get("progressDetail") or {}
            progress.layer(line["id"], status, detail.get("current"), detail.get("total"))
        else:
            statuses.append(status)
            if show_status:
                progress.message(status)
    return statuses


@image.command("pull")
@click.argument("name")
@click.option("--platform", help="Set platform if server is multi-platform capable (os/arch[/variant]).")
@click.option("-q", "--quiet", is_flag=True, help="Suppress verbose output.")
def pull(name: str, platform: str | None, quiet: bool) -> None:
    """Download an image from a registry."""
    from pystack.cli.engine_client import json_lines, registry_auth
    from pystack.compose.client import split_ref
    from pystack.runtime.images.reference import parse
    ref = parse(name)
    if platform:
        from pystack.runtime.images.manifest import parse_platform
        parse_platform(platform)
    image_, tag_ = split_ref(name)
    cli = _client()
    resp = cli.stream("POST", "/images/create", {"fromImage": image_, "tag": tag_ or None, "platform": platform},
                      headers={"X-Registry-Auth": registry_auth(name)})
    with _progress(quiet) as progress:
        _follow(json_lines(resp), progress)
    click.echo(str(ref))  # docker prints the full reference, also with -q


@image.command("push")
@click.argument("name")
@click.option("-q", "--quiet", is_flag=True, help="Suppress verbose output.")
def push(name: str, quiet: bool) -> None:
    """Upload an image to a registry."""
    from pystack.cli.engine_client import json_lines, registry_auth
    from pystack.compose.client import split_ref
    from pystack.runtime.images.reference import parse
    ref = parse(name)
    if ref.digest:
        raise UserError(f"cannot push a digest reference: {name}")
    image_, tag_ = split_ref(name)
    cli = _client()
    resp = cli.stream("POST", f"/images/{_q(image_)}/push", {"tag": tag_ or None},
                      headers={"X-Registry-Auth": registry_auth(name)})
    with _progress(quiet) as progress:
        _follow(json_lines(resp), progress)


def _server(server: str | None) -> str:
    from pystack.runtime.images.reference import DEFAULT_REGISTRY
    if not server:
        return DEFAULT_REGISTRY
    host = server.split("://", 1)[-1].split("/", 1)[0]
    return DEFAULT_REGISTRY if host in ("index.docker.io", "registry-1.docker.io", "docker.io") else host


@click.command("login")
@click.argument("server", required=False)
@click.option("-u", "--username", help="Username.")
@click.option("-p", "--password", help="Password (prefer --password-stdin).")
@click.option("--password-stdin", is_flag=True, help="Take the password from stdin.")
def login(server: str | None, username: str | None, password: str | None, password_stdin: bool) -> None:
    """Log in to a registry (credentials are kept in ~/.docker/config.json, as docker does)."""
    from pystack.runtime.images.auth import config_path, store_credentials
    host = _server(server)
    if password_stdin:
        if password:
            raise UserError("--password and --password-stdin are mutually exclusive")
        if not username:
            raise UserError("Must provide --username with --password-stdin")
        password = sys.stdin.read().rstrip("\r\n")
    if not username:
        username = click.prompt("Username")
    if password is None:
        password = click.prompt("Password", hide_input=True)
    if password and not password_stdin and sys.stdin.isatty():
        click.echo("WARNING! Using --password via the CLI is insecure. Use --password-stdin.", err=True)
    _client().request("POST", "/auth", body={"username": username, "password": password,
                                              "serveraddress": host})  # the engine asks the registry
    store_credentials(host, username, password)
    click.echo(f"Login Succeeded (credentials saved in {config_path()})")


@click.command("logout")
@click.argument("server", required=False)
def logout(server: str | None) -> None:
    """Log out from a registry."""
    from pystack.runtime.images.auth import remove_credentials
    host = _server(server)
    if remove_credentials(host):
        click.echo(f"Removing login credentials for {host}")
    else:
        click.echo(f"Not logged in to {host}")
