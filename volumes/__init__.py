"""pystack.volumes — named volumes, bind/tmpfs mounts, secrets and configs (see docs/contracts.md).

Names are imported lazily so that ``import pystack.volumes.store`` (the CLI) pays for
nothing else.
"""
from __future__ import annotations

from typing import Any

_EXPORTS = {
    "VolumeStore": "pystack.volumes.store",
    "VolumeRecord": "pystack.volumes.store",
    "plan_mounts": "pystack.volumes.planner",
    "MountPlan": "pystack.volumes.planner",
    "SecretFiles": "pystack.volumes.secrets",
    "SecretFile": "pystack.volumes.secrets",
    "cleanup_pins": "pystack.volumes.pins",
    "UnsafePath": "pystack.volumes.safepath",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'pystack.volumes' has no attribute {name!r}")
