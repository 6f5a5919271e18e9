"""Lifecycle hooks: ``post_start`` and ``pre_stop`` commands run inside the service container.

As Docker Compose runs them: like ``exec`` (command, user, privileged, working_dir,
environment), right after the container started, or right before it is stopped. A failing
``post_start`` hook fails ``up`` naming the container and the command; a failing
``pre_stop`` hook is reported and the container is stopped anyway.
"""
from __future__ import annotations

import time
from typing import Any

from pystack.compose.client import demux
from pystack.errors import UserError


def run_hook(client: Any, cid: str, hook: dict) -> tuple[int, bytes]:
    """Run one hook to completion; (exit code, combined output)."""
    env = [f"{k}={v}" for k, v in (hook.get("environment") or {}).items() if v is not None]
    body: dict[str, Any] = {"AttachStdin": False, "AttachStdout": True, "AttachStderr": True,
                            "Tty": False, "Cmd": list(hook["command"]), "Env": env,
                            "Privileged": bool(hook.get("privileged"))}
    if hook.get("user"):
        body["User"] = str(hook["user"])
    if hook.get("working_dir"):
        body["WorkingDir"] = hook["working_dir"]
    eid = client.exec_create(cid, body)
    conn = client.exec_start(eid, tty=False)
    output = b""
    try:
        for _, payload in demux(conn.read):
            output += payload
    finally:
        conn.close()
    for _ in range(100):
        info = client.exec_inspect(eid)
        if not info.get("Running"):
            return int(info.get("ExitCode") or 0), output
        time.sleep(0.02)
    return int(client.exec_inspect(eid).get("ExitCode") or 0), output


def post_start(client: Any, cid: str, name: str, svc: dict, progress: Any) -> None:
    for hook in svc.get("post_start") or []:
        code, output = run_hook(client, cid, hook)
        if code != 0:
            last = output.decode(errors="replace").strip().splitlines()[-1:] or [""]
            raise UserError(f"container {name}: post_start hook {' '.join(hook['command'])!r} "
                            f"exited with code {code}" + (f": {last[0]}" if last[0] else ""))


def pre_stop(client: Any, cid: str, name: str, svc: dict | None, progress: Any) -> None:
    for hook in (svc or {}).get("pre_stop") or []:
        try:
            code, _ = run_hook(client, cid, hook)
        except UserError as exc:
            progress.warn(f"container {name}: pre_stop hook failed: {exc}")
            continue
        if code != 0:
            progress.warn(f"container {name}: pre_stop hook {' '.join(hook['command'])!r} "
                          f"exited with code {code}")
