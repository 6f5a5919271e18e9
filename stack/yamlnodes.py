"""The YAML parse proper: PyYAML's C parser builds the node tree, :class:`_Builder` turns
it into plain values with go-yaml v3's scalar rules and records a position per key path.

Imported only when :mod:`.yamlpos` has no cached parse of a file (``import yaml`` alone
costs ~20 ms: PyYAML's package imports its pure-Python reader, resolver, emitter...).
"""
from __future__ import annotations

import math
import re
TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs every command ~4 ms to import: annotations only
    from typing import Any

import yaml
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

from .errors import ComposeError, KeyPath, Mark
from .yamlpos import Locator

try:  # the C parser is much faster; fall back to the pure Python one when absent
    from yaml._yaml import CParser as _Parser  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml.composer import Composer
    from yaml.parser import Parser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _Parser(Reader, Scanner, Parser, Composer):  # type: ignore[no-redef]
        """PyYAML's pure-Python reader, scanner, parser and composer."""

        def __init__(self, stream: str) -> None:
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            Parser.__init__(self)
            Composer.__init__(self)

STR = "tag:yaml.org,2002:str"
SEQ = "tag:yaml.org,2002:seq"
MAP = "tag:yaml.org,2002:map"
PLAIN = "!plain"  # internal marker: an untagged plain scalar, resolved by _plain()
RESET = "!reset"
OVERRIDE = "!override"

_FLOAT_RE = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_NULLS = {"", "~", "null", "Null", "NULL"}
_TRUE = {"true", "True", "TRUE"}
_FALSE = {"false", "False", "FALSE"}
_INF = {".inf": math.inf, ".Inf": math.inf, ".INF": math.inf, "+.inf": math.inf,
        "+.Inf": math.inf, "+.INF": math.inf, "-.inf": -math.inf, "-.Inf": -math.inf,
        "-.INF": -math.inf}
_NAN = {".nan", ".NaN", ".NAN"}


class _Loader(_Parser):
    """PyYAML's parser and composer only; resolution is done by :func:`_plain`."""

    def __init__(self, stream: str) -> None:
        _Parser.__init__(self, stream)

    def resolve(self, kind: type, value: Any, implicit: tuple[bool, bool]) -> str:
        """Tag for an untagged node: plain scalars are resolved later, go-yaml style."""
        if kind is ScalarNode:
            return PLAIN if implicit[0] else STR
        return SEQ if kind is SequenceNode else MAP

    def descend_resolver(self, *args: Any) -> None:  # pure-Python composer hooks
        pass

    def ascend_resolver(self, *args: Any) -> None:
        pass


def _go_int(text: str) -> int | None:
    """``strconv.ParseInt(text, 0, 64)``: sign, 0x/0o/0b prefixes, a leading 0 means octal."""
    s = text
    sign = 1
    if s and s[0] in "+-":
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    if not s or not (s[0].isdigit()):
        return None
    try:
        low = s.lower()
        if low.startswith(("0x", "0o", "0b")):
            value = int(s, 0)
        elif len(s) > 1 and s[0] == "0":
            if "_" in s:
                return None
            value = int(s, 8)
        else:
            if "_" in s and (s.startswith("_") or s.endswith("_") or "__" in s):
                return None
            value = int(s, 10)
    except ValueError:
        return None
    value *= sign
    if not -(2 ** 63) <= value < 2 ** 64:
        return None
    return value


def _plain(value: str) -> Any:
    """Resolve an untagged plain scalar as go-yaml v3 does when decoding into ``any``."""
    if value in _NULLS:
        return None
    first = value[0]
    if first in "tTfF":
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        return value
    if first in "0123456789+-.":
        if value in _INF:
            return _INF[value]
        if value in _NAN:
            return math.nan
        number = _go_int(value)
        if number is not None:
            return number
        if _FLOAT_RE.match(value):
            return float(value)
    return value


def _tagged_scalar(node: ScalarNode, where: Mark) -> Any:
    """An explicitly tagged scalar (``!!str 12``, ``!!int "3"``...)."""
    tag = node.tag
    value = node.value
    if tag == STR or tag == "!":
        return value
    if tag in (RESET, OVERRIDE) or tag.startswith("!") and not tag.startswith("!!"):
        return _plain(value) if node.style is None else value
    kind = tag.rsplit(":", 1)[-1]
    try:
        if kind == "int":
            number = _go_int(value)
            if number is None:
                raise ValueError(value)
            return number
        if kind == "float":
            return float(value)
        if kind == "bool":
            if value in _TRUE:
                return True
            if value in _FALSE:
                return False
            raise ValueError(value)
        if kind == "null":
            return None
        if kind in ("binary", "timestamp"):
            return value
    except ValueError:
        raise ComposeError(f"cannot decode {value!r} as !!{kind}", mark=where) from None
    return value


