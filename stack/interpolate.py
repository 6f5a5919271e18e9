"""``${VAR}`` substitution, as compose-go's ``template`` and ``interpolation`` packages do it.

Values are substituted (never keys); after substitution, strings at the paths where the
compose-spec wants a number or a boolean are cast (``privileged: "${PRIV}"`` must become a
boolean), which is also what rejects ``${UNSET}`` where a number is required. Errors name
the file, line and key path; an unset variable is warned about once and becomes empty.
"""
from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs every command ~4 ms to import: annotations only
    from typing import Any

from .errors import ComposeError, KeyPath

Lookup = Callable[[str], "str | None"]

_NAME_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_NAME_CHARS = _NAME_START | frozenset("0123456789")


class TemplateError(ValueError):
    """A malformed ``${...}`` or a ``${VAR:?message}`` whose variable is missing."""


class Substitutor:
    """Substitutes templates against one environment, warning once per unset variable."""

    def __init__(self, env: Mapping[str, str] | Lookup, *, warn: bool = True,
                 warned: set[str] | None = None) -> None:
        self._lookup: Lookup = env.get if isinstance(env, Mapping) else env  # type: ignore[assignment]
        self.warn = warn
        self.warned: set[str] = warned if warned is not None else set()

    def _value(self, name: str) -> str:
        value = self._lookup(name)
        if value is None:
            if self.warn and name not in self.warned:
                self.warned.add(name)
                print(f'WARN[0000] The "{name}" variable is not set. Defaulting to a blank string.',
                      file=sys.stderr)
            return ""
        return value

    def substitute(self, template: str) -> str:
        """``template`` with every ``$VAR``/``${VAR...}`` replaced and ``$$`` unescaped."""
        if "$" not in template:
            return template
        out: list[str] = []
        i = 0
        n = len(template)
        while i < n:
            j = template.find("$", i)
            if j < 0:
                out.append(template[i:])
                break
            out.append(template[i:j])
            if j + 1 >= n:
                out.append("$")
                break
            nxt = template[j + 1]
            if nxt == "$":
                out.append("$")
                i = j + 2
            elif nxt == "{":
                value, i = self._braced(template, j)
                out.append(value)
            elif nxt in _NAME_START:
                k = j + 1
                while k < n and template[k] in _NAME_CHARS:
                    k += 1
                out.append(self._value(template[j + 1:k]))
                i = k
            else:
                out.append("$")
                i = j + 1
        return "".join(out)

    def _braced(self, template: str, start: int) -> tuple[str, int]:
        """Handle ``${...}`` starting at ``start`` (the ``$``); returns value and next index."""
        close = _closing_brace(template, start)
        if close < 0:
            raise TemplateError(f"Invalid template: {template!r}")
        body = template[start + 2:close]
        k = 0
        while k < len(body) and (body[k] in _NAME_CHARS if k else body[k] in _NAME_START):
            k += 1
        name = body[:k]
        if not name:
            raise TemplateError(f"Invalid template: {template!r}")
        rest = body[k:]
        if not rest:
            return self._value(name), close + 1
        colon = rest.startswith(":")
        op_at = 1 if colon else 0
        if len(rest) <= op_at or rest[op_at] not in "-+?":
            raise TemplateError(f"Invalid template: {template!r}")
        op = rest[op_at]
        arg = rest[op_at + 1:]
        value = self._lookup(name)
        is_set = value is not None and (value != "" or not colon)
        if op == "-":
            result = value if is_set else self.substitute(arg)
        elif op == "+":
            result = self.substitute(arg) if is_set else ""
        else:
            if not is_set:
                message = self.substitute(arg)
                suffix = f": {message}" if message else ""
                raise TemplateError(f"required variable {name} is missing a value{suffix}")
            result = value
        return result or "", close + 1


def _closing_brace(s: str, start: int) -> int:
    """Index of the ``}`` closing the ``${`` at ``start`` (only ``${`` nests, as in compose-go)."""
    depth = 0
    i = start
    n = len(s)
    while i < n:
        c = s[i]
        if c == "}":
            depth -= 1
            if depth == 0:
                return i
        elif c == "$" and i + 1 < n and s[i + 1] == "{":
            depth += 1
            i += 1
        i += 1
    return -1


