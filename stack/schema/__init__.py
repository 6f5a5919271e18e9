"""The compose-spec JSON Schema, and a small compiled checker for its happy path.

Why a checker of our own: importing ``jsonschema`` costs ~0.15 s, three times what the
whole ``docker-compose config`` run takes. Nearly every file is valid, so the question
"is it valid?" is answered here by closures compiled once from the schema, for exactly
the keywords the compose-spec uses (draft-07 semantics, as jsonschema implements them).
Only when a file is *not* valid does :mod:`pystack.stack.validate` import jsonschema to
find and word the error. tests/stack/test_validate.py keeps the two in agreement.
"""
from __future__ import annotations

import json
import math
import re
from functools import lru_cache
import os
from collections.abc import Callable
TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs every command ~4 ms to import: annotations only
    from typing import Any

SCHEMA_PATH = os.path.join(os.path.dirname(__file__), "compose-spec.json")

Check = Callable[["Any"], bool]


# Where Docker Compose v2.40.3 accepts duplicates although the schema says
# ``uniqueItems``: compose-go de-duplicates (or turns into a mapping) these lists before it
# validates, so ``cap_add: [A, A]`` passes and prints once, while ``volumes_from: [b, b]``
# or ``depends_on: [b, b]`` are rejected. Each entry was checked against the binary.
_DEDUPLICATED = (
    "/definitions/service/properties/cap_add",
    "/definitions/service/properties/cap_drop",
    "/definitions/service/properties/dns_opt",
    "/definitions/service/properties/expose",
    "/definitions/service/properties/links",
    "/definitions/service/properties/ports",
    "/definitions/service/properties/volumes",
    "/definitions/list_or_dict/oneOf/1",  # environment, labels... become mappings
)
# $refs to list_of_strings (unique) that compose-go de-duplicates: made non-unique
_DEDUPLICATED_REFS = (
    "/definitions/service/properties/profiles",
    "/definitions/string_or_list/oneOf/1",  # dns, dns_search, env_file, tmpfs...
    "/definitions/service/properties/networks/oneOf/1/patternProperties/"
    "^[a-zA-Z0-9._-]+$/oneOf/0/properties/aliases",
    "/definitions/service/properties/networks/oneOf/1/patternProperties/"
    "^[a-zA-Z0-9._-]+$/oneOf/0/properties/link_local_ips",
)


@lru_cache(maxsize=1)
def load_schema() -> dict:
    """The compose-spec schema as a dict (read once per process), adjusted to what
    Docker Compose enforces: see ``_DEDUPLICATED``."""
    with open(SCHEMA_PATH, encoding="utf-8") as fh:
        schema = json.load(fh)
    for pointer in _DEDUPLICATED:
        _node(schema, pointer).pop("uniqueItems", None)
    plain_list = {k: v for k, v in schema["definitions"]["list_of_strings"].items()
                  if k != "uniqueItems"}
    for pointer in _DEDUPLICATED_REFS:
        node = _node(schema, pointer)
        node.pop("$ref")
        node.update(plain_list)
    return schema


