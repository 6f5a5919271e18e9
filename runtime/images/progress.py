"""Progress reporting for pull/push/load: rich bars on a terminal, plain lines otherwise.

The store calls ``progress.layer(id, status, current, total)`` and ``progress.message``;
the CLI picks the reporter (``-q`` -> ``QuietProgress``). Plain lines follow the docker
CLI's non-TTY output (``<short id>: Pull complete``) so logs read the same.
"""
from __future__ import annotations

import sys
import threading
from typing import Any, TextIO


class Progress:
    """Base reporter: ignores everything (library default)."""

    def layer(self, key: str, status: str, current: int | None = None, total: int | None = None) -> None:
        pass

    def message(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


QuietProgress = Progress


def short(key: str) -> str:
    return key.split(":", 1)[-1][:12]


class PlainProgress(Progress):
    """One line per state change (byte counts are not printed: logs stay short)."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.last: dict[str, str] = {}
        self.lock = threading.Lock()

    def layer(self, key: str, status: str, current: int | None = None, total: int | None = None) -> None:
        with self.lock:
            if self.last.get(key) == status:
                return
            self.last[key] = status
            print(f"{short(key)}: {status}", file=self.out, flush=True)

    def message(self, text: str) -> None:
        with self.lock:
            print(text, file=self.out, flush=True)


class RichProgress(Progress):
    """A bar per layer (rich), for terminals."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, DownloadColumn, Progress as RP, TextColumn, TransferSpeedColumn
        self.rp = RP(TextColumn("{task.fields[key]}"), TextColumn("{task.description:<18}"), BarColumn(),
                     DownloadColumn(), TransferSpeedColumn(), transient=False)
        self.tasks: dict[str, Any] = {}
        self.lock = threading.Lock()
        self.rp.start()

    def layer(self, key: str, status: str, current: int | None = None, total: int | None = None) -> None:
        with self.lock:
            task = self.tasks.get(key)
            if task is None:
                task = self.tasks[key] = self.rp.add_task(status, key=short(key), total=total or None)
            kw: dict[str, Any] = {"description": status}
            if total is not None:
                kw["total"] = total
            if current is not None:
                kw["completed"] = current
            self.rp.update(task, **kw)

    def message(self, text: str) -> None:
        self.rp.console.print(text, markup=False, highlight=False)

    def close(self) -> None:
        self.rp.stop()


class JsonProgress(Progress):
    """Docker's JSON message stream (``POST /images/create``, ``/images/{name}/push``).

    ``write`` receives one dict per event, e.g. ``{"status": "Downloading", "id": "16eaea717135",
    "progressDetail": {"current": 1024, "total": 4096}}``; the engine serialises them.
    """

    def __init__(self, write) -> None:
        self.write = write
        self.lock = threading.Lock()

    def layer(self, key: str, status: str, current: int | None = None, total: int | None = None) -> None:
        detail: dict[str, int] = {}
        if current is not None:
            detail["current"] = current
        if total is not None:
            detail["total"] = total
        with self.lock:
            self.write({"status": status, "id": short(key), "progressDetail": detail})

    def message(self, text: str) -> None:
        with self.lock:
            self.write({"status": text})


def for_terminal(quiet: bool = False, out: TextIO | None = None) -> Progress:
    if quiet:
        return QuietProgress()
    stream = out or sys.stdout
    if stream.isatty():
        return RichProgress()
    return PlainProgress(stream)
