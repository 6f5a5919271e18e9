"""``/images/...`` and ``/auth``: the Engine API over ``pystack.runtime.images.ImageStore``.

Blocking store calls run in ``asyncio.to_thread``; pull, push, import and load stream
Docker's JSON message lines (``{"status", "id", "progressDetail"}``, errors as
``{"errorDetail": {"message"}, "error"}``) while they run. A pull or push whose first
failure comes before any layer moved answers with a plain HTTP error instead (404 for
an unknown image, 401 for refused credentials), as dockerd does for the common cases.

Credentials: ``X-Registry-Auth`` (base64 JSON ``{"username", "password"}``) is used when it
carries a user; an empty one means the engine's own ``~/.docker/config.json`` lookup.
"""
from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

from aiohttp import web

from pystack.engine.api import BadRequest, add_route, error_response, filters_of, flag
from pystack.errors import Conflict, UserError

log = logging.getLogger("pystackd.images")

IMAGE_FILTERS = ("dangling", "reference", "label", "before", "since")


def _engine(request: web.Request):
    return request.app["engine"]


def _store(request: web.Request):
    return request.app["engine"].images


def _emit(request: web.Request, action: str, actor: str, **attrs: str) -> None:
    _engine(request).events.emit("image", action, actor, attrs)


def images_in_use(engine) -> dict[str, list[str]]:
    """image id -> ids of the containers created from it (Docker's rmi/prune rule)."""
    out: dict[str, list[str]] = {}
    for record in engine.records:
        if record.image_id:
            out.setdefault(record.image_id, []).append(record.id)
    return out


def _created_unix(text: str) -> int:
    from pystack.runtime.images.display import parse_time
    return int(parse_time(text).timestamp())


def summary(img, containers: int = -1) -> dict[str, Any]:
    """Docker's ImageSummary (``GET /images/json``)."""
    return {
        "Id": img.id, "ParentId": "", "RepoTags": list(img.repo_tags), "RepoDigests": list(img.repo_digests),
        "Created": _created_unix(img.created), "Size": img.size, "VirtualSize": img.size, "SharedSize": -1,
        "Labels": img.container_config.get("Labels") or {}, "Containers": containers,
    }


# -- list, inspect, history ------------------------------------------------------------------

async def list_images(request: web.Request) -> web.Response:
    from pystack.runtime.images.display import filter_images
    store = _store(request)
    filters = filters_of(request)
    pairs = []
    for key, values in filters.items():
        if key not in IMAGE_FILTERS:
            raise BadRequest(f"invalid filter '{key}'")
        pairs += [f"{key}={v}" for v in values]

    def work():
        return [summary(i) for i in filter_images(store, store.list(), pairs)]
    rows = await asyncio.to_thread(work)
    rows.sort(key=lambda r: r["Created"], reverse=True)
    return web.json_response(rows)


async def inspect_image(request: web.Request) -> web.Response:
    from pystack.runtime.images.display import inspect_doc
    store = _store(request)
    name = request.match_info["name"]

    def work():
        return inspect_doc(store, store.resolve(name))
    return web.json_response(await asyncio.to_thread(work))


async def image_history(request: web.Request) -> web.Response:
    from pystack.runtime.images.display import history_rows
    store = _store(request)
    name = request.match_info["name"]
    rows = await asyncio.to_thread(lambda: history_rows(store.resolve(name)))
    for r in rows:
        r["Created"] = _created_unix(r["Created"]) if r["Created"] else 0
        r["Tags"] = None
    return web.json_response(rows)


# -- tag, remove, prune ----------------------------------------------------------------------

async def tag_image(request: web.Request) -> web.Response:
    store = _store(request)
    name = request.match_info["name"]
    repo = request.query.get("repo", "")
    tag = request.query.get("tag", "")
    if not repo:
        raise BadRequest("repository name must have at least one component")
    target = f"{repo}:{tag}" if tag else repo

    def work():
        img = store.resolve(name)
        store.tag(img.id, target)
        return img.id
    image_id = await asyncio.to_thread(work)
    _emit(request, "tag", image_id, name=target)
    return web.Response(status=201)


