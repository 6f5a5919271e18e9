"""A single-threaded helper that forks containers' shims and exec supervisors.

The engine is asyncio + threads, and a process with threads must never ``fork()``. So
each :class:`~pystack.runtime.container.Runtime` starts this helper once (one
``python -m pystack.runtime.forkserver``, ~20 ms, paid once). A request is one
``SOCK_SEQPACKET`` message: a small JSON head (op, and what the shim needs first), a
newline, the plan's JSON, plus file descriptors (a reply socket, then the stdio to give
the container). It goes to a child forked in advance, the *spare*, whose socket this
helper hands to the caller (see ``serve``); the spare does the work (the shim, or
``exec_supervisor``) and answers on the reply socket itself, so requests from many
threads run in parallel. A spare gets ready while nothing else needs the CPU
(SCHED_IDLE): it forks the next container's init (a new pid namespace; that init makes
its network, IPC and UTS namespaces and pages in its code while it waits, see
``shim.Preforked``) and pages in its own code.

Forking from this small, already-imported process is what makes a start take a few
milliseconds, and the shims it forks share its pages (low memory per container).
The helper exits when the control socket closes (its Runtime, or the whole caller, went).

A/B knobs for measurements (environment of the Runtime's process): PYSTACK_RUNTIME_SPARES=N
and PYSTACK_RUNTIME_SPARE_DELAY_MS=ms (1 and 0: the earlier behaviour), PYSTACK_RUNTIME_PREFORK=0
(no pre-forked init), PYSTACK_RUNTIME_DIRECT=0 (requests through this helper),
PYSTACK_RUNTIME_IDLE=0 (no SCHED_IDLE), PYSTACK_RUNTIME_YIELD=0 (no yield at hand-overs).
"""
from __future__ import annotations

import gc
import json
import os
import signal
import socket
import sys

from pystack.runtime.state import trace

MAX_MSG = 4 << 20
# PYSTACK_RUNTIME_PREFORK=0: no pre-forked init in the spares (A/B measurements)
_PREFORK = os.environ.get("PYSTACK_RUNTIME_PREFORK", "1") != "0"
# spares kept ready (PYSTACK_RUNTIME_SPARES), and how long after a start the used one is
# replaced while another is left (PYSTACK_RUNTIME_SPARE_DELAY_MS)
_SPARES = max(1, int(os.environ.get("PYSTACK_RUNTIME_SPARES", "2")))
_SPARE_DELAY = float(os.environ.get("PYSTACK_RUNTIME_SPARE_DELAY_MS", "30")) / 1000


def serve(control: socket.socket) -> None:
    """Answer requests until the control socket is closed.

    Forked children, the *spares* (``_SPARES``, 2 by default), wait ready, and their
    sockets are handed to the caller (an ``offer``: a ``spare`` message with the fd): the
    caller sends its next request to one directly, without a hop through this process, and
    it becomes that request's shim or exec supervisor. A used spare is replaced once it is
    past its start (its socket reads EOF here: the container is created, the exec'd
    process runs), and while another spare is left, only ``_SPARE_DELAY`` later: forking
    and paging in a spare is kernel work that a CPU cannot preempt (PREEMPT_NONE), and
    right after a start it landed in the middle of the next one (with one spare, that
    cost a start ~25 % at load 4-8 on 2 CPUs). Requests sent here (no spare at the caller's hand: bursts) get a
    child forked on the spot. A spare holds nothing of the caller's; it exits when this
    helper and the caller have both closed their ends of its socket."""
    import select
    from pystack.runtime import process, shim  # noqa: F401 - inherited by the children
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    warm_up()
    gc.collect()
    gc.freeze()  # keep the shared pages shared in the forked shims
    busy: dict[int, socket.socket] = {}  # spares offered or serving, until past their start
    poller = select.poll()
    poller.register(control, select.POLLIN)
    control.send(b"ready")

    def offer() -> None:
        spare = _fork_spare(control)
        trace("forkserver: new spare")
        try:
            # with its pid: the caller lifts it out of SCHED_IDLE when it sends a request
            process.send(control, b"spare %d" % _LAST_PID[0], [spare.fileno()])
        except OSError:
            spare.close()
            return
        busy[spare.fileno()] = spare
        poller.register(spare, select.POLLIN)

    def replenish() -> None:
        _set_idle(True)  # the fork itself, on a CPU nothing else needs
        while len(busy) < _SPARES:
            n = len(busy)
            offer()
            if len(busy) == n:
                break  # (the caller went)
        _set_idle(False)

    import time
    replenish()
    due: float | None = None  # when to fork the spares that are missing
    while True:
        timeout = None if due is None else max(0, int((due - time.monotonic()) * 1000) + 1)
        try:
            events = poller.poll(timeout)
        except InterruptedError:
            continue
        request = False
        for fd, _ in events:
            if fd == control.fileno():
                request = True
                continue
            done = busy.pop(fd, None)  # (EOF or error: past its start, or gone)
            if done is not None:
                poller.unregister(fd)
                done.close()
                if due is None:
                    due = time.monotonic() + (_SPARE_DELAY if busy else 0.0)
        if request:
            try:
                msg, fds = process.recv(control, MAX_MSG)
            except (ConnectionResetError, OSError):
                return
            if not msg:
                return
            trace("forkserver: request")
            if msg.startswith(b"{"):  # (the spare parses it: not twice on the path)
                child = _fork_spare(control, ready=True)
                try:
                    process.send(child, msg, fds)
                finally:
                    for fd in fds:
                        os.close(fd)
                trace("forkserver: to spare")
                _yield()
                busy[child.fileno()] = child
                poller.register(child, select.POLLIN)
            else:
                for fd in fds:
                    os.close(fd)
        if not busy or (due is not None and time.monotonic() >= due):
            # none left: at once; else a while after a start, so that the fork and the
            # new spare's getting ready (kernel work a CPU cannot preempt) do not land in
            # the middle of the next start, which another spare serves meanwhile
            due = None
            replenish()


