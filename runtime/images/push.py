"""``push``: upload an image's blobs and manifest to a registry.

For each blob (layers, then config): ``HEAD`` first (already there: skipped), then a
cross-repository mount from a repository of the same registry known to hold it, else an
upload — monolithic (``POST`` + one ``PUT``) for small blobs, chunked (``PATCH`` with
``Content-Range``, then ``PUT ?digest=``) above ``PYSTACK_PUSH_CHUNK`` bytes. The manifest
goes last, so a registry never shows a tag whose blobs are missing.
"""
from __future__ import annotations

import os
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from pystack.errors import UserError

from . import manifest as mt
from .errors import RegistryError
from .progress import Progress
from .reference import parse
from .registry import RegistryClient

if TYPE_CHECKING:
    from .store import ImageStore

CHUNK = int(os.environ.get("PYSTACK_PUSH_CHUNK", str(16 << 20)))
WORKERS = int(os.environ.get("PYSTACK_PUSH_WORKERS", "4"))


def _with_query(url: str, **params: str) -> str:
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def push(store: "ImageStore", text: str, *, progress: Progress | None = None, chunk_size: int | None = None,
         client: RegistryClient | None = None) -> str:
    """Push ``text`` (a tagged reference in the store); returns the manifest digest."""
    ref = parse(text)
    if ref.digest:
        raise UserError(f"cannot push a digest reference: {text}")
    progress = progress or Progress()
    image = store.resolve(text)
    rec = store.record(image.id)
    client = client or RegistryClient(ref.api_host, auth_host=ref.registry)
    repo = ref.repository
    scope = f"repository:{repo}:pull,push"
    progress.message(f"The push refers to repository [{ref.name}]")
    chunk = chunk_size or CHUNK
    sources = [s for s in rec.get("sources", []) if s != repo]

    def one(desc: dict[str, Any]) -> None:
        digest = desc["digest"]
        if client.blob_exists(repo, digest, scope):
            progress.layer(digest, "Layer already exists")
            return
        for src in sources:
            if _mount(client, repo, src, digest):
                progress.layer(digest, f"Mounted from {src}")
                return
        progress.layer(digest, "Preparing", 0, store.blobs.size(digest))
        _upload(store, client, repo, digest, scope, chunk, progress)
        progress.layer(digest, "Pushed")

    blobs = [*rec["layers"], {"digest": image.id}]
    with ThreadPoolExecutor(max_workers=max(1, WORKERS)) as pool:
        errors = [f.exception() for f in [pool.submit(one, d) for d in blobs]]
    for exc in errors:
        if exc is not None:
            raise exc
    manifest = store.blobs.read(rec["manifest"])
    media = mt.media_type_of(__import__("json").loads(manifest))
    resp = client.request("PUT", f"/v2/{repo}/manifests/{ref.tag}", scope=scope,
                          headers={"Content-Type": media}, body=manifest)
    try:
        if resp.status not in (200, 201):
            raise RegistryError(f"{ref.familiar()}: manifest upload refused: {resp.error_text()}")
    finally:
        resp.close()
    digest = mt.digest_of(manifest)
    store.add_repo_digest(image.id, f"{ref.name}@{digest}")
    store.add_source(image.id, repo)
    progress.message(f"{ref.tag}: digest: {digest} size: {len(manifest)}")
    return digest


def _mount(client: RegistryClient, repo: str, src: str, digest: str) -> bool:
    scope = f"repository:{repo}:pull,push repository:{src}:pull"
    q = urllib.parse.urlencode({"mount": digest, "from": src})
    resp = client.request("POST", f"/v2/{repo}/blobs/uploads/?{q}", scope=scope, headers={"Content-Length": "0"})
    try:
        if resp.status == 201:
            return True
        if resp.status == 202:  # mount refused, an upload session was opened: cancel it
            loc = resp.header("Location")
            if loc:
                r = client.request("DELETE", urllib.parse.urljoin(resp.url, loc), scope=scope)
                r.close()
        return False
    finally:
        resp.close()


def _start(client: RegistryClient, repo: str, scope: str) -> str:
    resp = client.request("POST", f"/v2/{repo}/blobs/uploads/", scope=scope, headers={"Content-Length": "0"})
    try:
        if resp.status != 202 or not resp.header("Location"):
            raise RegistryError(f"{client.host}/{repo}: cannot start upload: {resp.error_text()}")
        return urllib.parse.urljoin(resp.url, resp.header("Location"))
    finally:
        resp.close()


def _upload(store: "ImageStore", client: RegistryClient, repo: str, digest: str, scope: str, chunk: int,
            progress: Progress) -> None:
    size = store.blobs.size(digest)
    location = _start(client, repo, scope)
    path = store.blobs.path(digest)
    if size <= chunk:  # monolithic
        with open(path, "rb") as f:
            resp = client.request("PUT", _with_query(location, digest=digest), scope=scope, body=f,
                                  headers={"Content-Type": "application/octet-stream",
                                           "Content-Length": str(size)})
        _expect(resp, 201, digest)
        progress.layer(digest, "Pushing", size, size)
        return
    sent = 0
    with open(path, "rb") as f:
        while sent < size:
            data = f.read(chunk)
            resp = client.request("PATCH", location, scope=scope, body=data, headers={
                "Content-Type": "application/octet-stream", "Content-Length": str(len(data)),
                "Content-Range": f"{sent}-{sent + len(data) - 1}"})
            try:
                if resp.status != 202:
                    raise RegistryError(f"{client.host}/{repo}: chunk upload of {digest} refused: {resp.error_text()}")
                location = urllib.parse.urljoin(resp.url, resp.header("Location") or location)
            finally:
                resp.close()
            sent += len(data)
            progress.layer(digest, "Pushing", sent, size)
    resp = client.request("PUT", _with_query(location, digest=digest), scope=scope, body=b"",
                          headers={"Content-Length": "0"})
    _expect(resp, 201, digest)


def _expect(resp: Any, status: int, digest: str) -> None:
    try:
        if resp.status != status:
            raise RegistryError(f"upload of {digest} refused: {resp.error_text()}")
    finally:
        resp.close()
