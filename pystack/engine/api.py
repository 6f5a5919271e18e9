"""HTTP plumbing shared by the Docker Engine API routes: versions, errors, filters, streams.

The Docker API accepts ``/v1.43/containers/json`` and ``/containers/json`` alike; errors
are ``{"message": ...}`` with 400/404/409/500; list filters arrive as a JSON query value.
"""
from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web

from pystack.errors import Conflict, NotFound, UserError

API_VERSION = "1.43"
MIN_API_VERSION = "1.24"
MAX_BODY = 64 * 1024 * 1024  # image loads stream; JSON bodies are far smaller



class BadRequest(UserError):
    """A request the engine understands but refuses (unsupported field, bad value): HTTP 400."""


def error_response(status: int, message: str) -> web.Response:
    # exactly "application/json" (no charset): the docker CLI parses an error body only then,
    # otherwise it prints the raw JSON ("Error response from daemon: {"message": ...}")
    return web.Response(body=json.dumps({"message": message}).encode(), status=status,
                        content_type="application/json")


def add_route(app: web.Application, method: str, path: str, handler) -> None:
    """Serve ``path`` both bare and under Docker's ``/vX.Y`` prefix."""
    app.router.add_route(method, path, handler)
    app.router.add_route(method, "/v{api_version:[0-9]+\\.[0-9]+}" + path, handler)


@web.middleware
async def errors(request: web.Request, handler):
    """Map the engine's exceptions onto Docker's status codes and ``{"message"}`` bodies."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except NotFound as exc:
        return error_response(404, str(exc))
    except Conflict as exc:
        return error_response(409, str(exc))
    except UserError as exc:
        return error_response(400, str(exc))
    except (json.JSONDecodeError, ValueError, TypeError, KeyError) as exc:
        return error_response(400, f"bad request: {exc}")
    except Exception as exc:  # noqa: BLE001 - an engine bug: Docker's JSON 500, logged with its traceback
        logging.getLogger("pystackd").exception("%s %s failed", request.method, request.path)
        return error_response(500, f"internal error: {type(exc).__name__}: {exc}")


def filters_of(request: web.Request) -> dict[str, list[str]]:
    """Docker's ``filters`` query value: ``{"label": ["a=b"]}`` or the old ``{"label": {"a=b": true}}``."""
    raw = request.query.get("filters")
    if not raw:
        return {}
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise BadRequest("filters must be a JSON object")
    out: dict[str, list[str]] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out[key] = [k for k, v in value.items() if v]
        elif isinstance(value, list):
            out[key] = [str(v) for v in value]
        else:
            out[key] = [str(value)]
    return out


def flag(request: web.Request, name: str, default: bool = False) -> bool:
    """Docker's boolean query parameters: 1/true/True/yes."""
    value = request.query.get(name)
    if value is None:
        return default
    return value.lower() in ("1", "true", "yes")


async def json_body(request: web.Request) -> Any:
    """The request's JSON body, ``{}`` when empty; a clear 400 when it is not JSON."""
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"request body is not JSON: {exc}") from None