# ---------------------------------------------------------------------------
# casting after substitution (compose-go loader/interpolate.go)

def _to_int(value: str) -> int:
    return int(value.strip(), 10)


def _to_float(value: str) -> float:
    return float(value)


def _to_bool(value: str) -> bool:
    low = value.lower()
    if low in ("y", "yes", "true", "on"):
        return True
    if low in ("n", "no", "false", "off"):
        return False
    raise ValueError(f"invalid boolean: {value}")


_SERVICE_CASTS: dict[tuple[str, ...], Callable[[str], Any]] = {
    ("configs", "[]", "mode"): _to_int,
    ("cpu_count",): _to_int, ("cpu_percent",): _to_float, ("cpu_period",): _to_int,
    ("cpu_quota",): _to_int, ("cpu_rt_period",): _to_int, ("cpu_rt_runtime",): _to_int,
    ("cpus",): _to_float, ("cpu_shares",): _to_int, ("init",): _to_bool,
    ("deploy", "replicas"): _to_int,
    ("deploy", "update_config", "parallelism"): _to_int,
    ("deploy", "update_config", "max_failure_ratio"): _to_float,
    ("deploy", "rollback_config", "parallelism"): _to_int,
    ("deploy", "rollback_config", "max_failure_ratio"): _to_float,
    ("deploy", "restart_policy", "max_attempts"): _to_int,
    ("deploy", "placement", "max_replicas_per_node"): _to_int,
    ("healthcheck", "retries"): _to_int, ("healthcheck", "disable"): _to_bool,
    ("oom_kill_disable",): _to_bool, ("oom_score_adj",): _to_int, ("pids_limit",): _to_int,
    ("ports", "[]", "target"): _to_int, ("privileged",): _to_bool, ("read_only",): _to_bool,
    ("scale",): _to_int, ("secrets", "[]", "mode"): _to_int, ("stdin_open",): _to_bool,
    ("tty",): _to_bool, ("ulimits", "*"): _to_int, ("ulimits", "*", "hard"): _to_int,
    ("ulimits", "*", "soft"): _to_int, ("volumes", "[]", "read_only"): _to_bool,
    ("volumes", "[]", "volume", "nocopy"): _to_bool,
}
_TOP_CASTS: dict[tuple[str, ...], Callable[[str], Any]] = {
    ("networks", "*", "external"): _to_bool, ("networks", "*", "internal"): _to_bool,
    ("networks", "*", "attachable"): _to_bool, ("networks", "*", "enable_ipv6"): _to_bool,
    ("networks", "*", "enable_ipv4"): _to_bool,
    ("volumes", "*", "external"): _to_bool, ("secrets", "*", "external"): _to_bool,
    ("configs", "*", "external"): _to_bool,
}


def _caster(path: KeyPath) -> Callable[[str], Any] | None:
    """The cast compose-go applies to a string at ``path``, if any."""
    if len(path) >= 3 and path[0] == "services":
        key = tuple("[]" if isinstance(p, int) else p for p in path[2:])
        if key[0] == "ulimits" and len(key) >= 2:
            key = ("ulimits", "*") + key[2:]
        return _SERVICE_CASTS.get(key)
    if len(path) == 3:
        return _TOP_CASTS.get((path[0], "*", path[2]))  # type: ignore[arg-type]
    return None


def interpolate(data: Any, sub: Substitutor, locator: Any = None, prefix: KeyPath = ()) -> Any:
    """A copy of ``data`` with every string value substituted and cast where required.

    ``locator`` (a yamlpos.Locator) positions errors; ``prefix`` is the key path of
    ``data`` in its file.
    """
    def err(message: str, path: KeyPath) -> ComposeError:
        if locator is not None:
            return locator.error(message, path)
        return ComposeError(message, path=path)

    def walk(value: Any, path: KeyPath) -> Any:
        if isinstance(value, str):
            try:
                new = sub.substitute(value)
            except TemplateError as exc:
                raise err(str(exc), path) from None
            cast = _caster(path)
            if cast is None:
                return new
            try:
                return cast(new)
            except ValueError:
                raise err(f"failed to cast to expected type: {new!r} is not valid here", path) from None
        if isinstance(value, dict):
            return {k: walk(v, path + (k,)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, path + (i,)) for i, v in enumerate(value)]
        return value

    return walk(data, prefix)
