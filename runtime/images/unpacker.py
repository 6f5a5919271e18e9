"""A pool of layer unpackers: helper processes (or threads) that read a blob file as it
grows (``feed.GrowingReader``) and apply it with the safe unpacker (``layers.unpack``).

Why processes: tar parsing and per-file system calls hold the GIL, so layers unpack in
parallel only in separate interpreters. Why a pool of at most one helper per CPU that
takes layers one after the other: a helper costs an interpreter's start (a
``subprocess``, never a ``fork()`` of the threaded puller, as DESIGN.md asks; the first
helper forks the others before it has any thread), and more helpers than cores only add
that start-up; a layer whose blob is already on disk waits in the queue at no cost, its
download goes on meanwhile. The pool is shared by the pulls of a process (``shared_pool``)
and keeps its helpers ``PYSTACK_UNPACK_IDLE`` seconds (30) for the next pull.

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
import threading

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
sys.exit(helper_main(sys.argv[1]))
"""


def _boot_paths() -> str:
    """What a ``python -S`` helper needs to import this package as the parent does."""
    import pystack
    import pystack.runtime
    return json.dumps({"path": [p for p in sys.path if p],
                       "packages": [["pystack", list(pystack.__path__)],
                                    ["pystack.runtime", list(pystack.runtime.__path__)]]})


class _Job:
    def __init__(self, src_fd: int, event_fd: int, dest: str, diff_id: str | None, label: str,
                 limits: Limits) -> None:
        from concurrent.futures import Future
        self.src_fd, self.event_fd, self.dest, self.diff_id, self.label = src_fd, event_fd, dest, diff_id, label
        self.limits = limits
        self.future: Future = Future()

    def close_fds(self) -> None:
        for fd in (self.src_fd, self.event_fd):
            if fd >= 0:
                os.close(fd)
        self.src_fd = self.event_fd = -1


