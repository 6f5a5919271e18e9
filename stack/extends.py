"""``extends``: a service built on another one, in the same file or in another file.

As compose-go does it: resolved per file before the files are merged; a base service may
itself extend another (chains, cycles reported); a base from another file has its relative
paths resolved against that file's directory; the extending file's ``!reset`` and
``!override`` paths are applied to the copied base before the merge.
"""
from __future__ import annotations

import os
from collections.abc import Callable
TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs every command ~4 ms to import: annotations only
    from typing import Any, Iterable

from .errors import ComposeError, KeyPath
from .merge import apply_resets, deep_copy, merge_values

# (absolute path, base dir for paths inside it) -> (canonical data, reset paths)
OtherFileLoader = Callable[[str], "tuple[dict[str, Any], list[KeyPath]]"]


# (a copied base service, the directory of its file relative to the extending one)
Rebaser = Callable[["dict[str, Any]", str], None]


class _Extender:
    def __init__(self, load_other: OtherFileLoader, error: Callable[[str, KeyPath], ComposeError],
                 rebase: Rebaser | None = None) -> None:
        self.load_other = load_other
        self.error = error
        self.rebase = rebase

    def resolve(self, name: str, services: dict[str, Any], filename: str, base_dir: str,
                resets: list[KeyPath], chain: tuple[tuple[str, str], ...]) -> Any:
        service = services.get(name)
        if service is None:
            return None
        if not isinstance(service, dict):
            raise self.error(f"services.{name} must be a mapping", ("services", name))
        ext = service.get("extends")
        if ext is None:
            return service
        if not isinstance(ext, dict) or not isinstance(ext.get("service"), str):
            raise self.error("extends must name a service", ("services", name, "extends"))
        ref = ext["service"]
        other = ext.get("file")
        post = list(resets)
        ref_services = services
        ref_file, ref_dir = filename, base_dir
        if other:
            ref_file = os.path.normpath(os.path.join(base_dir, os.path.expanduser(other)))
            if not os.path.exists(ref_file):
                raise self.error(f"open {ref_file}: no such file or directory",
                                 ("services", name, "extends", "file"))
            data, other_resets = self.load_other(ref_file)
            ref_services = data.get("services") or {}
            if ref not in ref_services:
                raise self.error(f"cannot extend service {name!r} in {filename}: service {ref!r} "
                                 f"not found in {ref_file}", ("services", name, "extends"))
            post.extend(other_resets)
            ref_dir = os.path.dirname(ref_file)
        elif ref not in services:
            raise self.error(f"cannot extend service {name!r} in {filename}: service {ref!r} not found",
                             ("services", name, "extends"))
        link = (ref_file, ref)
        if link in chain or (ref_file, ref) == (filename, name):
            cycle = " -> ".join(f"{s}" for _, s in chain + ((filename, name), link))
            raise self.error(f"circular reference with extends: {cycle}", ("services", name, "extends"))
        base = self.resolve(ref, ref_services, ref_file, ref_dir, [] if other else resets,
                            chain + ((filename, name),))
        if base is None:
            return service
        source = deep_copy(base)
        if other and self.rebase is not None and isinstance(source, dict):
            # paths left relative (no path resolution) stay relative to the project: a
            # base from another file gets that file's directory in front (compose-go)
            self.rebase(source, os.path.relpath(ref_dir, base_dir))
        wrapper = {"services": {name: source}}
        apply_resets(wrapper, post)
        source = wrapper["services"].get(name, {})
        merged = merge_values(source, service, ("services", "*"))
        merged = dict(merged)
        merged.pop("extends", None)
        services[name] = merged
        return merged


def apply_extends(data: dict[str, Any], filename: str, base_dir: str, resets: Iterable[KeyPath],
                  load_other: OtherFileLoader,
                  error: Callable[[str, KeyPath], ComposeError] | None = None,
                  rebase: Rebaser | None = None) -> None:
    """Resolve every ``extends`` of ``data['services']`` in place.

    ``base_dir`` is the directory a relative ``extends.file`` is resolved against (the
    project directory for top-level files, the file's own directory for extended files).
    """
    services = data.get("services")
    if not isinstance(services, dict):
        return
    err = error or (lambda message, path: ComposeError(message, path=path, file=filename))
    ext = _Extender(load_other, err, rebase)
    reset_list = list(resets)
    for name in list(services):
        services[name] = ext.resolve(name, services, filename, base_dir, reset_list, ())
