"""Launching a container's init, and the per-container supervisor (shim) that outlives
its caller.

``launch`` forks the container's PID 1 (after unsharing the pid namespace for it) and
waits until it reports "created" over a socket. Two callers use it, always from a
process without threads:

* the ``pystack-runtime`` command (runc's model, no shim): the command exits after
  create and the container is re-parented to the caller's subreaper (podman's conmon);
* ``spawn_shim`` for the library: a double-forked, ``setsid`` shim launches the
  container and stays its parent: it copies stdout/stderr into Docker json-file logs,
  reaps PID 1, and writes ``exit.json`` (exit code, 128+n for a signal, OOM flag), then
  exits. Spawned from the fork server it shares its pages, so it costs little memory.
"""
from __future__ import annotations

import _signal as signal  # (signal.py builds enums: ~5 ms of imports per CLI run)
import os
import _socket as socket  # the C module: socket.py costs ~2.5 ms (enum, selectors) per CLI run
import time

from pystack.runtime import cgroup_glue, minijson as json, namespaces as ns, process, rootfs
from pystack.runtime.state import proc_start_time, rfc3339, trace, write_atomic


class LaunchError(RuntimeError):
    """The container could not be created; ``exit_code`` follows Docker (127, 126, 1)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


MAX_MSG = 4 << 20


class Preforked:
    """A container init forked ahead of its container, off the start path, by a fork
    server's spare (the shim-to-be): PID 1 of a fresh pid namespace, the code it will run
    already paged in (``warm_up_init``), waiting on its socket for the request (the plan
    and the container's stdio). A start then skips the fork of the init and most of the
    copy-on-write faults of a freshly forked Python process (~3 us each on this VM).

    It fits a spec that wants a new pid namespace (almost all); for another (``pid:
    host``, a pid namespace joined by path, a time namespace) it is discarded and the init
    is forked as usual. It exits when its socket reads EOF (its spare or shim went)."""

    def __init__(self) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ns.unshare(ns.CLONE_NEWPID)
        pid = os.fork()
        if pid == 0:
            try:
                parent.close()
                process.close_fds(keep=(child.fileno(),))
                _preforked_main(child)
            finally:
                os._exit(1)
        child.close()
        self.pid = pid
        self.sock = parent

    @staticmethod
    def fits(spec: dict) -> bool:
        try:
            flags, joins = ns.split((spec.get("linux") or {}).get("namespaces") or [])
        except ValueError:
            return False  # the usual path reports the error
        return (flags & (ns.CLONE_NEWPID | ns.CLONE_NEWTIME) == ns.CLONE_NEWPID
                and not any(k in ("pid", "time") for k, _ in joins))

    def discard(self) -> None:
        """Let the waiting init go (EOF: it exits) and give our next children our own
        pid namespace again."""
        self.sock.close()
        fd = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        try:
            ns.setns(fd, ns.CLONE_NEWPID)
        finally:
            os.close(fd)


def warm_up_init() -> None:
    """Page in, in a pre-forked init while it waits, what every container's init touches
    (the spec's process part, capabilities, the cached seccomp program): its first-touch
    copy-on-write faults are then off the start path."""
    try:
        from pystack.runtime.spec import default_spec
        spec = default_spec(["true"])
        process.prepare(json.loads(json.dumps(spec)))
        rootfs.parse_options(["nosuid", "noexec", "nodev", "mode=755", "size=65536k"])
    except Exception:  # noqa: BLE001 - only an optimisation
        pass


def warm_up_shim() -> None:
    """Page in, in a spare while it waits, what the shim does on every start (parse a
    request, build and write its record): first-touch copy-on-write faults of the
    objects involved then happen off the start path."""
    try:
        from pystack.runtime.spec import default_spec
        head = {"op": "create", "dir": "/nonexistent", "stdin": False, "log": False,
                "prefork": True}
        plan = {"id": "warm-up", "dir": "/nonexistent", "bundle": "/nonexistent",
                "spec": default_spec(["true"]), "root": "/nonexistent/rootfs",
                "lowerdirs": None, "upper": None, "work": None, "cgroup_paths": {},
                "log_path": None, "log_opts": {}, "console_socket": None, "stdin": False,
                "init": False, "created": rfc3339()}
        msg = json.dumps(head).encode() + b"\n" + json.dumps(plan).encode()
        h, _, body = msg.partition(b"\n")
        json.loads(h)
        plan = json.loads(body)
        json.dumps(record(plan, os.getpid(), os.getpid())).encode()
        process.describe(OSError(2, "warm-up"))
        for sig in (signal.SIGCHLD, signal.SIGPIPE, signal.SIGINT, signal.SIGTERM,
                    signal.SIGHUP):  # the same dispositions again: the pages get written
            signal.signal(sig, signal.getsignal(sig))
        os.close(os.dup(0))
        # ... and what it does when the container exits (on the path to `wait`)
        info = {"exitCode": os.waitstatus_to_exitcode(0), "finishedAt": rfc3339(),
                "oomKilled": cgroup_glue.oom_killed({"memory": "/nonexistent"})}
        json.dumps(info)
        from pathlib import Path
        Path("/nonexistent", "exit.json").with_name(".exit.json.0")
        trace("spare: warm")
    except Exception:  # noqa: BLE001 - only an optimisation
        pass


# what a pre-forked init unshares while it waits: nearly every container wants its own
# network, IPC and UTS namespaces, and a network namespace costs ~0.5 ms to make (more
# while the kernel tears down earlier ones). Not the mount namespace: its copy of the
# host's mount table must be taken at create time (volumes mounted meanwhile).
PREUNSHARE = ns.CLONE_NEWNET | ns.CLONE_NEWIPC | ns.CLONE_NEWUTS
_NS_NAMES = {ns.CLONE_NEWNET: "net", ns.CLONE_NEWIPC: "ipc", ns.CLONE_NEWUTS: "uts"}


def _preunshare() -> list[tuple[int, int]]:
    """Unshare PREUNSHARE now; [(flag, fd of the namespace we had)] to go back to it for a
    spec that does not want a new one. [] if it failed (then nothing changed)."""
    saved = []
    try:
        for flag, name in _NS_NAMES.items():
            saved.append((flag, os.open(f"/proc/self/ns/{name}", os.O_RDONLY | os.O_CLOEXEC)))
        ns.unshare(PREUNSHARE)
    except OSError:
        for _, fd in saved:
            os.close(fd)
        return []
    return saved


def _settle_namespaces(saved: list[tuple[int, int]], wanted: int) -> int:
    """Back to our original namespace of each kind the spec does not want new; the flags
    that stay unshared (what container_main must not unshare again)."""
    done = 0
    try:
        for flag, fd in saved:
            if wanted & flag:
                done |= flag
            else:
                ns.setns(fd, flag)
    finally:
        for _, fd in saved:
            os.close(fd)
    return done


def pending(sock) -> bool:
    """Whether a message waits on ``sock`` (then getting ready stops: it is needed now)."""
    import select
    try:
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return False


def unidle(pid: int) -> None:
    """Lift process ``pid`` (a spare or pre-forked init that we just sent work) out of
    SCHED_IDLE, where it was getting ready; harmless if it is out already."""
    try:
        os.sched_setscheduler(pid, os.SCHED_OTHER, os.sched_param(0))
    except (OSError, AttributeError):
        pass


def _preforked_main(sock: socket.socket) -> None:
    """The pre-forked init: wait for the request, then become the container's init."""
    # the container's own session now (container_main would make it on the start path,
    # where a new session, a new scheduler autogroup, costs a reschedule)
    try:
        os.setsid()
    except OSError:
        pass
    if not pending(sock):
        warm_up_init()  # (under SCHED_IDLE, inherited from the spare)
    saved = _preunshare()
    try:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    except OSError:
        pass
    try:
        msg, fds = process.recv(sock, MAX_MSG)
    except OSError:
        msg, fds = b"", []
    if not msg:
        os._exit(0)
    trace("init: request")
    plan = json.loads(msg)
    high = tuple(os.dup(fd) for fd in fds[:3])
    for i, fd in enumerate(high):
        os.dup2(fd, i, inheritable=True)
    process.close_fds(keep=(sock.fileno(), *(fd for _, fd in saved)))
    try:
        prep = process.prepare(plan["spec"], seccomp_cache=plan.get("seccomp_cache"))
        done = _settle_namespaces(saved, prep.unshare_flags)
        if plan.get("init"):
            from pystack.runtime import init  # noqa: F401 - must be loaded before pivot_root
        fifo_path = os.path.join(plan["dir"], "exec.fifo")
        os.mkfifo(fifo_path)
        os.chmod(fifo_path, 0o622)  # (runc's mode) the init opens it after changing user
    except BaseException as exc:  # noqa: BLE001 - the launcher reports it
        try:
            process.send(sock, b"E" + process.describe(exc).encode(errors="replace"))
        except OSError:
            pass
        os._exit(1)
    trace("init: prepared")
    process.container_main(plan, prep, sock, fifo_path, preunshared=done)


def launch(plan: dict, stdio: tuple[int, int, int], meanwhile=None) -> tuple[int, int | None]:
    """Fork the container's init; return (host pid, pty master fd or None) once created.
    ``meanwhile(pid)`` runs while the init builds the container.

    Must run in a single-threaded process that may change its pid namespace for children
    (it unshares CLONE_NEWPID itself): the shim, or the one-shot command."""
    pid, sock, plan = begin_launch(plan, stdio)
    return finish_launch(plan, pid, sock, meanwhile)


def begin_launch(plan: dict | None, stdio: tuple[int, int, int], child: Preforked | None = None,
                 raw: bytes | None = None, prefork: bool = True
                 ) -> tuple[int, socket.socket, dict]:
    """The first half of ``launch``: the init is on its way; (its pid, our socket to it,
    the plan). With ``child`` (a pre-forked init) and ``prefork`` (the spec fits it, see
    ``Preforked.fits``) the plan (``raw``, its JSON) and ``stdio`` go to that init, and
    the plan is parsed here only then; ``plan`` may be None when ``raw`` is given."""
    trace("shim: launch")
    if child is not None:
        if prefork and raw is not None:
            try:
                process.send(child.sock, raw, list(stdio))
                unidle(child.pid)  # (sent: it is alive, the pid is its own)
                trace("shim: sent to the pre-forked init")
                _yield()
                return child.pid, child.sock, plan if plan is not None else json.loads(raw)
            except OSError:  # it died (killed by someone): fork one as usual
                pass
        child.discard()
    if plan is None:
        plan = json.loads(raw)
    prep = process.prepare(plan["spec"], seccomp_cache=plan.get("seccomp_cache"))
    trace("shim: prepared")
    if plan.get("init"):
        from pystack.runtime import init  # noqa: F401 - must be loaded before pivot_root
    fifo_path = os.path.join(plan["dir"], "exec.fifo")
    os.mkfifo(fifo_path)
    os.chmod(fifo_path, 0o622)  # (runc's mode) the init opens it after changing user
    parent, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid_join = [p for k, p in prep.joins if k == "pid"]
    if pid_join:
        fd = os.open(pid_join[0], os.O_RDONLY | os.O_CLOEXEC)
        try:
            ns.setns(fd, ns.CLONE_NEWPID)
        finally:
            os.close(fd)
    ns.unshare(prep.unshare_flags & (ns.CLONE_NEWPID | ns.CLONE_NEWTIME))
    trace("shim: fork init")
    pid = os.fork()
    if pid == 0:
        try:
            parent.close()
            high = tuple(os.dup(fd) for fd in stdio)  # no clash when stdio are 0..2 reordered
            for i, fd in enumerate(high):
                os.dup2(fd, i, inheritable=True)
            # nothing of the launcher's (reply pipes, log pipes, sockets) reaches the init
            process.close_fds(keep=(child_sock.fileno(),
                                    *range(3, 3 + int(plan.get("preserve_fds") or 0))))
            process.container_main(plan, prep, child_sock, fifo_path)
        finally:
            os._exit(1)
    trace("shim: forked init")
    child_sock.close()
    return pid, parent, plan


def finish_launch(plan: dict, pid: int, parent: socket.socket, meanwhile=None,
                  cgroups_ready=None) -> tuple[int, int | None]:
    """The second half of ``launch``: wait until the init reports "created".

    ``meanwhile(pid)`` runs first, while the init works; with ``plan["cgroups_later"]``,
    ``cgroups_ready()`` returns once the caller has created the cgroups (LaunchError if
    it could not), and the init hears "C" then."""
    fifo_path = os.path.join(plan["dir"], "exec.fifo")
    if meanwhile is not None:
        try:
            meanwhile(pid)
        except BaseException:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            parent.close()
            try:
                os.unlink(fifo_path)
            except FileNotFoundError:
                pass
            raise
    paths = plan.get("cgroup_paths") or {}
    try:
        if plan.get("cgroups_later") and cgroups_ready is not None:
            cgroups_ready()
        if process.placed_by_launcher(paths):
            process.place_in_cgroups(pid, paths)
        if plan.get("cgroups_later") or process.placed_by_launcher(paths):
            parent.send(b"C")
    except LaunchError:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        parent.close()
        try:
            os.unlink(fifo_path)
        except FileNotFoundError:
            pass
        raise
    except OSError as exc:
        # the init may have failed first (and closed its end): its message says why
        parent.settimeout(1.0)
        try:
            early, _ = process.recv(parent)
        except OSError:
            early = b""
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _, status = os.waitpid(pid, 0)
        parent.close()
        try:
            os.unlink(fifo_path)
        except FileNotFoundError:
            pass
        if early.startswith(b"E"):
            code = os.waitstatus_to_exitcode(status)
            raise LaunchError(early[1:].decode(errors="replace"), code if code > 0 else 1) from None
        raise LaunchError(f"placing the container in its cgroups: {process.describe(exc)}") from None
    try:
        msg, fds = process.recv(parent)
    finally:
        parent.close()
    trace("shim: init created")
    if not msg.startswith(b"R"):
        _, status = os.waitpid(pid, 0)
        try:
            os.unlink(fifo_path)
        except FileNotFoundError:
            pass
        code = os.waitstatus_to_exitcode(status)
        raise LaunchError((msg[1:] or b"container init died").decode(errors="replace"),
                          code if code > 0 else 1)
    return pid, (fds[0] if fds else None)


def record(plan: dict, pid: int, shim_pid: int = 0) -> dict:
    """The state.json content for a created container."""
    return {
        "id": plan["id"], "pid": pid, "pid_start": proc_start_time(pid),
        "shim_pid": shim_pid, "shim_start": proc_start_time(shim_pid) if shim_pid else None,
        "bundle": plan["bundle"], "rootfs": plan["root"],
        "annotations": (plan["spec"].get("annotations") or {}),
        "created": plan.get("created") or rfc3339(),
        "cgroup_paths": plan.get("cgroup_paths") or {},
        "log_path": plan.get("log_path"), "log_opts": plan.get("log_opts") or {},
        "stdin": plan.get("stdin_path"),
        "terminal": bool((plan["spec"].get("process") or {}).get("terminal")),
    }


def send_console(path: str, master: int) -> None:
    """Hand the pty master to ``--console-socket`` (runc's protocol: one SCM_RIGHTS msg)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        process.send(s, b"/dev/ptmx", [master])
    finally:
        s.close()


# ---------------------------------------------------------------------------------------
# the shim

def spawn_shim(plan: dict, stdio: tuple[int, int, int] | None) -> dict:
    """Double-fork a shim for ``plan``; return ``{"pid": ...}`` once the container is created
    (state.json written) or raise LaunchError. Call from a single-threaded process."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.setsid()
            if os.fork() != 0:
                os._exit(0)
            shim_main(plan, stdio, w)
        except BaseException as exc:  # noqa: BLE001 - the caller gets the message
            try:
                os.write(w, json.dumps({"error": f"shim: {process.describe(exc)}"}).encode()
                         + b"\n")
            except OSError:
                pass
        finally:
            os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    chunks = []
    while True:  # one line; other holders of the pipe may keep it open longer
        b = os.read(r, 65536)
        chunks.append(b)
        if not b or b.endswith(b"\n"):
            break
    os.close(r)
    try:
        reply = json.loads(b"".join(chunks) or b"{}")
    except ValueError:
        reply = {}
    if "pid" not in reply:
        raise LaunchError(reply.get("error") or "the shim died before the container was created",
                          reply.get("exit_code", 1))
    return reply


def _devnull_stdio() -> None:
    null = os.open(os.devnull, os.O_RDWR)
    for i in (0, 1, 2):
        os.dup2(null, i)
    if null > 2:
        os.close(null)


def shim_main(plan: dict | None, stdio: tuple[int, int, int] | None, reply: int,
              child: Preforked | None = None, raw: bytes | None = None,
              head: dict | None = None, server=None) -> None:
    """Runs in the shim: launch, report, then supervise until PID 1 exits.

    From the fork server: ``plan`` is None, ``raw`` is the plan's JSON and ``head`` the
    little the shim needs before the init gets the plan (``dir``, ``stdin``, ``log``,
    ``prefork``): the raw plan goes to ``child`` (a pre-forked init) at once, and both
    parse it meanwhile, on two CPUs. ``server`` (a socket to the fork server) is closed
    once the container is created (or failed): the server then readies the next spare."""
    info = head if plan is None else plan
    keep_stdio = tuple(os.dup(fd) for fd in stdio) if stdio else None
    _devnull_stdio()
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # only an explicit kill of the shim stops it
    pipes: dict[int, str] = {}
    child_ends: list[int] = []
    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    if keep_stdio:
        cin, cout, cerr = keep_stdio
    else:
        cin = cout = cerr = null
    stdin_keeper = None
    stdin_path = None
    if info.get("stdin"):
        stdin_path = os.path.join(info["dir"], "stdin")
        os.mkfifo(stdin_path, 0o600)
        cin, stdin_keeper = open_stdin_fifo(info, stdin_path)
        child_ends.append(cin)
    if info.get("log_path") or info.get("log"):
        out_r, cout = os.pipe()
        err_r, cerr = os.pipe()
        pipes = {out_r: "stdout", err_r: "stderr"}
        child_ends += [cout, cerr]
    try:
        pid, sock, plan = begin_launch(plan, (cin, cout, cerr), child, raw,
                                       prefork=bool(info.get("prefork", True)))
    except Exception as exc:  # noqa: BLE001 - any failure goes back to the caller
        code = getattr(exc, "exit_code", 1)
        os.write(reply, json.dumps({"error": process.describe(exc), "exit_code": code}).encode()
                 + b"\n")
        os.close(reply)
        return
    if stdin_path:
        plan["stdin_path"] = stdin_path
    writer = None
    if plan.get("log_path"):
        from pystack.runtime import jsonlog
        writer = jsonlog.JsonLogWriter(plan["log_path"], plan.get("log_opts"))
        # an interactive container (stdin open): prompts without newline reach attach at once
        writer.flush_partial = bool(plan.get("stdin"))
    state_path = os.path.join(plan["dir"], "state.json")
    aside = os.path.join(plan["dir"], f".state.json.{os.getpid()}")

    exit_fifo = []
    exit_file: list[tuple[int, str]] = []

    def write_record(pid: int) -> None:
        # while the init builds the container: state.json goes into place once it is
        # created; exit.fifo gets a byte once exit.json is written (see Runtime.wait)
        with open(aside, "wb") as f:
            f.write(json.dumps(record(plan, pid, os.getpid())).encode())
        path = os.path.join(plan["dir"], "exit.fifo")
        os.mkfifo(path, 0o600)
        exit_fifo.append(os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC))
        # exit.json's file made now, filled and renamed into place at the exit: a new
        # inode on the path from the container's exit to `wait` cost ~0.1-0.5 ms (ext4)
        tmp = os.path.join(plan["dir"], f".exit.json.{os.getpid()}")
        exit_file.append((os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                                  0o666), tmp))
        # ... and the file `start` fills with the start time (see container.start_fifo)
        os.close(os.open(os.path.join(plan["dir"], ".started"),
                         os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666))
        trace("shim: record written aside")

    def cgroups_ready() -> None:
        # the caller creates the cgroups while the init builds the mounts: "C" when done
        try:
            msg = os.read(reply, 4096)
        except OSError:
            msg = b""
        if msg != b"C":
            raise LaunchError("the caller did not create the container's cgroups")

    try:
        pid, master = finish_launch(plan, pid, sock, write_record, cgroups_ready)
    except Exception as exc:  # noqa: BLE001 - any failure goes back to the caller
        for name in (aside, os.path.join(plan["dir"], "exit.fifo"),
                     os.path.join(plan["dir"], ".started"), *(tmp for _, tmp in exit_file)):
            try:
                os.unlink(name)
            except FileNotFoundError:
                pass
        code = getattr(exc, "exit_code", 1)
        os.write(reply, json.dumps({"error": process.describe(exc), "exit_code": code}).encode()
                 + b"\n")
        os.close(reply)
        return
    for fd in child_ends + list(keep_stdio or ()):
        os.close(fd)
    # the container's mount namespace, held until the exit is reported: when PID 1 exits
    # it is then not torn down in PID 1's exit (with an overlay root, the unmount syncs
    # the upper layer's file system: milliseconds on a busy disk) but after exit.json
    try:
        mntns = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        mntns = -1
    tty_stdin = None
    if master is not None:
        if plan.get("console_socket"):
            send_console(plan["console_socket"], master)
            os.close(master)
        elif writer is not None:
            for fd in list(pipes):
                os.close(fd)
            pipes = {master: "stdout"}
            writer.flush_partial = True
            tty_stdin = open_tty_stdin(plan, master)
        else:
            os.close(master)
    os.rename(aside, state_path)
    trace("shim: state.json")
    os.write(reply, json.dumps({"pid": pid}).encode() + b"\n")
    os.close(reply)
    trace("shim: replied")
    if server is not None:
        server.close()  # the server readies the next spare now
    supervise(plan, pid, pipes, writer, tty_stdin=tty_stdin, stdin_keeper=stdin_keeper,
              exit_file=exit_file[0] if exit_file else None)
    for fd in exit_fifo:
        os.write(fd, b"x")  # exit.json is there: wake the waiters
    if mntns >= 0:
        os.close(mntns)  # (the namespace goes now; delete waits for this shim's exit)