class _Helper:
    """One helper process and the parent's end of its socket.

    ``spawn(n)`` starts one interpreter for ``n`` helpers: it forks the other ``n - 1``
    once its imports are done (a fork of a process that has no thread yet, as DESIGN.md
    allows; ~1 ms instead of ~30 ms of CPU for another interpreter's start). Those are
    its children, reaped by the kernel (it ignores SIGCHLD), not ours: they stop when
    their socket closes, like every helper.
    """

    def __init__(self, sock: Any, proc: Any = None) -> None:
        self.sock, self.proc = sock, proc
        self.dead = False

    @classmethod
    def spawn(cls, count: int) -> "list[_Helper]":
        import socket
        import subprocess
        pairs = [socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET) for _ in range(max(1, count))]
        fds = [child.fileno() for _, child in pairs]
        try:
            proc = subprocess.Popen(
                [sys.executable, "-S", "-c", _BOOT, ",".join(map(str, fds)), _boot_paths()],
                stdin=subprocess.DEVNULL, pass_fds=fds, close_fds=True, env=helper_env())
        except BaseException:
            for ours, _ in pairs:
                ours.close()
            raise
        finally:
            for _, child in pairs:
                child.close()
        return [cls(pairs[0][0], proc)] + [cls(ours) for ours, _ in pairs[1:]]

    def run(self, job: _Job) -> UnpackResult:
        import socket
        msg = {"dest": job.dest, "diff_id": job.diff_id, "label": job.label,
               "max_bytes": job.limits.max_bytes, "max_entries": job.limits.max_entries}
        try:
            socket.send_fds(self.sock, [json.dumps(msg).encode()], [job.src_fd, job.event_fd])
            reply = self.sock.recv(1 << 16)
        except OSError:
            reply = b""
        if not reply:
            self.stop()
            status = f" (exit status {self.proc.returncode})" if self.proc is not None else ""
            raise LayerError(f"{job.label}: unpack helper died{status}")
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
        """Between jobs an idle helper sends nothing: a readable socket means it is gone."""
        import select
        if self.dead or (self.proc is not None and self.proc.poll() is not None):
            return False
        return not select.select([self.sock], [], [], 0)[0]

    def stop(self) -> None:
        """Close the socket (the helper exits after its job); reap ours, kill it if it hangs."""
        import subprocess
        self.dead = True
        self.sock.close()
        if self.proc is None:
            return
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class UnpackPool:
    """Up to ``size`` workers taking unpack jobs in order; each runs a helper process
    (``processes``) or unpacks in its own thread.

    A worker (with its helper) starts when a job finds no idle worker, so that its
    start-up overlaps the download it will read, and stops after ``idle`` seconds without
    work (``None``: only at ``close``).
    """

    def __init__(self, size: int, *, processes: bool = True, idle: float | None = None) -> None:
        import queue
        self.size, self.processes, self.idle_timeout = max(1, size), processes, idle
        self.queue: "queue.SimpleQueue[_Job | None]" = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.workers = self.idle = self.waiting = 0  # under lock
        self.threads: list[Any] = []
        self.closed = False
        self.helpers = 0                # live helper processes, spares included (under lock)
        self.spawning = False           # a spawn of several is under way (under lock)
        self.spawned = threading.Condition(self.lock)
        self.spares: list[_Helper] = []  # started, not yet taken by a worker (under lock)

    def submit(self, path: Any, feed: Any, dest: Any, *, diff_id: str | None, label: str,
               limits: Limits) -> Any:
        """Unpack the blob file ``path`` (growing as ``feed`` says) into the empty ``dest``;
        returns a Future of the UnpackResult (Aborted after ``feed.abort()``)."""
        src = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            event = os.dup(feed.fd)
        except BaseException:
            os.close(src)
            raise
        job = _Job(src, event, str(dest), diff_id, label, limits)
        with self.lock:
            if self.closed:
                job.close_fds()
                raise RuntimeError("unpack pool is closed")
            self.queue.put(job)
            self.waiting += 1
            if self.waiting > self.idle and self.workers < self.size:
                self.workers += 1
                t = threading.Thread(target=self._work, name="unpack", daemon=True)
                self.threads = [w for w in self.threads if w.is_alive()] + [t]
                t.start()
        return job.future

    def _next(self) -> _Job | None:
        """The next job, or None when this worker should stop (closed, or idle too long)."""
        import queue
        while True:
            with self.lock:
                self.idle += 1
            try:
                job = self.queue.get(timeout=self.idle_timeout)
            except queue.Empty:
                with self.lock:
                    self.idle -= 1
                    if self.waiting == 0:  # a job put meanwhile would find us still counted idle
                        self.workers -= 1
                        return None
                continue
            with self.lock:
                self.idle -= 1
                if job is None:
                    self.workers -= 1
                else:
                    self.waiting -= 1
            return job

    def _work(self) -> None:
        helper: _Helper | None = None
        try:
            while (job := self._next()) is not None:
                try:
                    if not job.future.set_running_or_notify_cancel():
                        continue
                    try:
                        if not self.processes:
                            result = self._in_thread(job)
                        else:
                            if helper is None or not helper.alive:
                                if helper is not None:
                                    self._stopped(helper)
                                helper = self._new_helper()
                            result = helper.run(job)
                    except BaseException as exc:
                        job.future.set_exception(exc)
                    else:
                        job.future.set_result(result)
                finally:
                    job.close_fds()
        finally:
            if helper is not None:
                self._stopped(helper)
            with self.lock:
                spares, self.spares = (self.spares, []) if self.workers == 0 else ([], self.spares)
            for h in spares:  # the last worker went: nobody will take them
                self._stopped(h)

    def _new_helper(self) -> _Helper:
        """A spare, or new helpers: enough for every worker the pool may have (the first
        one's interpreter forks the others)."""
        with self.spawned:
            while not self.spares and self.spawning:  # siblings are on their way
                self.spawned.wait()
            if self.spares:
                return self.spares.pop()
            count = max(1, self.size - self.helpers)
            self.helpers += count
            self.spawning = count > 1
        try:
            helpers = _Helper.spawn(count)
        except BaseException:
            with self.spawned:
                self.helpers -= count
                self.spawning = False
                self.spawned.notify_all()
            raise
        with self.spawned:
            self.spares.extend(helpers[1:])
            self.spawning = False
            self.spawned.notify_all()
        return helpers[0]

    def _stopped(self, helper: _Helper) -> None:
        if not helper.dead or helper.sock.fileno() >= 0:
            helper.stop()
        with self.lock:
            self.helpers -= 1

    def _in_thread(self, job: _Job) -> UnpackResult:
        from .layers import unpack
        reader = GrowingReader(job.src_fd, job.event_fd)
        job.src_fd = job.event_fd = -1  # the reader owns them now
        try:
            return unpack(reader, job.dest, expected_diff_id=job.diff_id, limits=job.limits,  # type: ignore[arg-type]
                          label=job.label)
        finally:
            reader.close()

    def close(self) -> None:
        """Let the workers finish their queued jobs, then stop them and their helpers."""
        with self.lock:
            self.closed = True
            for _ in range(self.workers):
                self.queue.put(None)
            threads = list(self.threads)
        for t in threads:
            t.join()


# Pools shared by every pull of this process (the engine's concurrent pulls too): at most
# one helper per core in all, and a helper that finished a pull's layers is reused by
# the next pull for a while instead of starting again.
WORKERS = int(os.environ.get("PYSTACK_UNPACK_WORKERS", "0")) or (os.cpu_count() or 1)
IDLE = float(os.environ.get("PYSTACK_UNPACK_IDLE", "30"))
_shared: dict[bool, UnpackPool] = {}
_shared_lock = threading.Lock()


def shared_pool(processes: bool = True) -> UnpackPool:
    """The process-wide pool of helpers (``processes``) or unpack threads."""
    with _shared_lock:
        pool = _shared.get(processes)
        if pool is None:
            pool = _shared[processes] = UnpackPool(WORKERS, processes=processes, idle=IDLE)
        return pool


def shutdown_shared() -> None:
    """Stop the shared pools' helpers now (tests; the benchmark's cold pulls)."""
    for pool in list(_shared.values()):
        pool.close()
    _shared.clear()


def _forget_shared() -> None:
    """A forked child has none of the parent's worker threads: it starts its own pools."""
    global _shared_lock
    _shared.clear()
    _shared_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_shared)


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


def helper_main(fds: str) -> int:
    """Serve the first socket of ``fds``; fork a sibling for each of the others first
    (single-threaded here: nothing but imports has run)."""
    os.umask(0o022)
    socks = [int(fd) for fd in fds.split(",")]
    if len(socks) > 1:
        import signal
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the siblings
        for fd in socks[1:]:
            if os.fork() == 0:
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                for other in socks:
                    if other != fd:
                        os.close(other)
                os._exit(serve(fd))
            os.close(fd)
    return serve(socks[0])
