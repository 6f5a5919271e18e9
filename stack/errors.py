"""Errors of the stack model, each able to name file:line:column and the key path.

Printed as ``compose.yaml:12:7: services.web.ports[0]: "80:80:80" is not a valid port
mapping``: the position comes from the Locator that the YAML pass records, the path from
the pass that found the mistake.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from pystack.errors import UserError

PathPart = str | int
KeyPath = tuple[PathPart, ...]


@dataclass(frozen=True)
class Mark:
    """Where a node starts in a file (1-based line and column, as editors count)."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


def format_path(path: Iterable[PathPart]) -> str:
    """``("services", "web", "ports", 0)`` -> ``services.web.ports[0]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


class ComposeError(UserError):
    """A mistake in a Compose file or in the options used to load it."""

    def __init__(self, message: str, *, path: KeyPath | None = None, mark: Mark | None = None,
                 file: str | None = None) -> None:
        self.message = message
        self.path = tuple(path) if path else None
        self.mark = mark
        self.file = file if file is not None else (mark.file if mark else None)
        super().__init__(self._render())

    def _render(self) -> str:
        prefix = ""
        if self.mark is not None:
            prefix = f"{self.mark}: "
        elif self.file:
            prefix = f"{self.file}: "
        if self.path:
            prefix += f"{format_path(self.path)}: "
        return prefix + self.message
