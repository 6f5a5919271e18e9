"""pystack.stack — the Compose model: load, interpolate, merge, validate, normalize, graph.

See DESIGN.md and docs/contracts.md. The public names below are re-exported lazily
(PEP 562 ``__getattr__``): ``import pystack.stack`` costs nothing, and a name pulls in
only its own module (pydantic for ``Project``, networkx for ``build_graph``...).
"""
from __future__ import annotations

import sys
TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs every command ~4 ms to import: annotations only
    from typing import Any

_EXPORTS: dict[str, str] = {
    "LoadOptions": "options",
    "load_config": "pipeline",
    "load_project": "load",
    "load_checked": "load",
    "validate_file": "validate",
    "check_config": "validate",
    "parse_duration": "validate",
    "parse_bytes": "validate",
    "Project": "model",
    "Service": "model",
    "build_graph": "graph",
    "start_levels": "graph",
    "stop_levels": "graph",
    "subgraph": "graph",
    "service_hash": "hash",
    "ComposeError": "errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    full = f"{__name__}.{module}"
    __import__(full)  # importlib itself (and the warnings module it imports) is not needed
    value = getattr(sys.modules[full], name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
