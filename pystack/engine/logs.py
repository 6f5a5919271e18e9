"""Reading Docker json-file logs for ``/containers/{id}/logs`` and ``attach``.

The shim (pystack.runtime.jsonlog) writes one JSON object per line, ``{"log", "stream",
"time"}``, rotating ``log`` -> ``log.1`` -> ``log.2`` ... (or truncating with max-file 1).
Here: parse the options Docker's API takes (since/until/tail/timestamps), read the history
across the rotated files, and follow the live file across rotations until told to stop.
"""
from __future__ import annotations

import asyncio
import calendar
import json
import os
import re
import threading
from collections import deque
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable, Iterator

from pystack.engine.hijack import STDERR, STDOUT, frame

POLL = 0.05

_TIME_RE = re.compile(r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$")


def rfc3339_to_ns(text: str) -> int:
    """``2026-11-28T12:55:55.123456789Z`` (or with an offset) -> unix nanoseconds."""
    m = _TIME_RE.match(text)
    if not m:
        raise ValueError(f"bad timestamp {text!r}")
    y, mo, d, h, mi, s = (int(g) for g in m.groups()[:6])
    frac = int((m.group(7) or "0").ljust(9, "0"))
    secs = calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0))
    tz = m.group(8)
    if tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        secs -= sign * (int(tz[1:3]) * 3600 + int(tz[4:6]) * 60)
    return secs * 1_000_000_000 + frac


def parse_api_time(value: str | None) -> int | None:
    """Docker's since/until query value: unix seconds (``1700000000``, ``1700000000.5``,
    ``1700000000.000000001``) or RFC 3339; 0/empty means unset. Returns nanoseconds."""
    if value is None or value.strip() in ("", "0"):
        return None
    value = value.strip()
    if re.fullmatch(r"-?\d+(\.\d{1,9})?", value):
        whole, _, frac = value.partition(".")
        ns = int(whole) * 1_000_000_000 + int(frac.ljust(9, "0") or 0)
        return ns if ns > 0 else None
    try:
        return rfc3339_to_ns(value)
    except ValueError:
        from pystack.engine.api import BadRequest
        raise BadRequest(f"invalid time value {value!r}: use unix seconds or RFC 3339") from None


def parse_tail(value: str | None) -> int | None:
    """``tail``: a count, or all (None) for "all", empty or negative."""
    if value is None or value.strip() in ("", "all"):
        return None
    try:
        n = int(value)
    except ValueError:
        from pystack.engine.api import BadRequest
        raise BadRequest(f"invalid tail value {value!r}: a number or \"all\"") from None
    return None if n < 0 else n


def log_files(path: Path) -> list[Path]:
    """The log and its rotated copies, oldest first."""
    rotated = []
    for p in path.parent.glob(path.name + ".*"):
        suffix = p.name[len(path.name) + 1:]
        if suffix.isdigit():
            rotated.append((int(suffix), p))
    return [p for _, p in sorted(rotated, reverse=True)] + [path]


def _parse(line: bytes) -> dict | None:
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    return entry if isinstance(entry, dict) and "log" in entry else None


class LogOptions:
    """What a logs/attach request wants."""

    def __init__(self, stdout: bool = True, stderr: bool = True, since: int | None = None,
                 until: int | None = None, timestamps: bool = False, tail: int | None = None,
                 tty: bool = False) -> None:
        self.stdout, self.stderr = stdout, stderr
        self.since, self.until = since, until
        self.timestamps, self.tail, self.tty = timestamps, tail, tty

    def wanted(self, entry: dict) -> bool:
        stream = entry.get("stream")
        return (self.stdout and stream != "stderr") or (self.stderr and stream == "stderr")

    def in_window(self, entry: dict) -> bool | None:
        """True to send, False to skip, None when past ``until`` (stop)."""
        if self.since is None and self.until is None:
            return True
        try:
            t = rfc3339_to_ns(entry.get("time", ""))
        except ValueError:
            return True
        if self.until is not None and t > self.until:
            return None
        return self.since is None or t >= self.since

    def encode(self, entry: dict) -> bytes:
        data = entry.get("log", "").encode("utf-8", "surrogateescape")
        if self.timestamps:
            data = entry.get("time", "").encode() + b" " + data
        if self.tty:
            return data
        return frame(STDERR if entry.get("stream") == "stderr" else STDOUT, data)


def end_of_log(path: Path) -> tuple[int, int | None]:
    """Where following starts now: the current file's inode and the end of its last
    complete line."""
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        return 0, None
    with fh:
        st = os.fstat(fh.fileno())
        size = st.st_size
        if size == 0:
            return 0, st.st_ino
        back = min(size, 1 << 16)
        while True:  # find the last newline, reading backwards
            fh.seek(size - back)
            chunk = fh.read(back)
            nl = chunk.rfind(b"\n")
            if nl >= 0:
                return size - back + nl + 1, st.st_ino
            if back >= size:
                return 0, st.st_ino
            back = min(size, back * 4)


def history_lines(path: Path, tail: int | None) -> tuple[Iterator[bytes], int, int | None]:
    """The raw lines of the log, oldest first across the rotated files (only the last
    ``tail`` with a tail: kept as bytes, so memory stays bounded by it, not by the log),
    plus where following starts (offset, inode of the current file)."""
    offset, inode = end_of_log(path)
    files = log_files(path)

    def lines() -> Iterator[bytes]:
        for f in files:
            try:
                fh = open(f, "rb")
            except FileNotFoundError:
                continue
            with fh:
                if f == path:
                    if inode is None or os.fstat(fh.fileno()).st_ino != inode:
                        continue  # rotated since: its lines are in a .N file read above
                    left = offset
                    for line in fh:
                        if left <= 0:
                            break
                        left -= len(line)
                        yield line
                else:
                    yield from fh
    if tail is None:
        return lines(), offset, inode
    if tail == 0:
        return iter(()), offset, inode
    last: deque[bytes] = deque(maxlen=tail)
    for line in lines():
        if line.strip():
            last.append(line)
    return iter(last), offset, inode


