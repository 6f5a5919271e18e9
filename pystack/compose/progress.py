"""Compose-style progress: one line per resource with its state and elapsed time.

On a terminal the block of lines is redrawn in place (plain ANSI cursor moves: no rich
import on the hot path); otherwise each change is one plain line, as Docker Compose
prints it (`` Container p-web-1  Started``). ``json`` writes one object per change;
``quiet`` writes nothing. Everything goes to stderr, like Compose.
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time
TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs every command ~4 ms to import: annotations only
    from typing import TextIO

DONE_STATES = {"Created", "Started", "Running", "Healthy", "Exited", "Stopped", "Removed",
               "Recreated", "Pulled", "Killed", "Paused", "Unpaused", "Restarted", "Waiting",
               "Skipped", "Warning", "Error", "Built"}


def choose_mode(progress: str, ansi: str, stream: TextIO) -> str:
    """``tty``, ``plain``, ``json`` or ``quiet`` from the global ``--progress``/``--ansi``."""
    progress = os.environ.get("COMPOSE_PROGRESS", progress) if progress == "auto" else progress
    if progress in ("plain", "json", "quiet", "tty"):
        return progress
    if ansi == "never" or os.environ.get("NO_COLOR"):
        return "plain"
    return "tty" if (ansi == "always" or stream.isatty()) else "plain"


class Progress:
    """Thread-safe progress display; ``event()`` records a resource's new state."""

    def __init__(self, mode: str = "plain", stream: TextIO | None = None, title: str = "") -> None:
        self.mode = mode
        self.stream = stream or sys.stderr
        self.title = title
        self._lock = threading.Lock()
        self._order: list[str] = []
        self._rows: dict[str, tuple[str, float, float | None, bool]] = {}
        self._drawn = 0
        self._t0 = time.monotonic()

    def event(self, kind: str, name: str, status: str, error: bool = False) -> None:
        key = f"{kind} {name}"
        now = time.monotonic()
        with self._lock:
            if key not in self._rows:
                self._order.append(key)
                start = now
            else:
                start = self._rows[key][1]
            finished = now if (status in DONE_STATES or error) else None
            self._rows[key] = (status, start, finished, error)
            if self.mode == "plain":
                self.stream.write(f" {key}  {status}\n")
                self.stream.flush()
            elif self.mode == "json":
                self.stream.write(json.dumps({"id": key, "status": status, "error": error}) + "\n")
                self.stream.flush()
            elif self.mode == "tty":
                self._redraw()

    def warn(self, message: str) -> None:
        """A warning line, outside the redrawn block."""
        if self.mode == "quiet":
            return
        with self._lock:
            self._clear()
            self.stream.write(f"WARN[0000] {message}\n")
            self._drawn = 0
            if self.mode == "tty":
                self._redraw()
            self.stream.flush()

    def _clear(self) -> None:
        if self.mode == "tty" and self._drawn:
            self.stream.write(f"\x1b[{self._drawn}F\x1b[J")

    def _redraw(self) -> None:
        self._clear()
        now = time.monotonic()
        lines = []
        done = sum(1 for k in self._order if self._rows[k][2] is not None)
        if self.title:
            lines.append(f"[+] {self.title} {done}/{len(self._order)}")
        width = max((len(k) for k in self._order), default=0)
        for key in self._order:
            status, start, finished, error = self._rows[key]
            mark = "\x1b[31m✘\x1b[0m" if error else ("\x1b[32m✔\x1b[0m" if finished else "⠿")
            elapsed = (finished or now) - start
            lines.append(f" {mark} {key.ljust(width)}  {status.ljust(9)} {elapsed:4.1f}s")
        self.stream.write("\n".join(lines) + "\n")
        self.stream.flush()
        self._drawn = len(lines)

    def restart(self, title: str, mode: str | None = None) -> None:
        """Start a new block (e.g. stopping after attached logs): nothing is redrawn over
        what was printed in between, and elapsed times start again."""
        with self._lock:
            self.title = title
            self._order.clear()
            self._rows.clear()
            self._drawn = 0
            if mode is not None:
                self.mode = mode

    def close(self) -> None:
        with self._lock:
            if self.mode == "tty" and self._order:
                self._redraw()
