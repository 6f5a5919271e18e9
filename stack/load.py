"""The whole pipeline: files on disk -> checked canonical dict -> :class:`Project`.

``load_checked(options)`` is what ``pystack config`` needs (a dict, no pydantic);
``load_project(options)`` adds the pydantic model for the commands that act on a
project. Both run part A's loader (stack.pipeline: discovery, YAML, interpolation,
per-file schema validation, merge, extends, include, normalization, profiles, and
the semantic checks of :func:`stack.validate.check_config` at the end).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .options import LoadOptions

if TYPE_CHECKING:  # pragma: no cover
    from .model import Project

__all__ = ["load_checked", "load_project", "LoadOptions"]


def load_checked(options: LoadOptions) -> Any:
    """Part A's ``load_config``, which runs :func:`stack.validate.validate_file` on every
    file and :func:`stack.validate.check_config` on the normalized result (here too on
    the unnormalized one, as Compose does); returns its ``LoadedConfig`` (``config``: what
    ``config`` prints, ``$`` doubled; ``model``: the real values)."""
    from .pipeline import load_config

    loaded = load_config(options)
    if not options.normalize and options.interpolate:
        # the loader checks only the normalized form; Compose checks consistency with
        # --no-normalize too (a service on the "default" network nobody declared...);
        # without interpolation it prints its raw model and checks nothing
        from .validate import check_config

        check_config(getattr(loaded, "model", loaded.config), loaded.locators, normalized=False,
                     all_services=getattr(loaded, "all_services", None))
    return loaded


def load_project(options: LoadOptions) -> "Project":
    """Load, check and model a project: what ``up``, ``down`` and friends start from.
    The model holds the real values (single ``$``), not the escaped printout."""
    from .model import Project

    loaded = load_checked(options)
    return Project.from_config(
        getattr(loaded, "model", None) or loaded.config,
        working_dir=str(loaded.working_dir or ""),
        environment=dict(loaded.environment or {}),
        config_files=[str(f) for f in loaded.config_files or []],
    )
