"""Docker-style image references: ``redis`` -> ``docker.io/library/redis:latest``.

Follows distribution/reference's normalisation (``ParseNormalizedNamed``): a first
component with a ``.`` or ``:`` or equal to ``localhost`` is a registry host, otherwise
the image lives on Docker Hub, and single-component Hub names get ``library/``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from pystack.errors import UserError

DEFAULT_REGISTRY = "docker.io"
HUB_API_HOST = "registry-1.docker.io"
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_NAME_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$|^sha512:[a-f0-9]{128}$")
_HOST_RE = re.compile(r"^(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:]+\])(?::[0-9]+)?$")


@dataclass(frozen=True)
class Reference:
    """A parsed reference; ``tag`` or ``digest`` (or both) may be set."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """Fully qualified repository name, e.g. ``docker.io/library/redis``."""
        return f"{self.registry}/{self.repository}"

    @property
    def familiar_name(self) -> str:
        """The name as the docker CLI shows it (``redis``, ``user/app``, ``host:5000/x``)."""
        if self.registry == DEFAULT_REGISTRY:
            return self.repository.removeprefix("library/")
        return self.name

    @property
    def api_host(self) -> str:
        """The host serving the distribution API (Docker Hub's differs from its name)."""
        return HUB_API_HOST if self.registry == DEFAULT_REGISTRY else self.registry

    def with_tag(self, tag: str | None) -> "Reference":
        return Reference(self.registry, self.repository, tag, None)

    def with_digest(self, digest: str) -> "Reference":
        return Reference(self.registry, self.repository, None, digest)

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out

    def familiar(self) -> str:
        """``str()`` in the docker CLI's short form."""
        out = self.familiar_name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def is_digest(text: str) -> bool:
    return bool(_DIGEST_RE.match(text))


def parse(text: str, *, default_tag: str | None = "latest") -> Reference:
    """Parse and normalise; a malformed reference is a UserError naming it."""
    original = text
    if not text or text != text.strip():
        raise UserError(f"invalid reference format: {original!r}")
    digest = None
    if "@" in text:
        text, digest = text.split("@", 1)
        if not is_digest(digest):
            raise UserError(f"invalid reference format: {original!r}: bad digest")
    tag = None
    slash = text.rfind("/")
    colon = text.rfind(":")
    if colon > slash:
        text, tag = text[:colon], text[colon + 1:]
        if not _TAG_RE.match(tag):
            raise UserError(f"invalid reference format: {original!r}: bad tag")
    parts = text.split("/", 1)
    if len(parts) == 2 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"
                            or parts[0] != parts[0].lower()):
        registry, repo = parts
        if not _HOST_RE.match(registry):
            raise UserError(f"invalid reference format: {original!r}: bad registry host")
    else:
        registry, repo = DEFAULT_REGISTRY, text
    if registry in ("index.docker.io", "registry-1.docker.io"):
        registry = DEFAULT_REGISTRY
    if registry == DEFAULT_REGISTRY and "/" not in repo:
        repo = f"library/{repo}"
    if not _NAME_RE.match(repo):
        if repo.lower() != repo:
            raise UserError(f"invalid reference format: {original!r}: repository name must be lowercase")
        raise UserError(f"invalid reference format: {original!r}")
    if len(registry) + 1 + len(repo) > 255:
        raise UserError(f"invalid reference format: {original!r}: name too long")
    if tag is None and digest is None:
        tag = default_tag
    return Reference(registry, repo, tag, digest)


def registry_key(host: str) -> str:
    """The key credentials for ``host`` use in ~/.docker/config.json (Hub's legacy URL)."""
    if host in (DEFAULT_REGISTRY, HUB_API_HOST, "index.docker.io"):
        return "https://index.docker.io/v1/"
    return host