def read_history(path: Path, tail: int | None) -> tuple[list[dict], int, int | None]:
    """Every entry (or the last ``tail``) oldest first, plus the follow start (offset, inode)."""
    it, offset, inode = history_lines(path, tail)
    return [e for e in map(_parse, it) if e is not None], offset, inode


class LogFollower:
    """Reads what is appended to ``path`` from ``offset``, across rotation and truncation."""

    def __init__(self, path: Path, offset: int = 0, inode: int | None = None) -> None:
        self.path = path
        self.fh = None
        self.buf = b""
        self.offset = offset
        self.inode = inode

    def _open(self) -> bool:
        try:
            fh = open(self.path, "rb")
        except FileNotFoundError:
            return False
        st = os.fstat(fh.fileno())
        if self.inode is not None and st.st_ino != self.inode:
            self.offset = 0  # rotated since we last looked: a new file
        self.inode = st.st_ino
        fh.seek(self.offset)
        self.fh = fh
        return True

    def read(self) -> Iterator[dict]:
        """Entries appended since the last call."""
        if self.fh is None and not self._open():
            return
        assert self.fh is not None
        while True:
            chunk = self.fh.read(1 << 20)
            if chunk:
                yield from self._lines(chunk)
                continue
            # at the end of the open file: rotated or truncated?
            try:
                st = os.stat(self.path)
            except FileNotFoundError:
                return
            pos = self.fh.tell()
            if st.st_ino != os.fstat(self.fh.fileno()).st_ino:
                self.fh.close()
                self.fh = None
                self.buf = b""
                self.inode, self.offset = st.st_ino, 0
                if not self._open():
                    return
                continue
            if st.st_size < pos:  # truncated (max-file 1)
                self.fh.seek(0)
                self.buf = b""
                continue
            return

    def _lines(self, chunk: bytes) -> Iterator[dict]:
        data = self.buf + chunk
        cut = data.rfind(b"\n") + 1
        self.buf = data[cut:]
        for line in data[:cut].splitlines():
            entry = _parse(line)
            if entry is not None:
                yield entry

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None


async def stream_log(path: Path, opts: LogOptions, *, history: bool, follow: bool,
                     stopped: Callable[[], Awaitable[bool]] | None = None,
                     start: tuple[int, int | None] | None = None) -> AsyncIterator[bytes]:
    """Encoded chunks of the log: the history (per ``opts.tail``) when ``history``, then, when
    ``follow``, new entries until ``stopped()`` says the container is done (after a last
    read) or ``until`` is passed. ``start``: (offset, inode) to follow from instead of the
    end of the history (attach taken before start)."""
    offset, inode = start if start is not None else (0, None)
    if history:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue(maxsize=8)
        stop = threading.Event()
        where: list = []

        def produce() -> None:
            """In a thread: parse, filter and encode the history in batches (backpressure
            through the bounded queue; a client that goes stops it)."""
            past_until = False
            try:
                it, off, ino = history_lines(path, opts.tail)
                where.extend((off, ino))
                batch: list[bytes] = []
                size = 0
                for line in it:
                    if stop.is_set():
                        return
                    entry = _parse(line)
                    if entry is None or not opts.wanted(entry):
                        continue
                    ok = opts.in_window(entry)
                    if ok is None:
                        past_until = True
                        break
                    if ok:
                        data = opts.encode(entry)
                        batch.append(data)
                        size += len(data)
                    if size >= 256 * 1024:
                        asyncio.run_coroutine_threadsafe(queue.put(b"".join(batch)), loop).result()
                        batch, size = [], 0
                if batch:
                    asyncio.run_coroutine_threadsafe(queue.put(b"".join(batch)), loop).result()
            except Exception as exc:  # noqa: BLE001 - reported to the reader
                asyncio.run_coroutine_threadsafe(queue.put(exc), loop).result()
                return
            finally:
                if not stop.is_set():
                    asyncio.run_coroutine_threadsafe(queue.put(("end", past_until)), loop).result()

        worker = loop.run_in_executor(None, produce)
        try:
            while True:
                item = await queue.get()
                if isinstance(item, tuple):
                    if item[1]:
                        follow = False
                    break
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            stop.set()
            while not queue.empty():  # unblock a producer waiting on a full queue
                queue.get_nowait()
            if not worker.done():
                try:
                    await asyncio.wait_for(asyncio.shield(worker), 5)
                except (asyncio.TimeoutError, Exception):  # noqa: BLE001
                    pass
        if where:
            offset, inode = where
    elif start is None:
        offset, inode = await asyncio.to_thread(end_of_log, path)
    if not follow:
        return
    follower = LogFollower(path, offset, inode)
    try:
        last = False
        while True:
            out = []
            for entry in follower.read():
                if not opts.wanted(entry):
                    continue
                ok = opts.in_window(entry)
                if ok is None:
                    if out:
                        yield b"".join(out)
                    return
                if ok:
                    out.append(opts.encode(entry))
            if out:
                yield b"".join(out)
            if last:
                return
            if opts.until is not None and opts.until < _now_ns():
                return
            if stopped is not None and await stopped():
                last = True  # one more read: what was written before the exit
                continue
            await asyncio.sleep(POLL)
    finally:
        follower.close()


def _now_ns() -> int:
    import time
    return time.time_ns()
