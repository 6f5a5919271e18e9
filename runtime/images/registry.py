"""A client of the OCI distribution API (the registry side of pull and push).

Standard-library HTTP (``http.client``) on purpose: redirects are followed by hand so
that the ``Authorization`` header is never carried to another host (ContainerDrip,
CVE-2020-15157; urllib would copy it), and each worker thread owns its connection so
blob downloads run in parallel without an event loop. Plain HTTP is used only for
loopback registries and those configured insecure (HTTPS is tried first, as Docker does).

Auth follows the ``WWW-Authenticate`` challenge: Basic with the stored credentials, or
Bearer tokens fetched from the realm (service, scope; Basic credentials if we have them,
anonymous otherwise), cached per scope until they expire.
"""
from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, BinaryIO

from . import manifest as mt
from .auth import get_credentials, parse_challenge
from .config import RegistryConfig, load_config
from .errors import DigestMismatch, ImageNotFound, RegistryError, RegistryUnreachable, Unauthorized

USER_AGENT = "pystack/0.1 (+distribution client)"
TIMEOUT = 60.0
_REDIRECTS = (301, 302, 303, 307, 308)
_RETRY = (408, 429, 500, 502, 503, 504)


_CTX: dict[str, ssl.SSLContext] = {}


def _tls_context() -> ssl.SSLContext:
    """One verifying context per process (loading the CA store costs ~0.2 s)."""
    if "verify" not in _CTX:
        _CTX["verify"] = ssl.create_default_context()
    return _CTX["verify"]


def _probe_context() -> ssl.SSLContext:
    """For the scheme probe of an insecure registry only: no CA store needed."""
    if "probe" not in _CTX:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        _CTX["probe"] = ctx
    return _CTX["probe"]


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    url: str
    raw: http.client.HTTPResponse
    conn: http.client.HTTPConnection

    def read(self, n: int = -1) -> bytes:
        return self.raw.read(n) if n >= 0 else self.raw.read()

    def read_some(self, n: int) -> bytes:
        """Up to ``n`` bytes, whatever has arrived (one socket read): a stalled transfer
        still leaves what came on disk for a resume; b"" at the end or on a cut."""
        return self.raw.read1(n)

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name, default)

    def close(self) -> None:
        self.raw.close()
        self.conn.close()

    def error_text(self) -> str:
        """The registry's error message from a JSON error body, if any."""
        try:
            body = json.loads(self.raw.read(65536) or b"{}")
            errs = body.get("errors") or []
            if errs:
                return "; ".join(f"{e.get('code', '')}: {e.get('message', '')}".strip(": ") for e in errs)
        except (ValueError, OSError, http.client.HTTPException):
            pass
        return f"HTTP {self.status}"


