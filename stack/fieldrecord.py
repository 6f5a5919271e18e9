"""A plain-value base class for the loader's and the Compose front's small records.

The command-line hot path (``pystack up/ps/down``) avoids :mod:`dataclasses`, which imports
:mod:`inspect` and builds each class with ``exec`` (~15 ms per process on a slow VM). A class
lists its attributes in ``_fields`` and writes its own ``__init__`` (defaults spelled out);
this base gives it the ``__repr__`` and ``__eq__`` a dataclass would have.
"""
from __future__ import annotations


class FieldRecord:
    """``__repr__`` and ``__eq__`` over the attributes named in ``_fields``."""

    __slots__ = ()  # a subclass may keep to its own __slots__ (GlobalOptions does)
    _fields: tuple[str, ...] = ()
    __hash__ = None  # mutable, compared by value: unhashable, as a dataclass(eq=True)

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={getattr(self, k)!r}" for k in self._fields)
        return f"{type(self).__name__}({inner})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, k) == getattr(other, k) for k in self._fields)
