"""The ``.env`` syntax as Docker Compose reads it (compose-go's ``dotenv`` parser).

Supported: comments, blank lines, ``export KEY=v``, ``KEY: v`` (YAML style), unquoted
values (trailing `` #comment`` cut, spaces trimmed), single quotes (literal), double
quotes (escapes ``\\n \\t \\r \\\\ \\"`` and multi-line), ``${VAR}`` interpolation in
unquoted and double-quoted values against the shell environment then the keys defined
above, and a bare ``KEY`` line that copies ``KEY`` from the environment when set.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping

from .errors import ComposeError
from .interpolate import Substitutor, TemplateError

Lookup = Callable[[str], "str | None"]

_KEY_PUNCT = frozenset("_.-[]")
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "a": "\a", "b": "\b", "f": "\f", "v": "\v"}


def _expand_escapes(value: str) -> str:
    """Shell escapes of a double-quoted value; ``\\$`` becomes a literal ``$``."""
    out: list[str] = []
    i = 0
    n = len(value)
    while i < n:
        c = value[i]
        if c == "\\" and i + 1 < n:
            nxt = value[i + 1]
            if nxt in _ESCAPES:
                out.append(_ESCAPES[nxt])
            elif nxt == "$":
                out.append("$$")  # an escaped dollar is literal: "$$" survives interpolation as "$"
            else:
                out.append(nxt)
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


class _Parser:
    def __init__(self, filename: str, lookup: Lookup, interpolate: bool) -> None:
        self.filename = filename
        self.lookup = lookup
        self.interpolate = interpolate
        self.line = 1
        self.out: dict[str, str] = {}

    def error(self, message: str) -> ComposeError:
        return ComposeError(f"line {self.line}: {message}", file=self.filename)

    def expand(self, value: str) -> str:
        if not self.interpolate:
            return value

        def lookup(name: str) -> str | None:
            found = self.lookup(name)
            return found if found is not None else self.out.get(name)
        try:
            return Substitutor(lookup, warn=False).substitute(value)
        except TemplateError as exc:
            raise self.error(str(exc)) from None

    def statement_start(self, src: str) -> str:
        while True:
            stripped = src.lstrip(" \t\r\n\v\f")
            self.line += src[: len(src) - len(stripped)].count("\n")
            if not stripped or stripped[0] != "#":
                return stripped
            cut = stripped.find("\n")
            if cut < 0:
                return ""
            src = stripped[cut:]

    def key(self, src: str) -> tuple[str, str, bool]:
        stripped = src
        if stripped.startswith("export") and stripped[6:7] in (" ", "\t"):
            stripped = stripped[6:].lstrip(" \t")
        for i, c in enumerate(stripped):
            if c in " \t":
                continue
            if c in "=:\n":
                key = stripped[:i].rstrip()
                if c == "\n":
                    return key, stripped[i + 1:], True
                rest = stripped[i + 1:].lstrip(" \t")
                return key, rest, False
            if c in _KEY_PUNCT or c.isalnum():
                continue
            first = stripped.split("\n", 1)[0]
            raise self.error(f"unexpected character {c!r} in variable name {first!r}")
        return stripped.rstrip(), "", True

    def value(self, src: str) -> tuple[str, str]:
        quote = src[:1]
        if quote not in ("'", '"'):
            value, _, rest = src.partition("\n")
            self.line += 1
            value = value.split(" #", 1)[0].rstrip()
            return self.expand(value), rest
        chars: list[str] = []
        escaped = False
        start_line = self.line
        for i in range(1, len(src)):
            c = src[i]
            if c == "\n":
                self.line += 1
            if c != quote:
                if not escaped and c == "\\":
                    escaped = True
                    continue
                if escaped:
                    escaped = False
                    chars.append("\\")
                chars.append(c)
                continue
            if escaped:
                escaped = False
                chars.append(c)
                continue
            value = "".join(chars)
            if quote == '"':
                value = self.expand(_expand_escapes(value))
            return value, src[i + 1:]
        first = src.split("\n", 1)[0]
        self.line = start_line
        raise self.error(f"unterminated quoted value {first}")

    def parse(self, text: str) -> dict[str, str]:
        src = text.replace("\r\n", "\n").lstrip("\ufeff")
        while src:
            src = self.statement_start(src)
            if not src:
                break
            key, rest, inherited = self.key(src)
            if not key:
                raise self.error("zero length variable name")
            if inherited:
                found = self.lookup(key)
                if found is not None:
                    self.out[key] = found
                self.line += 1
                src = rest
                continue
            value, src = self.value(rest)
            self.out[key] = value
            if src.startswith(" ") or src.startswith("\t"):
                # after a quoted value only blanks and a comment may follow on the line
                tail, nl, after = src.partition("\n")
                if tail.strip() and not tail.strip().startswith("#"):
                    raise self.error(f"unexpected text after quoted value of {key}: {tail.strip()!r}")
                src = after
                if nl:
                    self.line += 1
        return self.out


def parse_dotenv(text: str, filename: str = ".env", lookup: Lookup | Mapping[str, str] | None = None,
                 *, interpolate: bool = True) -> dict[str, str]:
    """Parse ``.env`` text; ``lookup`` gives the variables interpolation sees first."""
    if lookup is None:
        fn: Lookup = lambda name: None  # noqa: E731
    elif isinstance(lookup, Mapping):
        fn = lookup.get
    else:
        fn = lookup
    return _Parser(filename, fn, interpolate).parse(text)


def read_dotenv(path: str, lookup: Lookup | Mapping[str, str] | None = None,
                *, interpolate: bool = True) -> dict[str, str]:
    """Read and parse an env file; a missing or unreadable file is a ComposeError."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        raise ComposeError(f"env file {path} not found: no such file or directory") from None
    except IsADirectoryError:
        raise ComposeError(f"env file {path} is a directory") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ComposeError(f"cannot read env file {path}: {exc}") from None
    return parse_dotenv(text, path, lookup, interpolate=interpolate)
