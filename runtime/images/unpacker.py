"""A pool of layer unpackers: helper processes (or threads) that read a blob file as it
grows (``feed.GrowingReader``) and apply it with the safe unpacker (``layers.unpack``).

Why processes: tar parsing and per-file system calls hold the GIL, so layers unpack in
parallel only in separate interpreters. Why a pool of at most one helper per CPU that
takes layers one after the other: a helper costs a fresh interpreter to start (a
``subprocess``, never a ``fork()`` of the threaded puller, as DESIGN.md asks), and more
helpers than cores only add that start-up; a layer whose blob is already on disk waits in
the queue at no cost, its download goes on meanwhile.

Parent and helper talk over a ``SOCK_SEQPACKET`` socket pair: the parent sends one job
(JSON) with two descriptors, the blob file opened for reading and the download's eventfd
(``feed.Feed``); the helper answers with one JSON line: the DiffID, size and entry count,
or the error. A helper whose parent went away (the socket closes) stops, even while it
waits for blob bytes that will never come.

A helper starts as ``python -S`` (no ``site``: its import machinery, the editable
install's finder above all, was a third of a helper's start-up) with the parent's
``sys.path`` and the directories of the ``pystack`` packages handed over; if that fails
it imports ``site`` after all. It runs with the cyclic GC off (it makes no cycles worth
collecting; collections during its imports were measurable).
"""
from __future__ import annotations

import json
import os
import sys

from .errors import DigestMismatch, LayerError
from .feed import Aborted, GrowingReader
from .layers import Limits, UnpackResult

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# The helper's big buffers (1 MiB inflate output, 256 KiB reads) come from the heap and
# stay there: with glibc's defaults each one is a fresh mmap (or a trimmed heap), i.e.
# page faults on every chunk, about a third of the helper's system time.
MALLOC_TUNABLES = "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=268435456"

_ERRORS = {"layer": LayerError, "digest": DigestMismatch}


def helper_env() -> dict[str, str]:
    env = dict(os.environ)
    old = env.get("GLIBC_TUNABLES")
    env["GLIBC_TUNABLES"] = f"{old}:{MALLOC_TUNABLES}" if old else MALLOC_TUNABLES
    return env


_BOOT = """
import gc, sys
gc.disable()
import json, types
d = json.loads(sys.argv[2])
sys.path[:0] = d["path"]
for name, path in d["packages"]:
    m = types.ModuleType(name)
    m.__path__ = path
    sys.modules[name] = m
try:
    from pystack.runtime.images.unpacker import helper_main
except ImportError:
    for name in [n for n in sys.modules if n == "pystack" or n.startswith("pystack.")]:
        del sys.modules[name]
    import site
    site.main()
    from pystack.runtime.images.unpacker import helper_main
sys.exit(helper_main(int(sys.argv[1])))
"""


def _boot_paths() -> str:
    """What a ``python -S`` helper needs to import this package as the parent does."""
    import pystack
    import pystack.runtime
    return json.dumps({"path": [p for p in sys.path if p],
                       "packages": [["pystack", list(pystack.__path__)],
                                    ["pystack.runtime", list(pystack.runtime.__path__)]]})


class _Job:
    def __init__(self, src_fd: int, event_fd: int, dest: str, diff_id: str | None, label: str) -> None:
        from concurrent.futures import Future
        self.src_fd, self.event_fd, self.dest, self.diff_id, self.label = src_fd, event_fd, dest, diff_id, label
        self.future: Future = Future()

    def close_fds(self) -> None:
        for fd in (self.src_fd, self.event_fd):
            if fd >= 0:
                os.close(fd)
        self.src_fd = self.event_fd = -1