async def remove_image(request: web.Request) -> web.Response:
    engine = _engine(request)
    store = engine.images
    name = request.match_info["name"]
    force = flag(request, "force")

    def work():
        from pystack.runtime.images.reference import parse
        img = store.resolve(name)
        users = images_in_use(engine).get(img.id)
        if users:
            by_tag = False
            try:
                ref = parse(name)
                by_tag = not ref.digest and ref.familiar() in img.repo_tags
            except UserError:
                pass
            if not (by_tag and len(img.repo_tags) > 1):  # removing it would delete the image
                if by_tag:
                    raise Conflict(f'conflict: unable to remove repository reference "{name}" (must force) - '
                                   f"container {users[0][:12]} is using its referenced image {img.short_id}")
                raise Conflict(f"conflict: unable to delete {img.short_id} ({'cannot' if force else 'must'} be "
                               f"forced) - image is being used by container {users[0][:12]}")
        return store.remove(name, force=force)
    lines = await asyncio.to_thread(work)
    for line in lines:
        for action, actor in line.items():
            _emit(request, action.lower().replace("deleted", "delete").replace("untagged", "untag"), actor,
                  name=actor)
    return web.json_response(lines)


async def prune_images(request: web.Request) -> web.Response:
    engine = _engine(request)
    filters = filters_of(request)
    all_ = False
    for key, values in filters.items():
        if key == "dangling":
            all_ = any(v.lower() in ("false", "0") for v in values)
        else:
            raise BadRequest(f"invalid filter '{key}' (pystack prunes images by dangling only)")
    keep = list(images_in_use(engine))
    result = await asyncio.to_thread(engine.images.prune, all_, keep)
    for line in result["ImagesDeleted"] or []:
        if "Deleted" in line:
            _emit(request, "delete", line["Deleted"], name=line["Deleted"])
    return web.json_response(result)


# -- streamed jobs: pull, push, import, load -------------------------------------------------

def error_line(message: str) -> dict[str, Any]:
    return {"errorDetail": {"message": message}, "error": message}


