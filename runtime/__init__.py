"""pystack.runtime — see DESIGN.md and docs/contracts.md.

``Runtime`` is imported lazily so that ``import pystack.runtime.<module>`` (the fork
server, the CLI, the image store) pays only for what it uses.
"""
from __future__ import annotations

__all__ = ["Runtime"]


def __getattr__(name: str) -> object:
    if name == "Runtime":
        from pystack.runtime.container import Runtime
        return Runtime
    raise AttributeError(f"module 'pystack.runtime' has no attribute {name!r}")
