"""YAML parsing that keeps where each key came from, with the YAML rules Compose uses.

Docker Compose reads YAML with go-yaml v3, which follows YAML 1.2 scalars: ``yes``/``on``
stay strings and ``22:22`` is not a base-60 number (PyYAML's YAML 1.1 would turn a port
mapping like that into 1342). So the C parser of PyYAML builds the node tree (fast) and
:mod:`.yamlnodes` turns nodes into plain Python values with go-yaml's resolution rules,
recording a :class:`Mark` per key path so that any later pass can name file:line:col.

The Compose tags ``!reset`` and ``!override`` are not kept in the data: their key paths
are recorded on the :class:`Locator` (``reset_paths``/``override_paths``) and merge.py
applies them; a ``!reset`` value is dropped from the file's own data, as compose-go does.

A parse is a pure function of the text (and the file name the marks carry), so the
values and positions of a file are cached on disk (:mod:`.diskcache`, area ``yaml``,
one entry per file path): a command that reads an unchanged file does not import
PyYAML at all (~20 ms of imports). An entry is used only when its text, file name and
code stamp (this package's parser modules, PyYAML's, the interpreter) equal the current
ones; a file that does not parse is never cached, so its error is always fresh.
"""
from __future__ import annotations

import os
import sys
TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs every command ~4 ms to import: annotations only
    from typing import Any

from .errors import ComposeError, KeyPath, Mark

# bump when the cached form or the parse rules change (the modules' stat is in the stamp too)
CACHE_FORMAT = 1


class Locator:
    """Positions of key paths in one file, and the paths tagged ``!reset``/``!override``."""

    __slots__ = ("file", "marks", "reset_paths", "override_paths", "start")

    def __init__(self, file: str) -> None:
        self.file = file
        self.start: tuple[int, int] = (1, 1)  # where the document begins
        self.marks: dict[KeyPath, tuple[int, int]] = {}
        self.reset_paths: list[KeyPath] = []
        self.override_paths: list[KeyPath] = []

    def mark(self, path: KeyPath | list) -> Mark | None:
        """Mark of ``path`` or of its nearest ancestor that the file spells out."""
        path = tuple(path)
        while True:
            pos = self.marks.get(path)
            if pos is not None:
                return Mark(self.file, pos[0], pos[1])
            if not path:
                return None
            path = path[:-1]

    def error(self, message: str, path: KeyPath | list) -> ComposeError:
        """A ComposeError for ``path`` positioned in this file."""
        return ComposeError(message, path=tuple(path), mark=self.mark(path), file=self.file)


def _stat(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def _yaml_dir() -> str | None:
    """PyYAML's package directory, found without importing it."""
    yaml = sys.modules.get("yaml")
    if yaml is not None and getattr(yaml, "__file__", None):
        return os.path.dirname(yaml.__file__)
    for entry in sys.path:
        candidate = os.path.join(entry or ".", "yaml", "__init__.py")
        if os.path.isfile(candidate):
            return os.path.dirname(candidate)
    return None


def _stamp() -> tuple:
    """What a cached parse depends on besides the text: the parser code and interpreter."""
    here = os.path.dirname(os.path.abspath(__file__))
    yaml_dir = _yaml_dir()
    return (CACHE_FORMAT, sys.hexversion, _stat(os.path.join(here, "yamlpos.py")),
            _stat(os.path.join(here, "yamlnodes.py")), yaml_dir,
            _stat(yaml_dir) if yaml_dir else None)


def _entry_name(filename: str) -> str:
    """A file name for the entry of ``filename``: FNV-1a (64 bits) of its absolute path
    (a collision only costs a miss: an entry holds its file name and text)."""
    h = 0xCBF29CE484222325
    for byte in os.path.abspath(filename).encode("utf-8", "surrogatepass"):
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def _from_cache(text: str, filename: str) -> tuple[str, tuple, list[tuple[Any, Locator]] | None]:
    """The entry name, the current stamp and the cached documents (``None``: a miss)."""
    from . import diskcache

    name = _entry_name(filename)
    stamp = _stamp()
    entry = diskcache.read("yaml", name)
    try:
        fmt, entry_stamp, entry_file, entry_text, docs = entry  # type: ignore[misc]
        if entry_stamp != stamp or entry_file != filename or entry_text != text:
            return name, stamp, None
        out = []
        for data, start, marks, resets, overrides in docs:
            loc = Locator(filename)
            loc.start = start
            loc.marks = marks
            loc.reset_paths = resets
            loc.override_paths = overrides
            out.append((data, loc))
        return name, stamp, out
    except (TypeError, ValueError):
        return name, stamp, None


def parse_yaml_documents(text: str, filename: str) -> list[tuple[Any, Locator]]:
    """Every document of a YAML stream, each with its own Locator."""
    cacheable = filename != "-" and len(text) < (1 << 22)
    if cacheable:
        name, stamp, docs = _from_cache(text, filename)
        if docs is not None:
            return docs
    from .yamlnodes import parse

    docs = parse(text, filename)
    if cacheable:
        from . import diskcache

        # marshal copies: the callers may change the values they get back
        diskcache.write("yaml", name, (CACHE_FORMAT, stamp, filename, text,
                                       [(data, loc.start, loc.marks, loc.reset_paths,
                                         loc.override_paths) for data, loc in docs]))
    return docs


def parse_yaml(text: str, filename: str) -> tuple[Any, Locator]:
    """The first document of ``text`` (``None`` for an empty file) and its Locator."""
    docs = parse_yaml_documents(text, filename)
    if not docs:
        return None, Locator(filename)
    return docs[0]