async def _start(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    if request.version >= (1, 1):
        resp.enable_chunked_encoding()
    await resp.prepare(request)
    return resp


async def stream_job(request: web.Request, job: Callable[[Callable[[dict], None]], list[dict]],
                     *, hold_messages: bool = True) -> web.StreamResponse:
    """Run ``job(write)`` in a thread; stream what it writes as JSON lines, then its result lines.

    With ``hold_messages``, plain status messages are held back until the first layer
    line (one with an ``id``): a job failing before that answers with an HTTP error status.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[dict] = asyncio.Queue()

    def write(obj: dict) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, obj)

    fut = asyncio.ensure_future(asyncio.to_thread(job, write))
    resp: web.StreamResponse | None = None
    held: list[dict] = []
    broken = False

    async def send(objs: list[dict]) -> None:
        nonlocal broken
        if broken or resp is None:
            return
        try:
            await resp.write(b"".join(json.dumps(o).encode() + b"\r\n" for o in objs))
        except (ConnectionError, RuntimeError):
            broken = True  # the client went away; the job still finishes

    try:
        while not fut.done():
            getter = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait({getter, fut}, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                break
            obj = getter.result()
            if resp is None and hold_messages and "id" not in obj:
                held.append(obj)
                continue
            if resp is None:
                resp = await _start(request)
                await send(held)
                held = []
            await send([obj])
        while not queue.empty():
            held.append(queue.get_nowait())
        exc = fut.exception()
        if exc is not None and resp is None:
            raise exc
        if resp is None:
            resp = await _start(request)
        tail = held
        if exc is None:
            tail += fut.result()
        elif isinstance(exc, UserError):
            tail.append(error_line(str(exc)))
        else:
            log.error("streamed job failed", exc_info=exc)
            tail.append(error_line(f"internal error: {type(exc).__name__}: {exc}"))
        await send(tail)
        if not broken:
            try:
                await resp.write_eof()
            except (ConnectionError, RuntimeError):
                pass
        return resp
    finally:
        if not fut.done():
            fut.add_done_callback(lambda f: f.exception())  # no "exception never retrieved"


def registry_auth(request: web.Request) -> tuple[str, str] | None:
    """Credentials from ``X-Registry-Auth`` (None: let the engine look them up itself)."""
    raw = request.headers.get("X-Registry-Auth", "").strip()
    if not raw:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)) or b"{}")
    except ValueError:
        try:
            data = json.loads(base64.b64decode(raw + "=" * (-len(raw) % 4)) or b"{}")
        except ValueError:
            raise BadRequest("X-Registry-Auth: not base64-encoded JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("X-Registry-Auth: not a JSON object")
    if data.get("identitytoken"):
        raise BadRequest("X-Registry-Auth: identity tokens are not supported; log in with a password")
    if data.get("username"):
        return str(data["username"]), str(data.get("password", ""))
    return None


def _pull(store, text: str, platform: str | None, progress, creds: tuple[str, str] | None):
    if creds is None:
        return store.pull(text, platform=platform, progress=progress)
    # explicit credentials: the registry itself (mirrors are skipped), with these credentials
    from pystack.runtime.images import manifest as mt
    from pystack.runtime.images import pull as pullmod
    from pystack.runtime.images.errors import RegistryError
    from pystack.runtime.images.reference import parse
    from pystack.runtime.images.registry import RegistryClient
    ref = parse(text)
    client = RegistryClient(ref.api_host, credentials=creds, auth_host=ref.registry)
    try:
        return pullmod._pull_from(store, client, ref, mt.parse_platform(platform), progress,
                                  explicit=platform is not None)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise RegistryError(f"image {ref.familiar()}: malformed manifest or config from {client.host}: "
                            f"{type(exc).__name__}: {exc}") from None


def _status_of(exc: Exception) -> int | None:
    from pystack.runtime.images.errors import Unauthorized
    return 401 if isinstance(exc, Unauthorized) else None


async def create_image(request: web.Request) -> web.StreamResponse:
    """``POST /images/create``: pull (``fromImage``) or import (``fromSrc=-``, body = tarball)."""
    if request.query.get("fromSrc"):
        return await _import(request)
    from_image = request.query.get("fromImage", "")
    if not from_image:
        raise BadRequest("fromImage or fromSrc is required")
    tag = request.query.get("tag", "")
    if tag:
        text = f"{from_image}@{tag}" if tag.startswith("sha256:") else f"{from_image}:{tag}"
    else:
        text = from_image
    from pystack.runtime.images.reference import parse
    ref = parse(text)
    platform = request.query.get("platform") or None
    creds = registry_auth(request)
    store = _store(request)

    def job(write):
        from pystack.runtime.images.progress import JsonProgress
        before = store.resolve(str(ref)).id if store.exists(str(ref)) else None
        img = _pull(store, str(ref), platform, JsonProgress(write), creds)
        lines = []
        digest = next((d.split("@", 1)[1] for d in img.repo_digests if d.startswith(ref.familiar_name + "@")),
                      img.manifest_digest)
        if digest:
            lines.append({"status": f"Digest: {digest}"})
        done = "Image is up to date for" if before == img.id else "Downloaded newer image for"
        lines.append({"status": f"Status: {done} {ref.familiar()}"})
        return lines
    try:
        resp = await stream_job(request, job)
    except UserError as exc:
        status = _status_of(exc)
        if status:
            return error_response(status, str(exc))
        raise
    _emit(request, "pull", ref.familiar(), name=ref.familiar())
    return resp


async def _upload(request: web.Request, store) -> Path:
    """The request body streamed to a temp file in the image store (removed by the caller)."""
    store.blobs.tmp.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="upload-", dir=store.blobs.tmp)
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as fh:
            async for chunk in request.content.iter_chunked(1 << 20):
                await asyncio.to_thread(fh.write, chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def _scrub(exc: UserError, path: Path, label: str) -> UserError:
    """Errors name the uploaded archive, not the engine's temp file."""
    text = str(exc)
    if str(path) not in text:
        return exc
    text = text.replace(str(path), label)
    try:
        return type(exc)(text)
    except TypeError:
        return UserError(text)


async def _import(request: web.Request) -> web.StreamResponse:
    src = request.query["fromSrc"]
    if src != "-":
        raise BadRequest(f"import from a URL is not supported: {src} (send the tarball as the body, fromSrc=-)")
    repo = request.query.get("repo", "")
    tag = request.query.get("tag", "")
    ref = (f"{repo}:{tag}" if tag else repo) or None
    changes = request.query.getall("changes", [])
    message = request.query.get("message", "") or "Imported from -"  # dockerd's comment for a body
    platform = request.query.get("platform") or None
    store = _store(request)
    if ref:
        from pystack.runtime.images.reference import parse
        parse(ref)  # a bad name fails before the upload is stored
    if changes:
        from pystack.runtime.images.changes import apply_changes
        apply_changes({}, changes)
    path = await _upload(request, store)
    try:
        try:
            img = await asyncio.to_thread(store.import_rootfs, path, ref, changes, message=message,
                                          platform=platform)
        except UserError as exc:
            raise _scrub(exc, path, "the imported tarball") from None
    finally:
        path.unlink(missing_ok=True)
    _emit(request, "import", img.id, name=ref or img.id)
    resp = await _start(request)
    await resp.write(json.dumps({"status": img.id}).encode() + b"\r\n")
    await resp.write_eof()
    return resp


async def push_image(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    tag = request.query.get("tag", "")
    text = f"{name}:{tag}" if tag else name
    from pystack.runtime.images.reference import parse
    ref = parse(text)
    store = _store(request)
    await asyncio.to_thread(store.resolve, text)  # 404 before any streaming
    creds = registry_auth(request)

    def job(write):
        from pystack.runtime.images.progress import JsonProgress
        client = None
        if creds is not None:
            from pystack.runtime.images.registry import RegistryClient
            client = RegistryClient(ref.api_host, credentials=creds, auth_host=ref.registry)
        digest = store.push(str(ref), progress=JsonProgress(write), client=client)
        try:
            size = store.blobs.size(digest)
        except (OSError, AttributeError):
            size = 0
        t = ref.tag or "latest"
        return [{"status": f"{t}: digest: {digest} size: {size}"},
                {"progressDetail": {}, "aux": {"Tag": t, "Digest": digest, "Size": size}}]
    try:
        resp = await stream_job(request, job)
    except UserError as exc:
        status = _status_of(exc)
        if status:
            return error_response(status, str(exc))
        raise
    _emit(request, "push", ref.familiar(), name=ref.familiar())
    return resp


async def load_images(request: web.Request) -> web.StreamResponse:
    store = _store(request)
    path = await _upload(request, store)
    try:
        try:
            images = await asyncio.to_thread(store.load, path)
        except UserError as exc:
            raise _scrub(exc, path, "the loaded archive") from None
    finally:
        path.unlink(missing_ok=True)
    lines = []
    for img in images:
        for t in img.repo_tags or [None]:
            lines.append({"stream": f"Loaded image: {t}\n" if t else f"Loaded image ID: {img.id}\n"})
        _emit(request, "load", img.id, name=(img.repo_tags or [img.id])[0])
    resp = await _start(request)
    await resp.write(b"".join(json.dumps(line).encode() + b"\r\n" for line in lines))
    await resp.write_eof()
    return resp


# -- save (docker save) ----------------------------------------------------------------------

class _AsyncWriter:
    """A file object for a worker thread that writes into an aiohttp response (with back-pressure)."""

    def __init__(self, resp: web.StreamResponse, loop: asyncio.AbstractEventLoop) -> None:
        self.resp, self.loop = resp, loop
        self.buf = bytearray()

    def write(self, data: bytes) -> int:
        self.buf += data
        if len(self.buf) >= 1 << 18:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self.buf:
            data, self.buf = bytes(self.buf), bytearray()
            asyncio.run_coroutine_threadsafe(self.resp.write(data), self.loop).result()


async def _save(request: web.Request, names: list[str]) -> web.StreamResponse:
    if not names:
        raise BadRequest("no image names given (names=...)")
    store = _store(request)
    for n in names:
        await asyncio.to_thread(store.resolve, n)  # 404 before streaming
    resp = web.StreamResponse(status=200, headers={"Content-Type": "application/x-tar"})
    if request.version >= (1, 1):
        resp.enable_chunked_encoding()
    await resp.prepare(request)
    writer = _AsyncWriter(resp, asyncio.get_running_loop())

    def work():
        from pystack.runtime.images.archive import save
        save(store, names, None, stream=writer)
        writer.flush()
    try:
        await asyncio.to_thread(work)
    except (ConnectionError, RuntimeError, UserError) as exc:
        log.warning("image save stopped: %s", exc)
        return resp  # headers are sent: the cut stream tells the client
    await resp.write_eof()
    for n in names:
        _emit(request, "save", n, name=n)
    return resp


async def get_images(request: web.Request) -> web.StreamResponse:
    return await _save(request, request.query.getall("names", []))


async def get_image(request: web.Request) -> web.StreamResponse:
    return await _save(request, [request.match_info["name"]])


# -- /auth -----------------------------------------------------------------------------------

async def auth(request: web.Request) -> web.Response:
    """Check credentials against the registry (``docker login``); nothing is stored here."""
    from pystack.engine.api import json_body
    body = await json_body(request)
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    user, password = body.get("username") or "", body.get("password") or ""
    server = body.get("serveraddress") or ""
    if not user:
        raise BadRequest("username is required")
    from pystack.runtime.images.reference import DEFAULT_REGISTRY, HUB_API_HOST
    host = server.split("://", 1)[-1].split("/", 1)[0] if server else DEFAULT_REGISTRY
    if host in ("index.docker.io", "registry-1.docker.io", "docker.io"):
        host = DEFAULT_REGISTRY

    def work():
        from pystack.runtime.images.registry import RegistryClient
        client = RegistryClient(HUB_API_HOST if host == DEFAULT_REGISTRY else host, credentials=(user, password),
                                auth_host=host)
        client.ping()
    try:
        await asyncio.to_thread(work)
    except UserError as exc:
        from pystack.runtime.images.errors import Unauthorized
        if isinstance(exc, Unauthorized):
            return error_response(401, str(exc))
        raise
    return web.json_response({"Status": "Login Succeeded", "IdentityToken": ""})


def setup(app: web.Application) -> None:
    add_route(app, "GET", "/images/json", list_images)
    add_route(app, "GET", "/images/get", get_images)
    add_route(app, "POST", "/images/create", create_image)
    add_route(app, "POST", "/images/load", load_images)
    add_route(app, "POST", "/images/prune", prune_images)
    add_route(app, "GET", "/images/{name:.+}/json", inspect_image)
    add_route(app, "GET", "/images/{name:.+}/history", image_history)
    add_route(app, "GET", "/images/{name:.+}/get", get_image)
    add_route(app, "POST", "/images/{name:.+}/tag", tag_image)
    add_route(app, "POST", "/images/{name:.+}/push", push_image)
    add_route(app, "DELETE", "/images/{name:.+}", remove_image)
    add_route(app, "POST", "/auth", auth)