class _Helper:
    """One helper process and the parent's end of its socket."""

    def __init__(self) -> None:
        import socket
        import subprocess
        self.sock, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-S", "-c", _BOOT, str(child.fileno()), _boot_paths()],
                stdin=subprocess.DEVNULL, pass_fds=(child.fileno(),), close_fds=True, env=helper_env())
        except BaseException:
            self.sock.close()
            raise
        finally:
            child.close()

    def run(self, job: _Job, limits: Limits) -> UnpackResult:
        import socket
        msg = {"dest": job.dest, "diff_id": job.diff_id, "label": job.label,
               "max_bytes": limits.max_bytes, "max_entries": limits.max_entries}
        try:
            socket.send_fds(self.sock, [json.dumps(msg).encode()], [job.src_fd, job.event_fd])
            reply = self.sock.recv(1 << 16)
        except OSError:
            reply = b""
        if not reply:
            self.stop()
            raise LayerError(f"{job.label}: unpack helper died (exit status {self.proc.returncode})")
        d = json.loads(reply)
        if "error" not in d:
            return UnpackResult(d["diff_id"], d["size"], d["entries"])
        if d["error"] == "aborted":
            raise Aborted(d["message"])
        if d["error"] in _ERRORS:
            raise _ERRORS[d["error"]](d["message"])
        raise LayerError(f"{job.label}: unpack helper failed: {d['message']}")

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None and self.sock.fileno() >= 0

    def stop(self) -> None:
        """Close the socket (the helper exits after its job), reap it; kill if it hangs."""
        import subprocess
        self.sock.close()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class UnpackPool:
    """``size`` workers taking unpack jobs in order; each runs a helper process
    (``processes``) or unpacks in its own thread. Helpers start at once, so that their
    start-up overlaps the downloads."""

    def __init__(self, size: int, limits: Limits, *, processes: bool = True) -> None:
        import queue
        import threading
        self.limits, self.processes = limits, processes
        self.queue: "queue.SimpleQueue[_Job | None]" = queue.SimpleQueue()
        self.workers = [threading.Thread(target=self._work, name=f"unpack-{i}", daemon=True)
                        for i in range(max(1, size))]
        for t in self.workers:
            t.start()

    def submit(self, path: Any, feed: Any, dest: Any, *, diff_id: str | None, label: str) -> Any:
        """Unpack the blob file ``path`` (growing as ``feed`` says) into the empty ``dest``;
        returns a Future of the UnpackResult (Aborted after ``feed.abort()``)."""
        src = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            event = os.dup(feed.fd)
        except BaseException:
            os.close(src)
            raise
        job = _Job(src, event, str(dest), diff_id, label)
        self.queue.put(job)
        return job.future

    def _work(self) -> None:
        helper: _Helper | None = None
        start_error: BaseException | None = None
        if self.processes:
            try:
                helper = _Helper()
            except Exception as exc:  # the job gets it
                start_error = exc
        try:
            while (job := self.queue.get()) is not None:
                try:
                    if not job.future.set_running_or_notify_cancel():
                        continue
                    try:
                        if not self.processes:
                            result = self._in_thread(job)
                        else:
                            if helper is None or not helper.alive:
                                if start_error is not None:
                                    raise start_error
                                helper = _Helper()
                            result = helper.run(job, self.limits)
                    except BaseException as exc:
                        job.future.set_exception(exc)
                    else:
                        job.future.set_result(result)
                finally:
                    job.close_fds()
        finally:
            if helper is not None:
                helper.stop()

    def _in_thread(self, job: _Job) -> UnpackResult:
        from .layers import unpack
        reader = GrowingReader(job.src_fd, job.event_fd)
        job.src_fd = job.event_fd = -1  # the reader owns them now
        try:
            return unpack(reader, job.dest, expected_diff_id=job.diff_id, limits=self.limits,  # type: ignore[arg-type]
                          label=job.label)
        finally:
            reader.close()

    def close(self) -> None:
        """Let the workers finish their queued jobs, then stop the helpers."""
        for _ in self.workers:
            self.queue.put(None)
        for t in self.workers:
            t.join()


def serve(sock_fd: int) -> int:
    """The helper: run jobs from the socket until the parent closes it."""
    import socket
    from .layers import unpack
    sock = socket.socket(fileno=sock_fd)
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(sock, 1 << 16, 2)
        except OSError:
            return 0
        if not msg or len(fds) != 2:
            for fd in fds:
                os.close(fd)
            return 0
        job = json.loads(msg)
        reader = GrowingReader(fds[0], fds[1], watch_fd=sock_fd)
        try:
            limits = Limits(max_bytes=job["max_bytes"], max_entries=job["max_entries"])
            r = unpack(reader, job["dest"], expected_diff_id=job["diff_id"], limits=limits,  # type: ignore[arg-type]
                       label=job["label"])
            reply: dict[str, Any] = {"diff_id": r.diff_id, "size": r.size, "entries": r.entries}
        except Aborted as exc:
            reply = {"error": "aborted", "message": str(exc)}
        except DigestMismatch as exc:
            reply = {"error": "digest", "message": str(exc)}
        except LayerError as exc:
            reply = {"error": "layer", "message": str(exc)}
        except Exception as exc:
            reply = {"error": "other", "message": f"{type(exc).__name__}: {exc}"}
        finally:
            reader.close()
        try:
            sock.sendall(json.dumps(reply).encode())
        except OSError:
            return 0


def helper_main(sock_fd: int) -> int:
    os.umask(0o022)
    return serve(sock_fd)
