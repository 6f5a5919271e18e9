"""System endpoints: /_ping, /version, /info — what clients ask first to negotiate."""
from __future__ import annotations

import os
import platform

from aiohttp import web

import pystack
from pystack.engine.api import API_VERSION, MIN_API_VERSION, add_route


def _headers() -> dict[str, str]:
    return {"API-Version": API_VERSION, "Docker-Experimental": "false", "OSType": "linux",
            "Server": f"pystackd/{pystack.__version__}", "Cache-Control": "no-cache, no-store, must-revalidate"}


async def ping(request: web.Request) -> web.Response:
    body = "" if request.method == "HEAD" else "OK"
    return web.Response(text=body, content_type="text/plain", headers=_headers())


async def version(request: web.Request) -> web.Response:
    uname = os.uname()
    return web.json_response({
        "Platform": {"Name": "pystack"},
        "Components": [{"Name": "Engine", "Version": pystack.__version__,
                        "Details": {"ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION,
                                    "Os": "linux", "Arch": _arch(), "KernelVersion": uname.release}}],
        "Version": pystack.__version__, "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "", "GoVersion": f"python{platform.python_version()}", "Os": "linux",
        "Arch": _arch(), "KernelVersion": uname.release, "BuildTime": "",
    }, headers=_headers())


def _arch() -> str:
    machine = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


async def info(request: web.Request) -> web.Response:
    engine = request.app["engine"]
    return web.json_response(engine.info(), headers=_headers())


def setup(app: web.Application) -> None:
    for method in ("GET", "HEAD"):
        add_route(app, method, "/_ping", ping)
    add_route(app, "GET", "/version", version)
    add_route(app, "GET", "/info", info)