def _fork_spare(control: socket.socket, ready: bool = False) -> socket.socket:
    """Fork a child that waits for one request; our end of its socket. ``ready``: for a
    request at hand (no pre-forked init, no paging in first)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid == 0:
        try:
            from pystack.runtime import process, shim
            # nothing of the server's: not the control socket, not the other spares'
            # sockets (each spare exits when its socket's other end, ours, is closed)
            process.close_fds(keep=(theirs.fileno(),))
            control.detach()
            ours.detach()
            child = None
            if not ready:
                # getting ready (forking the init, paging in) is off any start's path:
                # it runs only when a CPU has nothing else to do
                _set_idle(True)
                _own_session()
                if _PREFORK:
                    try:
                        child = shim.Preforked()  # the init of the next container, waiting
                    except OSError:
                        child = None
                if not shim.pending(theirs):  # a request already waits: no more getting ready
                    shim.warm_up_shim()  # after the last fork: a fork shares our pages again
                _set_idle(False)
            try:
                msg, fds = process.recv(theirs, MAX_MSG)
            except OSError:
                msg, fds = b"", []
            trace("spare: request")
            if msg:
                head, _, body = msg.partition(b"\n")
                # ``theirs`` stays open until the start is done: its EOF tells the server
                # to get the next spare ready
                _handle(json.loads(head), body, fds, child, theirs)
        finally:
            os._exit(0)
    theirs.close()
    _LAST_PID[0] = pid
    return ours


_LAST_PID = [0]  # the pid of the last child _fork_spare forked


def _handle(head: dict, body: bytes, fds: list[int], child=None, server=None) -> None:
    """In a forked child: become the shim (or exec supervisor) of one request: ``head``
    (op and what the shim needs first), ``body`` the plan's JSON. ``server``: our socket
    to the fork server, closed once the start is done."""
    from pystack.runtime import process, shim
    if head.get("op") == "exec" and child is not None:
        child.discard()
        child = None
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    reply = socket.socket(fileno=fds[0])
    stdio = tuple(fds[1:4]) if len(fds) >= 4 else None
    if head.get("op") == "exec":
        shim.exec_supervisor(json.loads(body), stdio or _null3(), reply, server)
    # this child becomes the shim itself (no double fork: the helper ignores
    # SIGCHLD, so it never waits for it, and setsid detaches it from the caller)
    fd = reply.detach()
    try:
        _own_session()
        shim.shim_main(None, stdio, fd, child, body, head, server)
    except BaseException as exc:  # noqa: BLE001 - sent back to the caller
        try:
            os.write(fd, json.dumps({"error": f"shim: {process.describe(exc)}"}).encode())
        except OSError:
            pass
    finally:
        os._exit(0)


def _own_session() -> None:
    """setsid(), unless done: a spare does it while getting ready. (A new session is a new
    scheduler autogroup: the call moves the process into a fresh task group, which then
    waits behind the running ones; on the start path that cost the shim up to ~1 ms.)"""
    if os.getsid(0) != os.getpid():
        os.setsid()


def _set_idle(on: bool) -> None:
    """SCHED_IDLE (on) or back to SCHED_OTHER for this process (root may do both)."""
    if os.environ.get("PYSTACK_RUNTIME_IDLE") == "0":
        return
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE if on else os.SCHED_OTHER, os.sched_param(0))
    except (OSError, AttributeError):
        pass


def warm_up() -> None:
    """Do once here what every container would redo in its forked child: import the spec
    and capability code, and compile Docker's default seccomp profile (part B's module
    caches programs by content, and the forked children inherit the cache)."""
    from pystack.runtime import process
    try:
        import selectors  # noqa: F401 - the shim's supervise loop
        from pystack.runtime import cgroups, jsonlog  # noqa: F401 - used by every shim
        from pystack.runtime.spec import default_spec
        process.prepare(default_spec(["true"]))
    except Exception:  # noqa: BLE001 - only an optimisation
        pass


def _null3() -> tuple[int, int, int]:
    null = os.open(os.devnull, os.O_RDWR)
    return (null, null, null)


def main() -> None:
    fd = int(sys.argv[1])
    control = socket.socket(fileno=fd)
    os.set_inheritable(fd, False)
    try:
        serve(control)
    except KeyboardInterrupt:
        pass


def _yield() -> None:
    """A hand-over: the process just woken (on this CPU, often) runs now, not after the
    rest of our time slice (EEVDF lets the waker run on; each hop cost up to ~1 ms)."""
    if os.environ.get("PYSTACK_RUNTIME_YIELD") != "0":
        os.sched_yield()


if __name__ == "__main__":
    main()
