"""Errors of the image store: each is a UserError, printed as one line by the CLI.

Why a family: callers (the CLI, the engine) catch ``UserError``; tests can be precise
about which failure happened (a hostile layer is not the same as a bad password).
"""
from __future__ import annotations

from pystack.errors import NotFound, UserError


class ImageNotFound(NotFound):
    """No image for this reference or id in the store (or no such tag in a registry)."""


class LayerError(UserError):
    """A layer could not be unpacked safely: hostile entry, corrupt stream, limit hit."""


class DigestMismatch(UserError):
    """Content does not match the digest (or size) that names it."""


class RegistryError(UserError):
    """A registry refused a request or answered something unusable."""


class Unauthorized(RegistryError):
    """The registry wants credentials we do not have, or refused the ones we sent."""


class RegistryUnreachable(RegistryError):
    """No connection to the registry (DNS, refused, TLS)."""


class NoMatchingPlatform(RegistryError):
    """An image index has no manifest for the requested platform."""


class ArchiveError(UserError):
    """An image archive (docker save / OCI) is malformed."""
