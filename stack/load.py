"""The whole pipeline: files on disk -> checked canonical dict -> :class:`Project`.

``load_checked(options)`` is what ``pystack config`` needs (a dict, no pydantic);
``load_project(options)`` adds the pydantic model for the commands that act on a
project. Both run part A's loader (stack.pipeline: discovery, YAML, interpolation,
per-file schema validation, merge, extends, include, normalization, profiles) and then
the semantic checks of :func:`stack.validate.check_config`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .options import LoadOptions

if TYPE_CHECKING:  # pragma: no cover
    from .model import Project

__all__ = ["load_checked", "load_project", "LoadOptions"]


def load_checked(options: LoadOptions, *, consistency: bool = True) -> Any:
    """Part A's ``load_config`` + semantic checks; returns its ``LoadedConfig``.

    ``consistency=False`` skips the semantic checks (``config --no-consistency``).
    Checks need the normalized form, so they are skipped with ``normalize=False`` too,
    as Compose does.
    """
    from .pipeline import load_config

    loaded = load_config(options)
    if consistency and options.normalize and options.interpolate:
        from .validate import check_config

        check_config(loaded.config, getattr(loaded, "locators", None))
    return loaded


def load_project(options: LoadOptions) -> "Project":
    """Load, check and model a project: what ``up``, ``down`` and friends start from."""
    from .model import Project

    loaded = load_checked(options)
    return Project.from_config(
        loaded.config,
        working_dir=str(getattr(loaded, "working_dir", "") or ""),
        environment=dict(getattr(loaded, "environment", None) or {}),
        config_files=[str(f) for f in getattr(loaded, "config_files", None) or []],
    )