def _node(schema: dict, pointer: str) -> dict:
    """The schema object at a JSON pointer (``/definitions/...``; no key here holds "/")."""
    node: Any = schema
    for part in pointer.strip("/").split("/"):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def _equal(a: Any, b: Any) -> bool:
    """JSON equality as jsonschema defines it: ``true`` is not ``1``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if _is_number(a) or _is_number(b):
        return _is_number(a) and _is_number(b) and a == b
    return type(a) is type(b) and a == b


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_integer(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, int):
        return True
    return isinstance(v, float) and math.isfinite(v) and v.is_integer()


TYPE_CHECKS: dict[str, Check] = {  # JSON Schema type name -> test, as jsonschema
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "number": _is_number,
    "integer": _is_integer,
}


class _Compiler:
    """Turns schema nodes into ``instance -> bool`` closures; ``$ref``s are resolved lazily."""

    def __init__(self, root: dict) -> None:
        self.root = root
        self.refs: dict[str, Check] = {}

    def ref(self, pointer: str) -> Check:
        if pointer not in self.refs:
            node: Any = self.root
            for part in pointer.lstrip("#/").split("/"):
                if part:
                    node = node[part.replace("~1", "/").replace("~0", "~")]
            slot: list[Check] = []
            self.refs[pointer] = lambda v: slot[0](v)  # placeholder for recursion
            slot.append(self.compile(node))
            self.refs[pointer] = slot[0]
        target = self.refs[pointer]
        return target

    def compile(self, node: Any) -> Check:  # noqa: C901 - one branch per keyword
        if node is True or node == {}:
            return lambda v: True
        if node is False:
            return lambda v: False
        if "$ref" in node:  # draft-07: siblings of $ref are ignored
            pointer = node["$ref"]
            return lambda v: self.ref(pointer)(v)
        checks: list[Check] = []
        if "type" in node:
            names = node["type"] if isinstance(node["type"], list) else [node["type"]]
            tests = [TYPE_CHECKS[n] for n in names]
            checks.append(lambda v: any(t(v) for t in tests))
        if "enum" in node:
            options = node["enum"]
            checks.append(lambda v: any(_equal(v, o) for o in options))
        if "pattern" in node:
            rx = re.compile(node["pattern"])
            checks.append(lambda v: not isinstance(v, str) or rx.search(v) is not None)
        if "minimum" in node:
            lo = node["minimum"]
            checks.append(lambda v: not _is_number(v) or v >= lo)
        if "maximum" in node:
            hi = node["maximum"]
            checks.append(lambda v: not _is_number(v) or v <= hi)
        if "required" in node:
            req = list(node["required"])
            checks.append(lambda v: not isinstance(v, dict) or all(k in v for k in req))
        if {"properties", "patternProperties", "additionalProperties"} & node.keys():
            checks.append(self._object(node))
        if "items" in node:
            item = self.compile(node["items"])
            checks.append(lambda v: not isinstance(v, list) or all(item(x) for x in v))
        if node.get("uniqueItems"):
            checks.append(lambda v: not isinstance(v, list) or _unique(v))
        if "oneOf" in node:
            alts = [self.compile(n) for n in node["oneOf"]]
            checks.append(lambda v: sum(1 for a in alts if a(v)) == 1)
        if "anyOf" in node:
            alts_any = [self.compile(n) for n in node["anyOf"]]
            checks.append(lambda v: any(a(v) for a in alts_any))
        if len(checks) == 1:
            return checks[0]
        return lambda v: all(c(v) for c in checks)

    def _object(self, node: dict) -> Check:
        props = {k: self.compile(s) for k, s in node.get("properties", {}).items()}
        patterns = [(re.compile(p), self.compile(s))
                    for p, s in node.get("patternProperties", {}).items()]
        extra_node = node.get("additionalProperties", True)
        extra: Check | None = None if extra_node is True else self.compile(extra_node)

        def check(v: Any) -> bool:
            if not isinstance(v, dict):
                return True
            for key, value in v.items():
                skey = key if isinstance(key, str) else str(key)
                matched = False
                sub = props.get(skey)
                if sub is not None:
                    matched = True
                    if not sub(value):
                        return False
                for rx, sub_p in patterns:
                    if rx.search(skey):
                        matched = True
                        if not sub_p(value):
                            return False
                if not matched and extra is not None and not extra(value):
                    return False
            return True

        return check


def _unique(items: list) -> bool:
    for i, a in enumerate(items):
        for b in items[i + 1:]:
            if _equal(a, b):
                return False
    return True


@lru_cache(maxsize=1)
def compiled_checker() -> Check:
    """``instance -> bool``: whether a whole compose file satisfies the schema."""
    root = load_schema()
    return _Compiler(root).compile(root)


def subschema_checker(node: Any) -> Check:
    """``instance -> bool`` for a node of the schema (its ``$ref``s resolved in the root)."""
    return _Compiler(load_schema()).compile(node)


def is_valid(instance: Any) -> bool:
    """True when ``instance`` (one parsed, interpolated compose file) satisfies the schema."""
    return compiled_checker()(instance)
