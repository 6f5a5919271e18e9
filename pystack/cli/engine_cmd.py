"""``pystack info`` and ``pystack engine start|stop|status``: the engine daemon from the CLI.

``engine start`` starts pystackd in the background when the default socket is silent
(``pystack.compose.autostart``, the same path every command takes on first use);
``engine stop`` sends SIGTERM to the PID in ``<run_root>/pystackd.pid`` and waits until the
socket is gone; ``engine status`` says whether it answers (exit 1 when not); ``engine logs``
prints the log of an engine started on demand.
"""
from __future__ import annotations

import json
import os
import signal
import time

import click

from pystack.errors import UserError


def _pid_file():
    from pystack.paths import run_root
    return run_root() / "pystackd.pid"


def _socket() -> str:
    from pystack.paths import engine_socket
    return str(engine_socket())


def _answers(path: str) -> bool:
    from pystack.compose.autostart import _answers as answers
    return answers(path)


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.4g}{unit}"
        n /= 1024
    return str(n)


@click.command("info")
@click.option("-f", "--format", "fmt", help="'json' for the raw /info document, or a Go-template subset.")
def info(fmt: str | None) -> None:
    """Display system-wide information (the engine's /info)."""
    from pystack.cli.engine_client import client
    cli = client()
    doc = cli.request("GET", "/info")
    if fmt == "json" or fmt == "{{json .}}":
        click.echo(json.dumps(doc))
        return
    if fmt:
        from pystack.runtime.images.display import render
        click.echo(render(fmt, doc))
        return
    version = cli.request("GET", "/version")
    lines = [
        "Server:",
        f" Engine: pystackd {version.get('Version', '')} (API {version.get('ApiVersion', '')})",
        f" Socket: {cli.socket_path}",
        f" Containers: {doc.get('Containers', 0)}",
        f"  Running: {doc.get('ContainersRunning', 0)}",
        f"  Paused: {doc.get('ContainersPaused', 0)}",
        f"  Stopped: {doc.get('ContainersStopped', 0)}",
        f" Images: {doc.get('Images', 0)}",
        f" Storage Driver: {doc.get('Driver', '')}",
        f" Cgroup Driver: {doc.get('CgroupDriver', '')}",
        f" Cgroup Version: {doc.get('CgroupVersion', '')}",
        f" Default Runtime: {doc.get('DefaultRuntime', '')}",
        f" Security Options: {', '.join(doc.get('SecurityOptions') or []) or 'none'}",
        f" Kernel Version: {doc.get('KernelVersion', '')}",
        f" Operating System: {doc.get('OperatingSystem', '')}",
        f" Architecture: {doc.get('Architecture', '')}",
        f" CPUs: {doc.get('NCPU', 0)}",
        f" Total Memory: {_human(doc.get('MemTotal', 0))}",
        f" Name: {doc.get('Name', '')}",
        f" ID: {doc.get('ID', '')}",
        f" Docker Root Dir: {doc.get('DockerRootDir', '')}",
    ]
    for w in doc.get("Warnings") or []:
        lines.append(f"WARNING: {w}")
    click.echo("\n".join(lines))


@click.group("engine")
def engine() -> None:
    """Start, stop or check the engine daemon (pystackd)."""


@engine.command("start")
def start() -> None:
    """Start pystackd in the background unless it already answers; print its socket."""
    if os.environ.get("PYSTACK_HOST") and not _answers(_socket()):
        raise UserError(f"PYSTACK_HOST names {_socket()}, which does not answer; "
                        "run `pystackd` there (pystack starts only the default engine)")
    from pystack.compose.autostart import engine_socket_path
    path = engine_socket_path()
    pid = _read_pid()
    click.echo(f"pystackd running at unix://{path}" + (f" (pid {pid})" if pid else ""))


def _read_pid() -> int | None:
    try:
        return int(_pid_file().read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (our own child) is not alive
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _is_pystackd(pid: int) -> bool:
    try:
        cmdline = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ")
    except OSError:
        return False
    return b"pystackd" in cmdline or b"pystack.engine.daemon" in cmdline


@engine.command("stop")
@click.option("-t", "--timeout", type=float, default=30.0, show_default=True,
              help="Seconds to wait for the engine to exit.")
def stop(timeout: float) -> None:
    """Stop pystackd (SIGTERM; containers keep running and are adopted by the next engine)."""
    pid = _read_pid()
    if pid is None or not _alive(pid):
        if _answers(_socket()):
            raise UserError(f"an engine answers on {_socket()} but {_pid_file()} has no live PID; "
                            "stop it the way it was started")
        click.echo("pystackd is not running")
        return
    if not _is_pystackd(pid):
        raise UserError(f"{_pid_file()} names PID {pid}, which is not pystackd; not touching it")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            raise UserError(f"pystackd (pid {pid}) did not exit within {timeout:g} s")
        time.sleep(0.05)
    click.echo(f"pystackd stopped (pid {pid})")


@engine.command("status")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
def status(fmt: str) -> None:
    """Say whether the engine answers on its socket (exit status 1 when it does not)."""
    path = _socket()
    running = _answers(path)
    doc: dict = {"Socket": path, "Running": running, "Pid": _read_pid() if running else None}
    if running:
        from pystack.compose.client import EngineClient
        try:
            version = EngineClient(path).request("GET", "/version")
            doc["Version"], doc["ApiVersion"] = version.get("Version"), version.get("ApiVersion")
        except UserError as exc:
            doc["Error"] = str(exc)
    if fmt == "json":
        click.echo(json.dumps(doc))
    elif running:
        click.echo(f"pystackd {doc.get('Version', '?')} running at unix://{path}"
                   + (f" (pid {doc['Pid']})" if doc["Pid"] else ""))
    else:
        click.echo(f"pystackd is not running (no answer on {path})")
    if not running:
        raise SystemExit(1)


@engine.command("logs")
@click.option("-n", "--tail", "tail", type=int, default=50, show_default=True,
              help="Number of lines from the end (0: all).")
def logs(tail: int) -> None:
    """Show the log of a pystackd started on demand (``<run_root>/pystackd.log``)."""
    from pystack.paths import run_root
    path = run_root() / "pystackd.log"
    try:
        lines = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        raise UserError(f"no engine log at {path} (pystackd started by hand or by systemd logs "
                        "to its own stdout/journal)") from None
    for line in lines[-tail:] if tail > 0 else lines:
        click.echo(line)
