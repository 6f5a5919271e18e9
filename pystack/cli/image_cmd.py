"""``pystack image ...`` (ls/images, inspect, rm/rmi, tag, prune, load, save, import, pull,
push) and top-level ``pystack login`` / ``logout``, with the docker CLI's flags and output.

The store lives under ``state_root()/images``; heavy modules are imported inside the
commands so ``pystack image ls`` does not pay for the registry client.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from pystack.errors import UserError


def _store():
    from pystack.paths import state_root
    from pystack.runtime.images.store import ImageStore
    return ImageStore(state_root() / "images")


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
    from pystack.runtime.images.display import filter_images, ls_rows, render
    store = _store()
    rows = ls_rows(filter_images(store, store.list(), filters))
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
    from pystack.runtime.images.display import inspect_doc, render
    store = _store()
    docs, missing = [], []
    for ref in images:
        try:
            docs.append(inspect_doc(store, store.resolve(ref)))
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
    from pystack.runtime.images.display import history_rows, human_size, render, since
    rows = history_rows(_store().resolve(name))
    for r in rows:
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
    store = _store()
    errors = []
    for ref in images:
        try:
            for line in store.remove(ref, force=force):
                for k, v in line.items():
                    click.echo(f"{k}: {v}")
        except UserError as exc:
            errors.append(str(exc))
    if errors:
        raise UserError("Error response from daemon: " + "; ".join(errors))


image.add_command(rm, "rmi")


@image.command("tag")
@click.argument("source")
@click.argument("target")
def tag(source: str, target: str) -> None:
    """Create a tag TARGET that refers to SOURCE."""
    _store().tag(source, target)


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
    result = _store().prune(all=all_)
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
    import tempfile
    store = _store()
    tmp = None
    if input_ is None:
        if sys.stdin.isatty():
            raise UserError("requested load from stdin, but stdin is empty")
        tmp = tempfile.NamedTemporaryFile(dir=store.blobs.tmp, delete=False)
        import shutil
        shutil.copyfileobj(sys.stdin.buffer, tmp, 1 << 20)
        tmp.close()
        input_ = tmp.name
    try:
        images = store.load(Path(input_))
    finally:
        if tmp is not None:
            Path(tmp.name).unlink(missing_ok=True)
    for img in images:
        if img.repo_tags:
            for t in img.repo_tags:
                click.echo(f"Loaded image: {t}")
        else:
            click.echo(f"Loaded image ID: {img.id}")


@image.command("save")
@click.argument("images", nargs=-1, required=True)
@click.option("-o", "--output", type=click.Path(), help="Write to a file, instead of STDOUT.")
def save(images: tuple[str, ...], output: str | None) -> None:
    """Save images to a tar archive (docker save + OCI layout; loadable by docker and skopeo)."""
    from pystack.runtime.images.archive import save as save_archive
    store = _store()
    if output:
        save_archive(store, list(images), Path(output))
        return
    if sys.stdout.isatty():
        raise UserError("cowardly refusing to save to a terminal. Use the -o flag or redirect")
    save_archive(store, list(images), None, stream=sys.stdout.buffer)


@image.command("import")
@click.argument("source")
@click.argument("reference", required=False)
@click.option("-c", "--change", "changes", multiple=True, help="Apply a Dockerfile instruction (CMD, ENV, ...).")
@click.option("-m", "--message", default="", help="Set the commit message for the imported image.")
@click.option("--platform", help="Set platform (os/arch[/variant]).")
def import_(source: str, reference: str | None, changes: tuple[str, ...], message: str, platform: str | None) -> None:
    """Import a root filesystem (directory or tarball, '-' for STDIN) as an image."""
    import tempfile
    store = _store()
    tmp = None
    if source == "-":
        tmp = tempfile.NamedTemporaryFile(dir=store.blobs.tmp, delete=False)
        import shutil
        shutil.copyfileobj(sys.stdin.buffer, tmp, 1 << 20)
        tmp.close()
        source = tmp.name
    elif "://" in source:
        raise UserError(f"import from a URL is not supported: {source}")
    try:
        img = store.import_rootfs(Path(source), reference, list(changes), message=message, platform=platform)
    finally:
        if tmp is not None:
            Path(tmp.name).unlink(missing_ok=True)
    click.echo(img.id)


image.add_command(import_, "import")


def _progress(quiet: bool):
    from pystack.runtime.images.progress import for_terminal
    return for_terminal(quiet)


@image.command("pull")
@click.argument("name")
@click.option("--platform", help="Set platform if server is multi-platform capable (os/arch[/variant]).")
@click.option("-q", "--quiet", is_flag=True, help="Suppress verbose output.")
def pull(name: str, platform: str | None, quiet: bool) -> None:
    """Download an image from a registry."""
    from pystack.runtime.images.reference import parse
    store = _store()
    ref = parse(name)
    with _progress(quiet) as progress:
        store.pull(name, platform=platform, progress=progress)
    click.echo(str(ref))  # docker prints the full reference, also with -q


@image.command("push")
@click.argument("name")
@click.option("-q", "--quiet", is_flag=True, help="Suppress verbose output.")
def push(name: str, quiet: bool) -> None:
    """Upload an image to a registry."""
    store = _store()
    with _progress(quiet) as progress:
        store.push(name, progress=progress)


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
    from pystack.runtime.images.reference import HUB_API_HOST, DEFAULT_REGISTRY
    from pystack.runtime.images.registry import RegistryClient
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
    client = RegistryClient(HUB_API_HOST if host == DEFAULT_REGISTRY else host, credentials=(username, password))
    client.ping()  # answers the challenge with these credentials: fails on a wrong password
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
