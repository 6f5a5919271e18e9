"""Where the engine keeps its state and runtime files, overridable for tests.

``PYSTACK_ROOT`` moves persistent state (default ``/var/lib/pystack``); ``PYSTACK_RUN``
moves runtime files (default ``/run/pystack``); ``PYSTACK_HOST`` names the engine socket
(``unix:///run/pystack/pystack.sock`` by default, following ``$PYSTACK_RUN``).
"""
from __future__ import annotations

import os
from pathlib import Path


def state_root() -> Path:
    """Persistent state: images, volumes, container records, IPAM."""
    return Path(os.environ.get("PYSTACK_ROOT", "/var/lib/pystack"))


def run_root() -> Path:
    """Runtime files that vanish with a reboot: sockets, netns mounts, shim state."""
    return Path(os.environ.get("PYSTACK_RUN", "/run/pystack"))


def engine_socket() -> Path:
    """Path of the engine's UNIX socket, from ``PYSTACK_HOST`` (``unix://`` URL or a path)."""
    host = os.environ.get("PYSTACK_HOST")
    if host:
        return Path(host.removeprefix("unix://"))
    return run_root() / "pystack.sock"
