"""Docker's json-file log driver: one JSON object per line, with size-based rotation.

Each line a container writes becomes ``{"log": "<line>\\n", "stream": "stdout",
"time": "<RFC 3339 with nanoseconds>"}``; a line longer than 16 KiB is split (as Docker's
16K buffer does) and a last line without newline is written when the stream ends.
``max-size`` (``10m``, ``512k``, bytes) and ``max-file`` (default 1) rotate like Docker:
``log`` -> ``log.1`` -> ``log.2``..., the oldest dropped; with max-file 1 the file is
truncated instead.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Iterator

MAX_LINE = 16 * 1024
_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3,
          "gb": 1000**3, "ki": 1024, "kib": 1024, "mi": 1024**2, "mib": 1024**2,
          "gi": 1024**3, "gib": 1024**3}


def parse_size(text: str | int | None) -> int:
    """Docker's size syntax (units.FromHumanSize: decimal k/m/g); -1 for unlimited."""
    if text is None or text == "" or text == -1:
        return -1
    if isinstance(text, int):
        return text
    s = str(text).strip().lower()
    num = s.rstrip("abcdefghijklmnopqrstuvwxyz ")
    unit = s[len(num):].strip()
    if unit not in _UNITS or not num:
        raise ValueError(f"invalid log max-size {text!r}")
    return int(float(num) * _UNITS[unit])


def rfc3339_nano(ns: int) -> str:
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


class JsonLogWriter:
    """Appends a container's output to ``path`` in json-file format (single-threaded)."""

    def __init__(self, path: str | os.PathLike, opts: dict | None = None) -> None:
        opts = opts or {}
        self.path = Path(path)
        self.max_size = parse_size(opts.get("max-size"))
        self.max_file = int(opts.get("max-file", 1) or 1)
        if self.max_file < 1:
            raise ValueError("log max-file must be at least 1")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self.size = os.fstat(self.fd).st_size
        self.partial: dict[str, bytes] = {}
        # a terminal's output is written as it comes, partial lines included (a shell prompt
        # has no newline; attach clients follow the log): set by the shim for TTY containers
        self.flush_partial = False

    def write(self, stream: str, data: bytes) -> None:
        """Feed raw bytes read from ``stream``; complete lines are written at once."""
        buf = self.partial.get(stream, b"") + data
        now = time.time_ns()
        out = []
        while True:
            nl = buf.find(b"\n")
            if nl < 0 or nl >= MAX_LINE:
                if len(buf) >= MAX_LINE:
                    out.append(self._entry(stream, buf[:MAX_LINE], now))
                    buf = buf[MAX_LINE:]
                    continue
                break
            out.append(self._entry(stream, buf[: nl + 1], now))
            buf = buf[nl + 1:]
        if self.flush_partial and buf:
            cut = _utf8_complete(buf)
            if cut:
                out.append(self._entry(stream, buf[:cut], now))
                buf = buf[cut:]
        self.partial[stream] = buf
        for line in out:
            self._append(line)

    def end(self, stream: str) -> None:
        """The stream closed: write what is left of its last line."""
        rest = self.partial.pop(stream, b"")
        if rest:
            self._append(self._entry(stream, rest, time.time_ns()))

    @staticmethod
    def _entry(stream: str, raw: bytes, ns: int) -> bytes:
        return (json.dumps({"log": raw.decode("utf-8", "replace"), "stream": stream,
                            "time": rfc3339_nano(ns)}, ensure_ascii=False) + "\n").encode()

    def _append(self, line: bytes) -> None:
        os.write(self.fd, line)
        self.size += len(line)
        if 0 < self.max_size <= self.size:
            self._rotate()

    def _rotate(self) -> None:
        if self.max_file < 2:
            os.ftruncate(self.fd, 0)
            self.size = 0
            return
        os.close(self.fd)
        for n in range(self.max_file - 1, 0, -1):
            src = self.path if n == 1 else self.path.with_name(f"{self.path.name}.{n - 1}")
            if src.exists():
                os.replace(src, self.path.with_name(f"{self.path.name}.{n}"))
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self.size = 0

    def close(self) -> None:
        for stream in list(self.partial):
            self.end(stream)
        os.close(self.fd)


def _utf8_complete(buf: bytes) -> int:
    """Length of ``buf`` without a UTF-8 sequence cut at its end (kept for the next read)."""
    for back in range(1, min(4, len(buf)) + 1):
        b = buf[-back]
        if b < 0x80:
            return len(buf)
        if b >= 0xC0:  # a lead byte: is its sequence complete?
            need = 2 if b < 0xE0 else 3 if b < 0xF0 else 4
            return len(buf) if back >= need else len(buf) - back
    return len(buf)


def read_logs(path: str | os.PathLike, max_file: int = 1) -> Iterator[dict]:
    """Every entry, oldest first, across the rotated files (for ``logs`` readers)."""
    path = Path(path)
    files = [path.with_name(f"{path.name}.{n}") for n in range(max_file - 1, 0, -1)] + [path]
    for f in files:
        if not f.exists():
            continue
        with open(f, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    yield json.loads(line)
