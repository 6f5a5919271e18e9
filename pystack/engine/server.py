"""Builds the aiohttp application and serves it on the engine's UNIX socket."""
from __future__ import annotations

import grp
import os
from pathlib import Path

from aiohttp import web

from pystack.engine import api, system
from pystack.engine.engine import Engine

# Route modules, each with setup(app). Added here as each resource lands.
ROUTE_MODULES = [system]


def build_app(engine: Engine) -> web.Application:
    app = web.Application(middlewares=[api.errors], client_max_size=api.MAX_BODY)
    app["engine"] = engine
    for module in ROUTE_MODULES:
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
