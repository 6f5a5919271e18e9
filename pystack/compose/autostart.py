"""Find the engine, or start pystackd when nobody named one.

``PYSTACK_HOST`` names an engine explicitly (pystackd or a dockerd): it is used as is and
never started. Otherwise the default socket (``pystack.paths.engine_socket()``) is tried,
and when nothing answers there, ``pystackd`` is started in the background (its own
session, log in ``<run_root>/pystackd.log``) and waited for. If it cannot start (not
root, no overlayfs...), its own one-line reason is reported.
"""
from __future__ import annotations

import os

from pystack.errors import EngineUnavailable

START_TIMEOUT = 15.0


def _answers(path: str) -> bool:
    import socket

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def engine_socket_path() -> str:
    """The socket to talk to, starting pystackd first when it is the default and silent."""
    host = os.environ.get("PYSTACK_HOST")
    if host:
        path = host.removeprefix("unix://")
        if _plain_path(path):
            return path  # what str(pystack.paths.engine_socket()) is, without pathlib
    from pystack.paths import engine_socket

    path = str(engine_socket())
    if host or _answers(path):
        return path
    return _start(path)


def _plain_path(path: str) -> bool:
    """True when ``str(Path(path)) == path`` surely holds (nothing pathlib would tidy)."""
    return (path.startswith("/") and "//" not in path and "/./" not in path
            and not path.endswith(("/", "/.")))


def _start(path: str) -> str:
    """Start pystackd in the background and wait until it answers on ``path``."""
    import shutil
    import subprocess
    import sys
    import time
    from pathlib import Path

    from pystack.paths import run_root

    if os.environ.get("PYSTACK_NO_AUTOSTART"):
        raise EngineUnavailable(f"cannot reach the engine at {path} (PYSTACK_NO_AUTOSTART is set)")
    exe = shutil.which("pystackd") or str(Path(sys.executable).parent / "pystackd")
    if not Path(exe).exists():
        raise EngineUnavailable(f"cannot reach the engine at {path} and pystackd is not installed")
    if os.geteuid() != 0:
        raise EngineUnavailable(f"cannot reach the engine at {path}; starting pystackd needs root")
    run = run_root()
    run.mkdir(parents=True, exist_ok=True)
    log_path = run / "pystackd.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([exe], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True, close_fds=True)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if _answers(path):
            return path
        if proc.poll() is not None:
            lines = [ln for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()]
            reason = lines[-1] if lines else f"exit status {proc.returncode}"
            raise EngineUnavailable(f"could not start pystackd: {reason}")
        time.sleep(0.05)
    raise EngineUnavailable(f"pystackd did not answer on {path} within {START_TIMEOUT:g} s "
                            f"(see {log_path})")
