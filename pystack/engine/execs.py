"""Exec instances: ``docker exec``'s create/start/resize/inspect, kept in memory.

An instance is created against a running container, started once (hijacked stream or
detached), and remembered until its container is gone (Docker forgets them with the
daemon too). The process itself is ``engine.runtime.exec``: pipes without a TTY, a pty
master with one.
"""
from __future__ import annotations

import asyncio
import secrets
from typing import Any

from pystack.errors import Conflict, NotFound, UserError


class ExecInstance:
    def __init__(self, container_id: str, body: dict[str, Any]) -> None:
        self.id = secrets.token_hex(32)
        self.container_id = container_id
        self.cmd: list[str] = list(body["Cmd"])
        self.env: list[str] = list(body.get("Env") or [])
        self.user: str = body.get("User") or ""
        self.workdir: str = body.get("WorkingDir") or ""
        self.tty = bool(body.get("Tty"))
        self.attach_stdin = bool(body.get("AttachStdin"))
        self.attach_stdout = bool(body.get("AttachStdout"))
        self.attach_stderr = bool(body.get("AttachStderr"))
        self.privileged = bool(body.get("Privileged"))
        self.detach_keys = body.get("DetachKeys") or ""
        size = body.get("ConsoleSize")
        self.size: tuple[int, int] | None = (int(size[0]), int(size[1])) if size else None
        self.running = False
        self.started = False
        self.exit_code: int | None = None
        self.pid = 0
        self.process = None       # runtime ExecProcess while running
        self.done = asyncio.Event()

    def inspect(self) -> dict[str, Any]:
        return {
            "ID": self.id, "Running": self.running, "ExitCode": self.exit_code,
            "ProcessConfig": {"tty": self.tty, "entrypoint": self.cmd[0] if self.cmd else "",
                              "arguments": self.cmd[1:], "privileged": self.privileged,
                              **({"user": self.user} if self.user else {})},
            "OpenStdin": self.attach_stdin, "OpenStderr": self.attach_stderr,
            "OpenStdout": self.attach_stdout, "CanRemove": False, "ContainerID": self.container_id,
            "DetachKeys": self.detach_keys, "Pid": self.pid,
        }


class ExecStore:
    """All exec instances of one engine (in memory)."""

    def __init__(self) -> None:
        self.items: dict[str, ExecInstance] = {}

    def add(self, inst: ExecInstance) -> None:
        self.items[inst.id] = inst

    def get(self, ref: str) -> ExecInstance:
        inst = self.items.get(ref)
        if inst is None and len(ref) >= 3:
            found = [i for k, i in self.items.items() if k.startswith(ref)]
            if len(found) == 1:
                inst = found[0]
        if inst is None:
            raise NotFound(f"No such exec instance: {ref}")
        return inst

    def prune(self, live_container_ids: set[str]) -> None:
        """Forget finished instances of containers that no longer exist."""
        for k, inst in list(self.items.items()):
            if inst.container_id not in live_container_ids and not inst.running:
                del self.items[k]


def store_of(engine) -> ExecStore:
    store = getattr(engine, "_pystack_execs", None)
    if store is None:
        store = ExecStore()
        engine._pystack_execs = store
    return store


def validate_create(body: Any) -> dict:
    if not isinstance(body, dict):
        raise UserError("request body must be a JSON object")
    cmd = body.get("Cmd")
    if isinstance(cmd, str):
        cmd = [cmd]
    if not cmd or not isinstance(cmd, list) or not all(isinstance(c, str) for c in cmd):
        raise UserError("No exec command specified")
    env = body.get("Env") or []
    if not isinstance(env, list) or not all(isinstance(e, str) for e in env):
        raise UserError("Env must be a list of KEY=value strings")
    for key in ("User", "WorkingDir", "DetachKeys"):
        if body.get(key) is not None and not isinstance(body[key], str):
            raise UserError(f"{key} must be a string")
    wd = body.get("WorkingDir")
    if wd and not wd.startswith("/"):
        raise UserError(f"the working directory '{wd}' is invalid, it needs to be an absolute path")
    size = body.get("ConsoleSize")
    if size is not None and (not isinstance(size, list) or len(size) != 2
                             or not all(isinstance(v, int) and v >= 0 for v in size)):
        raise UserError("ConsoleSize must be [height, width]")
    return {**body, "Cmd": cmd}


def merge_env(base: list[str], extra: list[str]) -> list[str]:
    """The container's env with the exec's entries replacing same-named ones."""
    out: dict[str, str] = {}
    for item in list(base) + list(extra):
        key = item.split("=", 1)[0]
        out[key] = item
    return list(out.values())


DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def container_env(rec) -> list[str]:
    """The environment the container's own process got (its OCI spec), else its Config.Env
    with Docker's default PATH."""
    import json
    from pathlib import Path
    bundle = (rec.extra or {}).get("bundle")
    if bundle:
        try:
            spec = json.loads((Path(bundle) / "config.json").read_text())
            env = (spec.get("process") or {}).get("env")
            if isinstance(env, list):
                return [e for e in env if isinstance(e, str)]
        except (OSError, ValueError):
            pass
    env = list((rec.config or {}).get("Env") or [])
    if not any(e.startswith("PATH=") for e in env):
        env.insert(0, DEFAULT_PATH)
    return env


def build_process(inst: ExecInstance, rec, root: str) -> dict:
    """The OCI process for ``inst`` in container ``rec`` (root: its rootfs path for users)."""
    cfg = rec.config or {}
    proc: dict[str, Any] = {"args": inst.cmd, "terminal": inst.tty}
    env = merge_env(container_env(rec), inst.env)
    if inst.tty and not any(e.startswith("TERM=") for e in env):
        env.append("TERM=xterm")
    proc["env"] = env
    if inst.workdir:
        proc["cwd"] = inst.workdir
    elif cfg.get("WorkingDir"):
        proc["cwd"] = cfg["WorkingDir"]
    user = inst.user or cfg.get("User") or ""
    if user:
        from pystack.runtime.userdb import resolve_user
        group_add = (rec.host_config or {}).get("GroupAdd") or ()
        proc["user"] = resolve_user(root, user, group_add).to_oci()
    if inst.privileged:
        every = privileged_caps()
        proc["capabilities"] = {k: list(every) for k in ("bounding", "effective", "permitted")}
    if inst.size and inst.tty:
        proc["consoleSize"] = {"height": inst.size[0], "width": inst.size[1]}
    return proc


def privileged_caps() -> list[str]:
    """Every capability the engine itself may give: all of this kernel's, within the
    engine's own bounding set (asking for one outside it makes capset fail)."""
    from pystack.runtime import caps
    every = caps.tweak([], ["ALL"], [])
    try:
        with open("/proc/self/status") as fh:
            bnd = next(int(line.split()[1], 16) for line in fh if line.startswith("CapBnd:"))
    except (OSError, StopIteration, ValueError):
        return every
    return [c for c in every if bnd >> caps.CAPABILITIES.index(c) & 1] if hasattr(caps, "CAPABILITIES") else every


def set_winsize(fd: int, height: int, width: int) -> None:
    import fcntl
    import struct
    import termios
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))


def check_startable(inst: ExecInstance) -> None:
    if inst.running:
        raise Conflict(f"Error: Exec command {inst.id} is already running")
    if inst.started:
        raise Conflict(f"Error: Exec command {inst.id} has already run")
