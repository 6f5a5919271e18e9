"""Attached ``up``: stream the logs, end when the containers end or on Ctrl-C.

The first Ctrl-C stops the stack gracefully ("Gracefully stopping... (press Ctrl+C again
to force)") and exits 0; a second one kills it and exits 2 (Docker Compose's documented
codes). ``--abort-on-container-exit`` stops everything when an
attached container exits; ``--exit-code-from`` returns that service's exit code.
"""
from __future__ import annotations

import threading
import time
from typing import Any

from pystack.compose.lifecycle import Lifecycle
from pystack.compose.logs import LogFollower, LogPrinter
from pystack.compose.state import Container, list_containers


def run_attached(client: Any, project: Any, containers: list[tuple[str, str, str]], shown: set[str], *,
                 t0: float, color: bool, prefix: bool, timestamps: bool, abort_on_exit: bool,
                 abort_on_failure: bool, exit_code_from: str | None, timeout: int | None,
                 progress: Any, parallel: int) -> int:
    printer = LogPrinter(color=color, prefix=prefix, timestamps=timestamps)
    if containers:
        printer.width = max(len(n) - len(project.name) - 1 for _, n, _ in containers) + 1
    ids = {cid for _, _, cid in containers}
    services = tuple(sorted({s for s, _, _ in containers}))
    abort = threading.Event()
    result: dict[str, int] = {}

    def on_die(c: Container | None, ev: dict) -> None:
        if c is None or c.id not in ids:
            return
        code = int(((ev.get("Actor") or {}).get("Attributes") or {}).get("exitCode", "0") or 0)
        if c.service in shown:
            printer.notice(f"{c.short_name} exited with code {code}")
        if exit_code_from:
            if c.service == exit_code_from:
                result.setdefault("code", code)
                abort.set()
            elif abort_on_exit and "code" not in result:
                abort.set()
        elif abort_on_exit or (abort_on_failure and code != 0):
            result.setdefault("code", code)
            abort.set()

    follower = LogFollower(client, project.name, printer, services=tuple(sorted(shown)), follow=True,
                           since=f"{t0 - 1:.9f}", on_die=on_die, show=bool(shown))
    thread = threading.Thread(target=follower.run, daemon=True)
    # log lines now share the terminal: the stop phase prints plain lines, never redraws
    progress.restart("Stopping", "plain" if progress.mode == "tty" else None)
    lc = Lifecycle(client, project.name, project, progress, parallel)
    interrupted = forced = False
    try:
        # Ctrl-C may come as soon as the first line shows: everything from here is covered
        printer.notice("Attaching to " + ", ".join(sorted(n[len(project.name) + 1:] for s, n, _ in containers
                                                            if s in shown)))
        thread.start()
        while not abort.is_set():
            current = [c for c in list_containers(client, project.name, services=services) if c.id in ids]
            if not any(c.running for c in current):
                time.sleep(0.3)  # let the last lines and exit notices through
                break
            abort.wait(0.25)
        if abort.is_set():
            printer.notice("Aborting on container exit...")
            lc.stop(list_containers(client, project.name, services=services), timeout)
    except KeyboardInterrupt:
        interrupted = True
        printer.notice("Gracefully stopping... (press Ctrl+C again to force)")
        try:
            lc.stop(list_containers(client, project.name, services=services), timeout)
        except KeyboardInterrupt:
            forced = True
            running = [c for c in list_containers(client, project.name, services=services) if c.running]
            if running:
                lc.kill(running, "SIGKILL")
    finally:
        follower.stop.set()
        progress.close()
    if interrupted:
        return 2 if forced else 0  # Docker Compose's documented codes for one / two Ctrl-C
    if exit_code_from:
        if "code" not in result:
            for c in list_containers(client, project.name, services=(exit_code_from,)):
                result["code"] = int((client.inspect(c.id).get("State") or {}).get("ExitCode") or 0)
                break
        return result.get("code", 0)
    return result.get("code", 0) if (abort_on_exit or abort_on_failure) else 0
