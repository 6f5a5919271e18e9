"""The one exception family that the CLI turns into a single line and a non-zero exit.

Every user mistake (bad YAML, unknown service, port clash, missing image...) raises a
subclass of :class:`UserError`; anything else is a bug and may show a traceback.
"""
from __future__ import annotations


class UserError(Exception):
    """A mistake the user can fix; printed as one line, never with a traceback."""

    exit_code: int = 1

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class NotFound(UserError):
    """A named thing (image, container, network, volume, service) does not exist."""


class Conflict(UserError):
    """The request clashes with what exists (name taken, port in use, volume in use)."""


class EngineUnavailable(UserError):
    """The engine cannot be reached or started; the message says what is missing."""
