"""Builds the aiohttp application and serves it on the engine's UNIX socket."""
from __future__ import annotations

import grp
import os
from pathlib import Path

from aiohttp import web

import importlib

from pystack.engine import api
from pystack.engine.engine import Engine

# Route modules, each with setup(app); one module per resource, each owned by one area.
# A module not written yet is skipped (so the daemon runs while the API grows).
ROUTE_MODULES = [
    "pystack.engine.system",            # /_ping /version /info
    "pystack.engine.container_routes",  # /containers/... lifecycle, list, inspect, wait, top, stats, rename
    "pystack.engine.stream_routes",     # /containers/{id}/logs, attach, archive
    "pystack.engine.exec_routes",       # /containers/{id}/exec, /exec/{id}/...
    "pystack.engine.image_routes",      # /images/...
    "pystack.engine.network_routes",    # /networks/...
    "pystack.engine.volume_routes",     # /volumes/...
    "pystack.engine.event_routes",      # /events, /system/df
    "pystack.engine.extra_routes",      # /pystack/... engine-only extras
]


def build_app(engine: Engine) -> web.Application:
    app = web.Application(middlewares=[api.errors], client_max_size=api.MAX_BODY)
    app["engine"] = engine
    for name in ROUTE_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        module.setup(app)
    return app


async def serve(engine: Engine, socket_path: Path, group: str | None = None) -> web.AppRunner:
    """Listen on ``socket_path`` (mode 0660, root or the given group); return the runner."""
    app = build_app(engine)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    socket_path.parent.mkdir(parents=True, exist_ok=True)
    if socket_path.exists() or socket_path.is_symlink():
        socket_path.unlink()
    site = web.UnixSite(runner, str(socket_path))
    await site.start()
    gid = grp.getgrnam(group).gr_gid if group else 0
    os.chown(socket_path, 0, gid)
    os.chmod(socket_path, 0o660)
    return runner