# -- stdin (engine streams: attach -i) ------------------------------------------------------

def open_stdin_fifo(plan: dict, path: str) -> tuple[int, tuple[int, int] | None]:
    """The container's end of the stdin FIFO (read-only, blocking) and the shim's keeper:
    a write end (so the container does not see EOF between attach clients) plus a control
    FIFO ``stdin-ctl``; writing ``close`` there drops the keeper, so that the container gets
    EOF once the last writer (the attach client) is gone: Docker's ``StdinOnce``."""
    cin = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    keeper = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    os.set_blocking(cin, True)
    ctl_path = os.path.join(plan["dir"], "stdin-ctl")
    os.mkfifo(ctl_path, 0o600)
    ctl = os.open(ctl_path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    return cin, (keeper, ctl)


# -- stdin of a terminal container (engine streams: attach -i with a TTY) -------------------

def open_tty_stdin(plan: dict, master: int) -> tuple[int, int] | None:
    """With a terminal, the container reads the pty, not the stdin FIFO: the shim copies
    the FIFO (where attach clients write) into the pty master. Returns (fifo fd, master)."""
    if not plan.get("stdin_path"):
        return None
    try:
        fifo = os.open(plan["stdin_path"], os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    return fifo, master


def copy_tty_stdin(fifo: int, master: int) -> None:
    """Move what is in the FIFO to the pty master (dropped if the pty is gone)."""
    try:
        data = os.read(fifo, 65536)
    except BlockingIOError:
        return
    view = memoryview(data)
    deadline = time.monotonic() + 5.0
    while view and time.monotonic() < deadline:
        try:
            n = os.write(master, view)
            view = view[n:]
        except BlockingIOError:
            time.sleep(0.005)
        except OSError:
            return


def supervise(plan: dict, pid: int, pipes: dict[int, str], writer, tty_stdin=None,
              stdin_keeper=None, exit_file: tuple[int, str] | None = None) -> None:
    """Copy output to the log until PID 1 exits and the pipes drain; write exit.json.
    ``tty_stdin``: (FIFO fd, pty master) to copy attach input into a terminal container;
    ``stdin_keeper``: (FIFO write end, control FIFO) from open_stdin_fifo."""
    import selectors  # only the shim supervises: not on the one-shot CLI's path
    sel = selectors.DefaultSelector()
    pidfd = os.pidfd_open(pid)
    sel.register(pidfd, selectors.EVENT_READ, None)
    if tty_stdin is not None:
        sel.register(tty_stdin[0], selectors.EVENT_READ, "<stdin>")
    if stdin_keeper is not None:
        sel.register(stdin_keeper[1], selectors.EVENT_READ, "<stdin-ctl>")
    for fd, stream in pipes.items():
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ, stream)
    status = None
    deadline = None
    while pipes or status is None:
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        events = sel.select(timeout)
        if not events and deadline is not None:
            break  # something outside the pid namespace still holds the pipes
        for key, _ in events:
            if key.data is None:
                _, status = os.waitpid(pid, 0)
                trace("shim: reaped")
                sel.unregister(pidfd)
                os.close(pidfd)
                deadline = time.monotonic() + 2.0
                if tty_stdin is not None:
                    sel.unregister(tty_stdin[0])
                    os.close(tty_stdin[0])
                    tty_stdin = None
                continue
            if key.data == "<stdin>":
                if tty_stdin is not None:
                    copy_tty_stdin(*tty_stdin)
                continue
            if key.data == "<stdin-ctl>":
                try:
                    msg = os.read(key.fd, 64)
                except BlockingIOError:
                    msg = b""
                if b"close" in msg and stdin_keeper is not None:
                    sel.unregister(stdin_keeper[1])
                    for fd in stdin_keeper:
                        os.close(fd)
                    stdin_keeper = None
                continue
            try:
                data = os.read(key.fd, 65536)
            except BlockingIOError:
                continue
            except OSError:  # EIO from a pty whose slave side closed
                data = b""
            if data:
                writer.write(key.data, data)
            else:
                writer.end(key.data)
                sel.unregister(key.fd)
                os.close(key.fd)
                del pipes[key.fd]
    if writer is not None:
        writer.close()
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        code = 128 - code
    info = {"exitCode": code, "oomKilled": cgroup_glue.oom_killed(plan.get("cgroup_paths") or {}),
            "finishedAt": rfc3339()}
    path = os.path.join(plan["dir"], "exit.json")
    if exit_file is None:
        write_atomic(path, json.dumps(info))
    else:  # (an open file made at create: fill it, then rename it into place)
        fd, tmp = exit_file
        try:
            os.write(fd, json.dumps(info).encode())
        finally:
            os.close(fd)
        os.rename(tmp, path)
    trace("shim: exit.json")


# ---------------------------------------------------------------------------------------
# exec: a new process in a running container

def exec_start(plan: dict, stdio: tuple[int, int, int], sock: socket.socket) -> int:
    """Fork ``plan["spec"]["process"]`` into the namespaces and cgroups of the running
    container PID ``plan["pid"]``; return its host pid once it has exec'd, or raise
    LaunchError (exit_code 127/126/1) with the child's reason. With a terminal the child
    sends its pty master on ``sock`` first. Call in a single-threaded process; it changes
    this process's pid namespace for children."""
    prep = process.prepare(plan["spec"])
    target = plan["pid"]
    if proc_start_time(target) != plan.get("pid_start"):
        raise LaunchError("container is not running")
    fds = ns.open_joins(ns.proc_ns_paths(target))
    r, w = os.pipe()  # close-on-exec: EOF without data means the program runs
    try:
        for kind, fd in fds:
            if kind == "pid":
                ns.setns(fd, ns.CLONE_NEWPID)
        child = os.fork()
        if child == 0:
            os.close(r)
            _exec_child(plan, prep, fds, stdio, sock, w)
    finally:
        for _, fd in fds:
            os.close(fd)
        os.close(w)
    chunks = []
    while True:
        b = os.read(r, 65536)
        if not b:
            break
        chunks.append(b)
    os.close(r)
    if chunks:
        _, status = os.waitpid(child, 0)
        try:
            err = json.loads(b"".join(chunks))
        except ValueError:
            err = {"error": "exec failed", "exit_code": 1}
        raise LaunchError(err.get("error") or "exec failed", err.get("exit_code") or 1)
    return child


def exec_supervisor(plan: dict, stdio: tuple[int, int, int], sock: socket.socket,
                    server=None) -> None:
    """In a forked, single-threaded child: ``exec_start``, then report on ``sock`` (JSON
    messages) either ``{"error", "exit_code"}`` or ``{"pid"}`` and later ``{"exit"}``.
    Never returns. ``server``: closed once the process runs (see shim_main)."""
    code = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        child = exec_start(plan, stdio, sock)
        for fd in stdio:
            if fd > 2:
                os.close(fd)
        sock.send(json.dumps({"pid": child}).encode())
        if server is not None:
            server.close()
        _, status = os.waitpid(child, 0)
        code = os.waitstatus_to_exitcode(status)
        if code < 0:
            code = 128 - code
        sock.send(json.dumps({"exit": code}).encode())
        code = 0
    except BaseException as exc:  # noqa: BLE001
        try:
            sock.send(json.dumps({"error": process.describe(exc),
                                  "exit_code": getattr(exc, "exit_code", 1)}).encode())
        except OSError:
            pass
    finally:
        os._exit(code)


def _exec_child(plan: dict, prep, fds, stdio, sock: socket.socket, errfd: int) -> None:
    try:
        for i, fd in enumerate(tuple(os.dup(f) for f in stdio)):
            os.dup2(fd, i, inheritable=True)
        process.reset_signals()
        os.setsid()
        process.prctl(process.PR_SET_DUMPABLE, 0)
        process.join_cgroups(plan.get("cgroup_paths"))
        ns.join(fds, skip=("pid",))
        os.chdir("/")
        if prep.terminal:
            master, slave = process.open_pty()
            process.use_pty_slave(slave, console=False)
            process.send(sock, json.dumps({"pty": True}).encode(), [master])
            os.close(master)
        process.set_rlimits(prep)
        process.set_oom_score_adj(prep.oom_score_adj)
        process.chdir_checked(prep.cwd)
        path = process.lookup(prep)
        prep.env.setdefault("HOME", process.home_of(prep.uid))
        process.become(prep)
        process.close_fds(keep=(errfd,))
        os.execve(path, prep.args, prep.env)
    except BaseException as exc:  # noqa: BLE001
        code = 127 if isinstance(exc, FileNotFoundError) else 126 if isinstance(
            exc, PermissionError) else 1
        try:
            os.write(errfd, json.dumps({"error": process.describe(exc),
                                        "exit_code": code}).encode())
        except OSError:
            pass
        os._exit(code)
    os._exit(1)


def _yield() -> None:
    """A hand-over: the process just woken (on this CPU, often) runs now, not after the
    rest of our time slice (EEVDF lets the waker run on; each hop cost up to ~1 ms)."""
    if os.environ.get("PYSTACK_RUNTIME_YIELD") != "0":
        os.sched_yield()
