"""Errors of the stack model, each able to name file:line:column and the key path.

Printed as ``compose.yaml:12:7: services.web.ports[0]: "80:80:80" is not a valid port
mapping``: the position comes from the Locator that the YAML pass records, the path from
the pass that found the mistake.
"""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs every command ~4 ms to import: annotations only
    from typing import Iterable

from pystack.errors import UserError

PathPart = str | int
KeyPath = tuple[PathPart, ...]


class Mark:
    """Where a node starts in a file (1-based line and column, as editors count).

    Immutable and hashable, compared by value (what a frozen dataclass was; a plain class
    because importing dataclasses costs every command ~10 ms)."""

    __slots__ = ("file", "line", "column")

    def __init__(self, file: str, line: int, column: int) -> None:
        object.__setattr__(self, "file", file)
        object.__setattr__(self, "line", line)
        object.__setattr__(self, "column", column)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r}")

    def __repr__(self) -> str:
        return f"Mark(file={self.file!r}, line={self.line!r}, column={self.column!r})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return (self.file, self.line, self.column) == (other.file, other.line, other.column)  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((self.file, self.line, self.column))

    def __reduce__(self) -> tuple:
        return (Mark, (self.file, self.line, self.column))

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