class _Builder:
    """Turns a composed node tree into plain values, filling a Locator on the way."""

    def __init__(self, locator: Locator) -> None:
        self.loc = locator
        self.marks = locator.marks
        self.depth = 0

    def _mark(self, node: Any) -> Mark:
        return Mark(self.loc.file, node.start_mark.line + 1, node.start_mark.column + 1)

    def build(self, node: Any, path: KeyPath) -> Any:
        tag = node.tag
        if tag in (RESET, OVERRIDE):
            (self.loc.reset_paths if tag == RESET else self.loc.override_paths).append(path)
        if isinstance(node, ScalarNode):
            if tag == PLAIN:
                return _plain(node.value)
            if tag == STR:
                return node.value
            return _tagged_scalar(node, self._mark(node))
        self.depth += 1
        if self.depth > 200:
            raise ComposeError("document nests too deeply", mark=self._mark(node))
        try:
            if isinstance(node, SequenceNode):
                out: list[Any] = []
                for item in node.value:
                    if item.tag == RESET:
                        continue  # a reset item is dropped from the file's own data
                    here = path + (len(out),)
                    self.marks.setdefault(here, (item.start_mark.line + 1, item.start_mark.column + 1))
                    out.append(self.build(item, here))
                return out
            return self._mapping(node, path)
        finally:
            self.depth -= 1

    def _key(self, knode: Any, path: KeyPath, merged: bool = False) -> str:
        """A mapping key as text. Compose (go-yaml into ``map[string]any``) refuses a key
        that resolves to another type (``1:``, ``true:``, ``~:``), except the keys a
        ``<<`` merge brings in, which it turns into text."""
        if not isinstance(knode, ScalarNode):
            raise ComposeError("a mapping key must be a scalar", mark=self._mark(knode))
        if knode.tag == STR:
            return knode.value
        value = _plain(knode.value) if knode.tag == PLAIN else _tagged_scalar(knode, self._mark(knode))
        if not merged and not isinstance(value, str):
            shown = "null" if value is None else knode.value
            raise ComposeError(f'non-string key {shown} (quote it: "{knode.value}")',
                               path=path, mark=self._mark(knode))
        if value is None:
            return "null"
        if value is True or value is False:
            return "true" if value else "false"
        return str(value)

    def _mapping(self, node: MappingNode, path: KeyPath, merge_source: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {}
        merged: dict[str, Any] = {}
        for knode, vnode in node.value:
            if knode.tag in (PLAIN, "tag:yaml.org,2002:merge") and knode.value == "<<" and isinstance(knode, ScalarNode):
                sources = vnode.value if isinstance(vnode, SequenceNode) else [vnode]
                for src in sources:
                    if not isinstance(src, MappingNode):
                        raise ComposeError("map merge requires map or sequence of maps as the value",
                                           mark=self._mark(src))
                    value = self._mapping(src, path, merge_source=True)
                    for k, v in value.items():
                        merged.setdefault(k, v)  # earlier sources win
                continue
            key = self._key(knode, path, merge_source)
            if key in out:
                first = self.marks.get(path + (key,))
                where = f" (first defined at line {first[0]})" if first else ""
                raise ComposeError(f"mapping key {key!r} already defined{where}",
                                   path=path + (key,), mark=self._mark(knode))
            here = path + (key,)
            self.marks[here] = (knode.start_mark.line + 1, knode.start_mark.column + 1)
            if vnode.tag == RESET:
                self.loc.reset_paths.append(here)
                out[key] = _DROP
                continue
            out[key] = self.build(vnode, here)
        for k, v in merged.items():
            # a key tagged !reset here is gone from this file's mapping, so a << merge
            # fills it in (compose-go drops the node before go-yaml resolves <<)
            if k not in out or out[k] is _DROP:
                out[k] = v
        return {k: v for k, v in out.items() if v is not _DROP}


_DROP = object()


def parse(text: str, filename: str) -> list[tuple[Any, Locator]]:
    """Every document of a YAML stream, each with its own Locator (no cache)."""
    try:
        loader = _Loader(text)
    except yaml.YAMLError as exc:  # pragma: no cover - reader errors
        raise _yaml_error(exc, filename) from None
    docs: list[tuple[Any, Locator]] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            locator = Locator(filename)
            if node is not None:
                locator.start = (node.start_mark.line + 1, node.start_mark.column + 1)
            data = _Builder(locator).build(node, ()) if node is not None else None
            docs.append((data, locator))
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, filename) from None
    except RecursionError:
        raise ComposeError("document nests too deeply", file=filename) from None
    finally:
        try:
            loader.dispose()
        except Exception:  # pragma: no cover
            pass
    return docs


def _yaml_error(exc: Exception, filename: str) -> ComposeError:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    message = f"{context}, {problem}" if context else str(problem)
    where = Mark(filename, mark.line + 1, mark.column + 1) if mark is not None else None
    return ComposeError(f"invalid YAML: {message}", mark=where, file=filename)
