"""Log streaming with Compose's coloured ``web-1  | `` prefixes, across restarts.

Each container's log is read from the engine's ``/containers/{id}/logs`` (always with
timestamps, so a stream that ends when the container stops can resume from the last line
seen when the container starts again). With ``follow``, an ``/events`` listener notices
containers that start later (a restart, a scale-up) and streams them too.
"""
from __future__ import annotations

import calendar
import sys
import threading
import time
from typing import Any, Callable, TextIO

from pystack.compose import labels as L
from pystack.compose.state import Container, list_containers

COLORS = ["36", "33", "32", "35", "34", "96", "93", "92", "95", "94"]


def parse_ts(ts: str) -> tuple[int, int]:
    """RFC 3339 nanos (``2026-01-02T03:04:05.123Z``) -> (unix seconds, nanoseconds)."""
    base, _, frac = ts.rstrip("Z").partition(".")
    secs = calendar.timegm(time.strptime(base[:19], "%Y-%m-%dT%H:%M:%S"))
    nanos = int((frac + "000000000")[:9]) if frac else 0
    return secs, nanos


class LogPrinter:
    """Writes prefixed lines from many threads without interleaving them."""

    def __init__(self, out: TextIO | None = None, *, color: bool = True, prefix: bool = True,
                 timestamps: bool = False, width: int = 0) -> None:
        self.out = out or sys.stdout
        self.color = color
        self.prefix = prefix
        self.timestamps = timestamps
        self.width = width
        self._lock = threading.Lock()
        self._colors: dict[str, str] = {}

    def _prefix(self, name: str) -> str:
        if not self.prefix:
            return ""
        self.width = max(self.width, len(name) + 1)
        text = f"{name.ljust(self.width)} | "
        if not self.color:
            return text
        service = name.rsplit("-", 1)[0]
        code = self._colors.setdefault(service, COLORS[len(self._colors) % len(COLORS)])
        return f"\x1b[{code}m{text}\x1b[0m"

    def line(self, name: str, text: str, ts: str | None = None) -> None:
        stamp = f"{ts} " if (self.timestamps and ts) else ""
        with self._lock:
            try:
                self.out.write(f"{self._prefix(name)}{stamp}{text}\n")
                self.out.flush()
            except (BrokenPipeError, ValueError):
                pass

    def notice(self, text: str) -> None:
        with self._lock:
            self.out.write(text + "\n")
            self.out.flush()


class LogFollower:
    """Streams the logs of a project's containers; with ``follow``, keeps up with restarts."""

    def __init__(self, client: Any, project: str, printer: LogPrinter, *, services: tuple[str, ...] = (),
                 follow: bool = False, tail: str | None = None, since: str | None = None,
                 until: str | None = None, index: int | None = None,
                 on_die: Callable[[Container | None, dict], None] | None = None,
                 show: bool = True) -> None:
        self.client = client
        self.project = project
        self.printer = printer
        self.services = services
        self.follow = follow
        self.tail = tail
        self.since = since
        self.until = until
        self.index = index
        self.on_die = on_die
        self.show = show  # False: only watch for exits (attached up with every service detached)
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._active: set[str] = set()
        self._last: dict[str, tuple[int, int]] = {}
        self._threads: list[threading.Thread] = []

    def _wanted(self, c: Container) -> bool:
        if c.oneoff or not self.show:
            return False
        if self.services and c.service not in self.services:
            return False
        if self.index is not None and c.number != self.index:
            return False
        return True

    def run(self) -> None:
        """Stream until every stream ended (no follow) or until ``stop`` is set."""
        if self.follow:
            t = threading.Thread(target=self._events, daemon=True)
            t.start()
        containers = [c for c in list_containers(self.client, self.project, services=self.services)
                      if self._wanted(c)]
        if containers:
            self.printer.width = max(self.printer.width, max(len(c.short_name) for c in containers) + 1)
        for c in containers:
            self._spawn(c, first=True)
        if not self.follow:
            for t in list(self._threads):
                t.join()
            return
        while not self.stop.is_set():
            self.stop.wait(0.2)

    def _spawn(self, c: Container, first: bool = False) -> None:
        with self._lock:
            if c.id in self._active:
                return
            self._active.add(c.id)
        t = threading.Thread(target=self._stream, args=(c, first), daemon=True)
        self._threads.append(t)
        t.start()

    def _stream(self, c: Container, first: bool) -> None:
        try:
            while True:
                last = self._last.get(c.id)
                since = f"{last[0]}.{last[1]:09d}" if last else self.since
                tty = bool(((self.client.inspect(c.id).get("Config") or {}).get("Tty")))
                partial: dict[int, bytes] = {}
                for stream, chunk in self.client.logs(c.id, follow=self.follow, timestamps=True,
                                                      tail=self.tail if (first and not last) else None,
                                                      since=since, until=self.until, tty=tty):
                    data = partial.get(stream, b"") + chunk
                    *lines, rest = data.split(b"\n")
                    partial[stream] = rest
                    for raw in lines:
                        self._emit(c, raw)
                    if self.stop.is_set():
                        return
                for rest in partial.values():
                    if rest:
                        self._emit(c, rest)
                if not self.follow or self.stop.is_set():
                    return
                # the stream ended because the container stopped: resume if it runs again
                state = (self.client.inspect(c.id).get("State") or {})
                if not state.get("Running"):
                    return
        except Exception:  # noqa: BLE001 - a removed container ends its stream quietly
            return
        finally:
            with self._lock:
                self._active.discard(c.id)

    def _emit(self, c: Container, raw: bytes) -> None:
        text = raw.decode(errors="replace").rstrip("\r")
        ts, sep, rest = text.partition(" ")
        stamp = None
        if sep and ts[:4].isdigit() and "T" in ts:
            try:
                key = parse_ts(ts)
            except ValueError:
                key = None
            if key is not None:
                last = self._last.get(c.id)
                if last is not None and key <= last:
                    return  # already printed before a restart
                self._last[c.id] = key
                stamp, text = ts, rest
        self.printer.line(c.short_name, text, stamp)

    def _events(self) -> None:
        filters = {"type": ["container"], "label": [L.project_filter(self.project)],
                   "event": ["start", "die"]}
        try:
            for ev in self.client.events(filters=filters, since=str(int(time.time()) - 1)):
                if self.stop.is_set():
                    return
                cid = ev.get("id") or ev.get("Actor", {}).get("ID")
                action = ev.get("Action") or ev.get("status")
                matches = [c for c in list_containers(self.client, self.project, oneoff=None)
                           if c.id == cid]
                c = matches[0] if matches else None
                if action == "start" and c is not None and self._wanted(c):
                    self._spawn(c)
                elif action == "die" and self.on_die is not None:
                    self.on_die(c, ev)
        except Exception:  # noqa: BLE001 - the engine went away: nothing more to follow
            return
