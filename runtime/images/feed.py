"""A blob file that is still being downloaded, read by an unpacker as it grows.

Why: a pull writes each layer blob to its partial file once (it is kept for save/push
and for a resume) and the unpacker reads the very same bytes back from the page cache
while the download goes on, instead of the downloader copying every byte a second time
into a pipe. The download is never held back by the unpacker (no pipe to fill), so the
connection is done and the blob fsynced while the unpack still runs.

The writer signals through an ``eventfd`` (it never blocks, however far the reader lags):
``more()`` after each write, then ``done()`` when every byte is in the file, or
``abort()``. The reader (``GrowingReader``, in a helper process that got both
descriptors over a UNIX socket, or in a thread) reads the file until it catches up,
then sleeps on the eventfd. The digest of the blob is checked by the writer; the reader
only unpacks, and its result is used only when the writer's commit succeeded.
"""
from __future__ import annotations

import os

# eventfd counter increments: a data wakeup, all written, give up. The counter sums the
# writes since the reader's last read, so the flags are far apart powers of two.
_MORE = 1
_DONE = 1 << 32
_ABORT = 1 << 48


class Aborted(Exception):
    """The writer gave up on this blob (digest mismatch, restarted download, pull failed)."""


class Feed:
    """The writer's side: an eventfd the reader waits on."""

    def __init__(self) -> None:
        self.fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self.finished = self.aborted = False

    def more(self) -> None:
        os.eventfd_write(self.fd, _MORE)

    def done(self) -> None:
        """Every byte of the blob is in the file (flushed)."""
        if not self.finished:
            self.finished = True
            os.eventfd_write(self.fd, _DONE)

    def abort(self) -> None:
        """Stop the reader, also after ``done`` (the digest is checked after the last byte)."""
        if not self.aborted and self.fd >= 0:
            self.finished = self.aborted = True
            os.eventfd_write(self.fd, _ABORT)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def complete_feed() -> Feed:
    """A feed for a blob that is already whole (verified in the store)."""
    feed = Feed()
    feed.done()
    return feed


class GrowingReader:
    """Reads the file ``fd`` up to its end as the writer of ``event_fd`` (a Feed) grows it.

    Takes ownership of both descriptors (``close``). Raises ``Aborted`` once the writer
    aborted, or when ``watch_fd`` (a helper's socket to its parent) becomes readable while
    waiting: the parent only ever closes it then. A read returns b"" only after the
    writer said done and the file is read out.
    """

    def __init__(self, fd: int, event_fd: int, watch_fd: int = -1) -> None:
        self.fd, self.event_fd, self.watch_fd = fd, event_fd, watch_fd
        self.done = False

    def _signals(self, block: bool) -> None:
        if block:
            import select
            fds = [self.event_fd] if self.watch_fd < 0 else [self.event_fd, self.watch_fd]
            ready = select.select(fds, [], [])[0]
            if self.watch_fd in ready and self.event_fd not in ready:
                raise Aborted("the puller went away")
        try:
            value = int.from_bytes(os.read(self.event_fd, 8), "little")
        except BlockingIOError:
            return
        if value >= _ABORT:
            raise Aborted("the download of this blob was given up")
        if value >= _DONE:
            self.done = True

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            parts = []
            while chunk := self.read(1 << 20):
                parts.append(chunk)
            return b"".join(parts)
        while True:
            self._signals(False)  # an abort is seen within one read, not only at a wait
            data = os.read(self.fd, n)
            if data or not n:
                return data
            if self.done:  # done was seen before this read: the file is complete
                return b""
            self._signals(True)

    def close(self) -> None:
        for fd in (self.fd, self.event_fd):
            if fd >= 0:
                os.close(fd)
        self.fd = self.event_fd = -1
