"""Pumping a hijacked attach/exec connection to and from this process's stdio.

With a TTY the stream is raw bytes and the local terminal is put in raw mode; without, the
engine multiplexes stdout and stderr (client.demux). stdin is forwarded when asked; its
end half-closes the socket so the container sees EOF.
"""
from __future__ import annotations

import os
import select
import sys
import threading
from typing import Any

from pystack.compose.client import STDERR, demux


def pump(conn: Any, *, tty: bool, stdin: bool, resize: Any = None) -> None:
    """Copy until the container side closes the stream."""
    old_attrs = None
    in_fd = sys.stdin.fileno() if stdin else None
    if tty and in_fd is not None and os.isatty(in_fd):
        import termios
        import tty as ttymod

        old_attrs = termios.tcgetattr(in_fd)
        ttymod.setraw(in_fd)
        if resize is not None:
            try:
                size = os.get_terminal_size(in_fd)
                resize(size.lines, size.columns)
            except OSError:
                pass
    stop = threading.Event()
    feeder = None
    if in_fd is not None:
        feeder = threading.Thread(target=_feed, args=(conn, in_fd, stop), daemon=True)
        feeder.start()
    try:
        out = sys.stdout.buffer
        err = sys.stderr.buffer
        if tty:
            while True:
                chunk = conn.read(65536)
                if not chunk:
                    break
                out.write(chunk)
                out.flush()
        else:
            for stream, payload in demux(conn.read):
                target = err if stream == STDERR else out
                target.write(payload)
                target.flush()
    finally:
        stop.set()
        if old_attrs is not None:
            import termios

            termios.tcsetattr(in_fd, termios.TCSADRAIN, old_attrs)
        conn.close()


def _feed(conn: Any, fd: int, stop: threading.Event) -> None:
    try:
        while not stop.is_set():
            ready, _, _ = select.select([fd], [], [], 0.2)
            if not ready:
                continue
            data = os.read(fd, 65536)
            if not data:
                conn.close_write()
                return
            conn.write(data)
    except OSError:
        return