class RegistryClient:
    """One registry endpoint (host[:port]) with its auth state; thread-safe."""

    def __init__(self, host: str, *, config: RegistryConfig | None = None,
                 credentials: tuple[str, str] | None | bool = True, auth_host: str | None = None) -> None:
        self.host = host
        self.config = config or load_config()
        self.insecure = self.config.is_insecure(host)
        self.scheme: str | None = None if self.insecure else "https"
        self.login_name = auth_host or host  # what `pystack login` takes for this registry
        if credentials is True:
            credentials = get_credentials(self.login_name)
        self.credentials = credentials or None
        self._tokens: dict[str, tuple[str, float]] = {}
        self._basic = False
        self._lock = threading.Lock()

    # -- plumbing ------------------------------------------------------------------------
    def _connect(self, scheme: str, netloc: str, probe: bool = False) -> http.client.HTTPConnection:
        if scheme == "https":
            return http.client.HTTPSConnection(netloc, timeout=TIMEOUT, context=_probe_context() if probe or self.config.is_insecure(netloc)
                                               else _tls_context())
        return http.client.HTTPConnection(netloc, timeout=TIMEOUT)

    def _raw(self, method: str, url: str, headers: dict[str, str], body: Any, probe: bool = False) -> Response:
        """One request, following redirects; Authorization stays with its own host."""
        auth_netloc = urllib.parse.urlsplit(url).netloc
        for _ in range(10):
            parts = urllib.parse.urlsplit(url)
            if parts.scheme == "http" and not (self.config.is_insecure(parts.netloc) or
                                               (parts.netloc == self.host and self.insecure)):
                raise RegistryError(f"refusing plain HTTP to {parts.netloc} (not an insecure registry)")
            hdrs = {"User-Agent": USER_AGENT, **headers}
            if parts.netloc != auth_netloc:
                hdrs.pop("Authorization", None)  # never forward credentials to another host
            conn = self._connect(parts.scheme, parts.netloc, probe)
            path = parts.path or "/"
            if parts.query:
                path += "?" + parts.query
            try:
                if hasattr(body, "seek"):
                    body.seek(0)
                conn.request(method, path, body=body, headers=hdrs)
                raw = conn.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                raise RegistryUnreachable(f"cannot reach registry {parts.netloc}: {exc}") from exc
            if raw.status in _REDIRECTS and raw.getheader("Location"):
                url = urllib.parse.urljoin(url, raw.getheader("Location"))
                raw.read()
                conn.close()
                if raw.status == 303:
                    method, body = "GET", None
                continue
            return Response(raw.status, raw.headers, url, raw, conn)
        raise RegistryError(f"too many redirects from {auth_netloc}")

    def base_url(self) -> str:
        """Decide the scheme once: HTTPS, falling back to HTTP for insecure registries."""
        if self.scheme is None:
            with self._lock:
                if self.scheme is None:
                    try:
                        # only "does it speak TLS?": the real requests verify certificates
                        r = self._raw("GET", f"https://{self.host}/v2/", {}, None, probe=True)
                        r.read()
                        r.close()
                        self.scheme = "https"
                    except RegistryUnreachable as exc:
                        if not isinstance(exc.__cause__, (ssl.SSLError, ConnectionResetError, http.client.HTTPException)):
                            raise
                        self.scheme = "http"
        return f"{self.scheme}://{self.host}"

    # -- auth ------------------------------------------------------------------------------
    def _auth_header(self, scope: str) -> str | None:
        with self._lock:
            tok = self._tokens.get(scope)
            if tok and tok[1] > time.time():
                return f"Bearer {tok[0]}"
            if self._basic and self.credentials:
                return "Basic " + base64.b64encode(":".join(self.credentials).encode()).decode()
        return None

    def _answer_challenge(self, resp: Response, scope: str) -> None:
        header = resp.header("WWW-Authenticate")
        if not header:
            raise Unauthorized(f"{self.host}: unauthorized (no challenge offered)")
        scheme, params = parse_challenge(header)
        if scheme == "basic":
            if not self.credentials:
                raise Unauthorized(f"{self.host}: authentication required: run `pystack login {self.login_name}`")
            with self._lock:
                self._basic = True
            return
        if scheme != "bearer" or "realm" not in params:
            raise Unauthorized(f"{self.host}: unsupported auth challenge {header!r}")
        token, expires = self.fetch_token(params, scope)
        with self._lock:
            self._tokens[scope] = (token, time.time() + max(expires - 5, 1))

    def fetch_token(self, params: dict[str, str], scope: str) -> tuple[str, int]:
        """GET <realm>?service=..&scope=.. (Basic creds if any) -> (token, expires_in)."""
        query = {}
        if params.get("service"):
            query["service"] = params["service"]
        scopes = [s for s in scope.split(" ") if s] or ([params["scope"]] if params.get("scope") else [])
        realm = params["realm"]
        url = realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(
            list(query.items()) + [("scope", s) for s in scopes])
        headers = {"Accept": "application/json"}
        if self.credentials:
            headers["Authorization"] = "Basic " + base64.b64encode(":".join(self.credentials).encode()).decode()
        realm_host = urllib.parse.urlsplit(url).netloc
        if urllib.parse.urlsplit(url).scheme == "http" and not (self.insecure or self.config.is_insecure(realm_host)):
            raise Unauthorized(f"{self.host}: refusing token realm over plain HTTP: {realm}")
        resp = self._raw("GET", url, headers, None)
        try:
            if resp.status == 401 or resp.status == 403:
                raise Unauthorized(f"{self.host}: unauthorized: incorrect username or password"
                                   if self.credentials else f"{self.host}: token request denied: {resp.error_text()}")
            if resp.status != 200:
                raise Unauthorized(f"{self.host}: token server {realm_host} answered HTTP {resp.status}")
            try:
                body = json.loads(resp.read(1 << 20))
            except ValueError:
                raise Unauthorized(f"{self.host}: token server sent invalid JSON") from None
        finally:
            resp.close()
        token = body.get("token") or body.get("access_token")
        if not token:
            raise Unauthorized(f"{self.host}: token server sent no token")
        return token, int(body.get("expires_in") or 60)

    def request(self, method: str, path_or_url: str, *, scope: str = "", headers: dict[str, str] | None = None,
                body: bytes | BinaryIO | None = None) -> Response:
        """A request with auth: on 401, answer the challenge once and retry."""
        url = path_or_url if "://" in path_or_url else self.base_url() + path_or_url
        retries = 0
        attempt = 0
        while True:
            hdrs = dict(headers or {})
            auth = self._auth_header(scope) if urllib.parse.urlsplit(url).netloc == self.host else None
            if auth:  # credentials go only to the registry's own host (not to upload hosts elsewhere)
                hdrs["Authorization"] = auth
            resp = self._raw(method, url, hdrs, body)
            if resp.status in _RETRY and method in ("GET", "HEAD") and retries < 3:
                # containerd's policy: 408/429 and transient 5xx are retried, with back-off
                retries += 1
                resp.close()
                time.sleep(0.2 * 2 ** retries)
                continue
            if resp.status != 401:
                return resp
            if attempt == 1:
                text = resp.error_text()
                resp.close()
                if self.credentials:
                    raise Unauthorized(f"{self.host}: unauthorized: {text}")
                raise Unauthorized(f"{self.host}: unauthorized: authentication required ({text}; "
                                   f"the repository may not exist, or run `pystack login {self.login_name}`)")
            self._answer_challenge(resp, scope)
            resp.close()
            attempt += 1

    def ping(self) -> None:
        """GET /v2/ with auth: checks credentials for `login`."""
        resp = self.request("GET", "/v2/", scope="")
        try:
            if resp.status != 200:
                raise RegistryError(f"{self.host}: /v2/ answered {resp.error_text()}")
        finally:
            resp.close()

    # -- the API ---------------------------------------------------------------------------
    def get_manifest(self, repo: str, reference: str) -> tuple[bytes, str, str]:
        """(bytes, media type, digest) of a manifest or index; digest verified."""
        resp = self.request("GET", f"/v2/{repo}/manifests/{reference}", scope=f"repository:{repo}:pull",
                            headers={"Accept": mt.ACCEPT})
        try:
            if resp.status == 404:
                raise ImageNotFound(f"manifest for {self.host}/{repo}:{reference} not found: manifest unknown"
                                    if not reference.startswith("sha256:") else
                                    f"manifest {self.host}/{repo}@{reference} not found")
            if resp.status != 200:
                raise RegistryError(f"{self.host}/{repo}:{reference}: {resp.error_text()}")
            length = int(resp.header("Content-Length") or 0)
            if length > mt.MAX_MANIFEST:
                raise RegistryError(f"{self.host}/{repo}:{reference}: manifest too large ({length} bytes)")
            data = resp.read(mt.MAX_MANIFEST + 1)
        finally:
            resp.close()
        if len(data) > mt.MAX_MANIFEST:
            raise RegistryError(f"{self.host}/{repo}:{reference}: manifest too large")
        digest = mt.digest_of(data)
        if reference.startswith("sha256:") and digest != reference:
            raise DigestMismatch(f"manifest digest mismatch for {repo}@{reference}: got {digest}")
        header_digest = resp.header("Docker-Content-Digest")
        if header_digest and header_digest.startswith("sha256:") and header_digest != digest:
            raise DigestMismatch(f"manifest digest mismatch for {repo}:{reference}: registry says "
                                 f"{header_digest}, content is {digest}")
        try:
            doc = json.loads(data)
        except ValueError:
            raise RegistryError(f"{repo}:{reference}: manifest is not JSON") from None
        ctype = (resp.header("Content-Type") or "").split(";")[0].strip()
        media = mt.media_type_of(doc, ctype if ctype in mt.INDEX_TYPES + mt.MANIFEST_TYPES else None)
        if doc.get("mediaType") and ctype in mt.INDEX_TYPES + mt.MANIFEST_TYPES and doc["mediaType"] != ctype:
            raise RegistryError(f"{repo}:{reference}: manifest mediaType {doc['mediaType']} differs from "
                                f"Content-Type {ctype}")
        return data, media, digest

    def get_blob(self, repo: str, digest: str, offset: int = 0) -> Response:
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        resp = self.request("GET", f"/v2/{repo}/blobs/{digest}", scope=f"repository:{repo}:pull", headers=headers)
        if resp.status == 404:
            resp.close()
            raise ImageNotFound(f"blob {digest} not found in {self.host}/{repo}")
        if resp.status not in (200, 206):
            text = resp.error_text()
            resp.close()
            raise RegistryError(f"{self.host}/{repo}: blob {digest}: {text}")
        return resp

    def blob_exists(self, repo: str, digest: str, scope: str) -> bool:
        resp = self.request("HEAD", f"/v2/{repo}/blobs/{digest}", scope=scope)
        resp.close()
        if resp.status in (200, 404):
            return resp.status == 200
        raise RegistryError(f"{self.host}/{repo}: HEAD blob {digest}: HTTP {resp.status}")


def socket_error_types() -> tuple[type[BaseException], ...]:
    """Errors meaning the connection broke mid-body (a resume is worth trying)."""
    return (http.client.IncompleteRead, ConnectionError, socket.timeout, http.client.HTTPException, OSError)
