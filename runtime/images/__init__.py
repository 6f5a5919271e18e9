"""The image store: content-addressed blobs, safely unpacked layers, archives, registries.

``ImageStore`` (store.py) is the one entry point other areas use; see docs/contracts.md.
Submodules are imported lazily so that ``import pystack.runtime.images`` stays cheap.
"""
from __future__ import annotations

TYPE_CHECKING = False  # not typing's: the unpack helpers start without importing typing
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any

    from .store import Image, ImageStore

__all__ = ["Image", "ImageStore"]


def __getattr__(name: str) -> Any:
    if name in ("Image", "ImageStore"):
        from . import store
        return getattr(store, name)
    raise AttributeError(name)
