"""``json.loads``/``json.dumps`` for the runtime's start path, on the C accelerator alone.

The ``json`` package imports ``re`` (and with it ``enum``, ``functools``, ``collections``:
~10 ms of a one-shot ``pystack-runtime`` run on a slow VM) to compile a few patterns its
pure-Python fallbacks use. Its C parts (``_json.make_scanner``, ``_json.make_encoder``,
``_json.encode_basestring_ascii``) need none of it, and they are what ``json`` itself
runs. Same results as ``json.loads(s)`` / ``json.dumps(obj[, indent, sort_keys])`` with
their other defaults; anything unusual (an error to report, bytes that are not UTF-8,
a type ``json`` would reject) is handed to ``json`` itself, so messages and exception
types stay the same.
"""
from __future__ import annotations

import _json

_WS = " \t\n\r"


class _Ctx:
    # what _json.make_scanner reads from a JSONDecoder (json.loads' defaults)
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo: dict = {}

    @staticmethod
    def parse_constant(name: str) -> float:
        return {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}[name]


_scan = _json.make_scanner(_Ctx())


def loads(s: str | bytes | bytearray):
    """``json.loads(s)``."""
    if isinstance(s, (bytes, bytearray)):
        if s[:3] == b"\xef\xbb\xbf" or (len(s) >= 2 and (not s[0] or not s[1])):
            return _slow_loads(s)  # a BOM or UTF-16/32: json's detect_encoding
        try:
            s = s.decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            return _slow_loads(s)
    elif not isinstance(s, str):
        return _slow_loads(s)
    i = len(s) - len(s.lstrip(_WS))
    try:
        obj, end = _scan(s, i)
    except StopIteration:
        return _slow_loads(s)
    if end != len(s) and s[end:].strip(_WS):
        return _slow_loads(s)
    return obj


def _slow_loads(s):
    import json
    return json.loads(s)


def _default(o):
    raise TypeError(f"Object of type {o.__class__.__name__} is not JSON serializable")


def _encoder(sort_keys: bool, item_sep: str):
    return _json.make_encoder({}, _default, _json.encode_basestring_ascii, None, ": ",
                              item_sep, sort_keys, False, True)


def dumps(obj, *, indent: int | str | None = None, sort_keys: bool = False) -> str:
    """``json.dumps(obj, indent=indent, sort_keys=sort_keys)``."""
    if isinstance(obj, str):
        return _json.encode_basestring_ascii(obj)
    if indent is not None:
        return _pretty(obj, indent if isinstance(indent, str) else " " * indent, sort_keys)
    try:
        return "".join(_encoder(sort_keys, ", ")(obj, 0))
    except (TypeError, ValueError):
        import json  # json's own message (and its checks)
        return json.dumps(obj, sort_keys=sort_keys)


def _pretty(obj, step: str, sort_keys: bool) -> str:
    out: list[str] = []
    scalar = _encoder(sort_keys, ", ")

    def emit(o, level: int) -> None:
        if isinstance(o, dict):
            if not o:
                out.append("{}")
                return
            inner = "\n" + step * (level + 1)
            out.append("{")
            items = sorted(o.items()) if sort_keys else o.items()
            first = True
            for k, v in items:
                if not isinstance(k, str):
                    raise TypeError("key")  # json's rules for keys: let json say
                out.append(inner if first else "," + inner)
                first = False
                out.append(_json.encode_basestring_ascii(k))
                out.append(": ")
                emit(v, level + 1)
            out.append("\n" + step * level + "}")
        elif isinstance(o, (list, tuple)):
            if not o:
                out.append("[]")
                return
            inner = "\n" + step * (level + 1)
            out.append("[")
            for i, v in enumerate(o):
                out.append(inner if i == 0 else "," + inner)
                emit(v, level + 1)
            out.append("\n" + step * level + "]")
        else:
            out.append("".join(scalar(o, 0)) if not isinstance(o, str)
                       else _json.encode_basestring_ascii(o))

    try:
        emit(obj, 0)
    except (TypeError, ValueError, RecursionError):
        import json
        return json.dumps(obj, indent=step, sort_keys=sort_keys)
    return "".join(out)
