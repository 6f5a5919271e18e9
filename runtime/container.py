"""``Runtime``: OCI bundles in, isolated processes out (see docs/contracts.md).

The library the engine calls. ``create`` checks the bundle, makes the container's state
directory and cgroups, and asks a single-threaded helper to spawn a shim that launches
the container's init (it stops at "created"); ``start`` releases it. All the state is in
files (state.py), so any process, and the ``pystack-runtime`` command, sees the same
containers.

Spawning goes through the fork server (forkserver.py) unless the caller is known to be
single-threaded and asks for ``spawner="direct"`` (the CLI does): a process with threads
never forks here.
"""
from __future__ import annotations

import _signal as signal  # (signal.py builds enums: ~5 ms of imports per CLI run)
import os
import select
import time

from pystack.errors import Conflict, NotFound, UserError
from pystack.runtime import cgroup_glue, minijson as json
from pystack.runtime.state import (StateDir, oci_state_of, proc_start_time, rfc3339, trace,
                                   write_atomic)


class ContainerError(UserError):
    """A container could not be created, started or exec'd; exit code as Docker's."""


def parse_signal(sig: int | str) -> int:
    """``9``, ``"KILL"``, ``"SIGKILL"``, ``signal.SIGKILL`` -> 9; UserError otherwise."""
    if isinstance(sig, int):
        return int(sig)
    text = str(sig).strip().upper()
    if text.isdigit():
        return int(text)
    name = text if text.startswith("SIG") else "SIG" + text
    # the names of signal.Signals: _signal's SIG* constants but its handlers (SIG_DFL...)
    value = None if name.startswith("SIG_") else getattr(signal, name, None)
    if not isinstance(value, int):
        raise UserError(f"unknown signal {sig!r}")
    return int(value)


class ExecProcess:
    """A process started by ``Runtime.exec``: its host pid, its stdio ends and its exit.

    (A plain class, not a dataclass: ``dataclasses`` imports ``inspect``, which the
    one-shot ``pystack-runtime`` command would pay for on every run.)"""

    def __init__(self, pid: int, _sock: socket.socket, stdin=None, stdout=None, stderr=None,
                 pty: int | None = None) -> None:
        self.pid = pid
        self._sock = _sock
        self.stdin, self.stdout, self.stderr = stdin, stdout, stderr
        self.pty = pty
        self.returncode: int | None = None

    def wait(self, timeout: float | None = None) -> int:
        """The exit code (128+n for a signal); TimeoutError after ``timeout`` seconds."""
        import socket  # (not at import time: the CLI does not need it)
        if self.returncode is not None:
            return self.returncode
        self._sock.settimeout(timeout)
        try:
            while True:
                msg = self._sock.recv(65536)
                if not msg:
                    raise ContainerError("exec supervisor died without an exit status")
                reply = json.loads(msg)
                if "exit" in reply:
                    self.returncode = int(reply["exit"])
                    self._sock.close()
                    return self.returncode
        except socket.timeout:
            raise TimeoutError(f"exec {self.pid} still running") from None

    # -- for event loops (the engine's exec streams): wait without holding a thread -----

    def fileno(self) -> int:
        """The supervisor socket: readable once the exit status (or EOF) has arrived."""
        return self._sock.fileno()

    def poll(self) -> int | None:
        """The exit code if it has arrived, else None; never blocks."""
        import socket  # (not at import time: the CLI does not need it)
        if self.returncode is not None:
            return self.returncode
        try:
            msg = self._sock.recv(65536, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return None
        if not msg:
            raise ContainerError("exec supervisor died without an exit status")
        reply = json.loads(msg)
        if "exit" in reply:
            self.returncode = int(reply["exit"])
            self._sock.close()
        return self.returncode

    def kill(self, sig: int | str = signal.SIGKILL) -> None:
        try:
            os.kill(self.pid, parse_signal(sig))
        except ProcessLookupError:
            pass

    def close(self) -> None:
        for f in (self.stdin, self.stdout, self.stderr):
            if f is not None:
                f.close()
        if self.pty is not None:
            os.close(self.pty)
            self.pty = None
        self._sock.close()


class _ForkServer:
    """Client of one forkserver process (started lazily, shared by threads)."""

    def __init__(self) -> None:
        import socket  # (not at import time: the CLI does not need it)
        import subprocess
        import sys
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pystack.runtime.forkserver", str(theirs.fileno())],
            pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, start_new_session=True)
        theirs.close()
        self.sock = ours
        ready = ours.recv(16)
        if ready != b"ready":
            raise ContainerError("the runtime's fork server did not start")
        import _thread
        self._lock = _thread.allocate_lock()
        self._spares: list = []  # sockets of spares the server offered us (see forkserver)

    def _take_spare(self):
        """A spare offered by the server (its socket), or None: offers arrive on the
        control socket as ``spare`` messages carrying the fd."""
        import socket
        from pystack.runtime import process
        with self._lock:
            while True:
                try:
                    msg, anc, _, _ = self.sock.recvmsg(16, socket.CMSG_LEN(16), socket.MSG_DONTWAIT)
                except (BlockingIOError, InterruptedError):
                    break
                fds = process.fds_of(anc)
                word, _, pid = msg.partition(b" ")
                if word != b"spare" or len(fds) != 1:
                    for fd in fds:
                        os.close(fd)
                    if not msg:
                        break
                    continue
                self._spares.append((socket.socket(fileno=fds[0]),
                                     int(pid) if pid.isdigit() else 0))
            return self._spares.pop(0) if self._spares else None

    def request(self, op: str, plan: dict, stdio: tuple[int, int, int] | None) -> socket.socket:
        """Send ``op`` with ``plan``: one message, a small JSON head (what the shim needs
        before it hands the plan to a pre-forked init), a newline, the plan's JSON."""
        import socket  # (not at import time: the CLI does not need it)
        from pystack.runtime import process, shim
        head: dict = {"op": op}
        if op == "create":
            head.update(dir=plan["dir"], stdin=bool(plan.get("stdin")),
                        log=bool(plan.get("log_path")),
                        prefork=shim.Preforked.fits(plan["spec"]))
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            fds = [theirs.fileno()] + list(stdio or ())
            msg = json.dumps(head).encode() + b"\n" + plan_json(plan)
            # (PYSTACK_RUNTIME_DIRECT=0: every request through the server, for A/B runs)
            direct = os.environ.get("PYSTACK_RUNTIME_DIRECT", "1") != "0"
            taken = self._take_spare() if direct else None
            sent = False
            if taken is not None:
                spare, pid = taken
                try:
                    process.send(spare, msg, fds)  # straight to it: no hop through the server
                    sent = True
                except OSError:  # it died (killed by someone): the server forks one
                    pass
                finally:
                    spare.close()
                if sent and pid:
                    # it may still be getting ready under SCHED_IDLE: now it is needed
                    # (sent, so it is alive and the pid is its own)
                    shim.unidle(pid)
            if not sent:
                process.send(self.sock, msg, fds)
        finally:
            theirs.close()
        return mine

    def close(self) -> None:
        with self._lock:
            for spare, _ in self._spares:
                spare.close()
            self._spares.clear()
        self.sock.close()
        try:
            self.proc.wait(5)
        except Exception:  # noqa: BLE001
            self.proc.kill()
            self.proc.wait()


class Runtime:
    """Containers under one state directory (like ``runc --root``)."""

    def __init__(self, state_dir: str | os.PathLike | None = None, *,
                 spawner: str = "auto") -> None:
        if state_dir is None:
            from pystack.paths import run_root
            state_dir = run_root() / "runtime"
        self.states = StateDir(state_dir)
        self.spawner = spawner
        self._fs: _ForkServer | None = None
        import _thread  # not threading: the one-shot CLI does not need its import
        self._lock = _thread.allocate_lock()

    # -- spawning -----------------------------------------------------------------------

    def _direct(self) -> bool:
        if self.spawner == "direct":
            return True
        if self.spawner == "forkserver":
            return False
        return False  # "auto": the fork server, so that a caller's threads never matter

    def _server(self) -> _ForkServer:
        with self._lock:
            if self._fs is None or self._fs.proc.poll() is not None:
                self._fs = _ForkServer()
            return self._fs

    def _request(self, op: str, plan: dict, stdio) -> socket.socket:
        """Send a request to the fork server, restarting it once if it died (killed by
        someone, OOM): containers and shims do not depend on it, only new requests do."""
        try:
            return self._server().request(op, plan, stdio)
        except (BrokenPipeError, ConnectionResetError, ConnectionRefusedError):
            with self._lock:
                if self._fs is not None:
                    self._fs.proc.poll()
                    self._fs = None
            return self._server().request(op, plan, stdio)

    def close(self) -> None:
        """Stop the fork server (containers and their shims keep running)."""
        with self._lock:
            if self._fs is not None:
                self._fs.close()
                self._fs = None

    def __enter__(self) -> "Runtime":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- lifecycle ------------------------------------------------------------------------

    def create(self, id: str, bundle: str | os.PathLike, *, log_path=None, log_opts=None,
               console_socket=None, stdin: bool = False, rootfs_lowerdirs=None,
               rootfs_upper=None, rootfs_work=None,
               stdio: tuple[int, int, int] | None = None, init: bool | None = None) -> dict:
        """Create container ``id`` from ``bundle`` (stopped before the user's program).

        ``stdio``: three fds for the container's stdin/stdout/stderr (default /dev/null,
        or pipes into ``log_path``). ``init``: put pystack's init as PID 1 (default: the
        ``org.pystack.init`` annotation)."""
        trace("create")
        bundle = os.path.abspath(bundle)
        spec, spec_text = load_bundle_text(bundle)
        if init is None:
            init = (spec.get("annotations") or {}).get("org.pystack.init") == "true"
        root = (spec.get("root") or {}).get("path") or "rootfs"
        root = os.path.normpath(os.path.join(bundle, root))
        if not os.path.isdir(root):
            raise UserError(f"root.path {root} is not a directory")
        if rootfs_lowerdirs and (bool(rootfs_upper) != bool(rootfs_work)):
            raise UserError("rootfs_upper and rootfs_work must be given together")
        d = self.states.make_dir(id)
        paths: dict[str, str] = {}
        later = not self._direct()
        try:
            trace("create: bundle loaded, state dir")
            try:
                # through the fork server the cgroups are made while the container's
                # init builds its mounts (it joins them after: see process.container_main)
                paths = cgroup_glue.paths_for(spec, id) if later else cgroup_glue.setup(spec, id)
            except (OSError, ValueError) as exc:
                raise ContainerError(f"cgroups for {id}: {exc}") from None
            trace("create: cgroups")
            plan = {
                "id": id, "dir": str(d), "bundle": bundle, "spec": spec, "root": root,
                "lowerdirs": [str(p) for p in rootfs_lowerdirs] if rootfs_lowerdirs else None,
                "upper": str(rootfs_upper) if rootfs_upper else None,
                "work": str(rootfs_work) if rootfs_work else None,
                "cgroup_paths": paths, "log_path": str(log_path) if log_path else None,
                "log_opts": dict(log_opts or {}), "console_socket": console_socket,
                "stdin": bool(stdin), "init": bool(init), "created": rfc3339(),
                "cgroups_later": later,
            }
            if later:
                plan["spec_text"] = spec_text  # (see plan_json; the shim gets JSON only)
            if log_opts:
                from pystack.runtime.jsonlog import parse_size
                try:
                    parse_size(log_opts.get("max-size"))
                    int(log_opts.get("max-file", 1))
                except ValueError as exc:
                    raise UserError(str(exc)) from None
            reply = self._spawn_shim(plan, stdio, spec if later else None)
        except BaseException:
            try:
                cgroup_glue.kill_all(paths)
                cgroup_glue.remove(paths)
            finally:
                _rmtree(d)
            raise
        trace("create: done")
        # what state(id) reads back from the files the shim just wrote
        return oci_state_of({"id": id, "pid": reply["pid"], "bundle": bundle, "rootfs": root,
                             "created": plan["created"], "annotations": spec.get("annotations"),
                             "stdin": os.path.join(d, "stdin") if stdin else None}, "created")

    def _spawn_shim(self, plan: dict, stdio, spec: dict | None = None) -> dict:
        """Have a shim launch ``plan``; with ``spec``, create the cgroups (``plan``'s
        ``cgroups_later``) while it does, then tell it "C" (or why not)."""
        from pystack.runtime import shim
        if self._direct():
            try:
                return shim.spawn_shim(plan, stdio)
            except shim.LaunchError as exc:
                raise ContainerError(str(exc), exit_code=exc.exit_code) from None
        sock = self._request("create", plan, stdio)
        trace("create: sent")
        _yield()
        try:
            failure: BaseException | None = None
            if spec is not None:
                try:
                    cgroup_glue.setup(spec, plan["id"])
                except (OSError, ValueError) as exc:
                    failure = ContainerError(f"cgroups for {plan['id']}: {exc}")
                except BaseException as exc:  # UserError (a refused limit), interrupts
                    failure = exc
                trace("create: cgroups made")
                try:
                    sock.send(b"C" if failure is None else b"X")
                except OSError:
                    pass  # the shim failed already: its reply says why
            # after a failure, the reply (or EOF) also says the shim is done with the
            # state directory that our caller removes next
            reply = json.loads(sock.recv(65536) or b"{}")
            if failure is not None:
                raise failure
        finally:
            sock.close()
        trace("create: reply")
        if "pid" not in reply:
            raise ContainerError(reply.get("error") or "container creation failed",
                                 exit_code=reply.get("exit_code") or 1)
        return reply

    def start(self, id: str) -> None:
        """Let a created container run its program."""
        rec = self.states.load(id)
        status = self.states.status(id, rec)
        if status != "created":
            raise Conflict(f"container {id} is {status}, not created: cannot start")
        trace("start")
        start_fifo(self.states.dir(id), rec)
        trace("start: done")

    def state(self, id: str) -> dict:
        return self.states.oci_state(id)

    def list(self) -> list[dict]:
        out = []
        for cid in self.states.ids():
            try:
                out.append(self.state(cid))
            except (NotFound, ValueError):
                continue
        return out

    def kill(self, id: str, sig: int | str = signal.SIGTERM, all: bool = False) -> None:
        """Signal PID 1 (or, with ``all``, every process of the container's cgroup)."""
        signum = parse_signal(sig)
        rec = self.states.load(id)
        status = self.states.status(id, rec)
        if status == "stopped":
            raise Conflict(f"container {id} is not running")
        if all:
            cgroup_glue.kill_all(rec.get("cgroup_paths") or {}, signum)
            return
        signal_pid(rec, signum)

    def wait(self, id: str, timeout: float | None = None) -> int:
        """Block until the container exits; its exit code (128+n for signal n)."""
        rec = self.states.load(id)
        deadline = None if timeout is None else time.monotonic() + timeout
        d = self.states.dir(id)
        # the shim writes one byte into exit.fifo once exit.json is in place, then exits:
        # polling the fifo (never reading it) wakes every waiter then, not after the
        # shim's own teardown (~0.5 ms). Opened first, so that the byte cannot be missed.
        try:
            fifo = os.open(os.path.join(d, "exit.fifo"), os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            fifo = -1
        try:
            while True:
                info = self.states.exit_info(id)
                if info is not None:
                    trace("wait: done")
                    return int(info["exitCode"])
                shim_pid = rec.get("shim_pid") or 0
                if shim_pid and proc_start_time(shim_pid) == rec.get("shim_start"):
                    waiter = shim_pid
                elif proc_start_time(rec.get("pid") or 0) == rec.get("pid_start"):
                    waiter = rec["pid"]
                else:
                    info = self.states.exit_info(id)
                    if info is not None:
                        return int(info["exitCode"])
                    if not os.path.exists(d):
                        raise NotFound(f"container {id} does not exist")
                    return 255  # no shim recorded an exit status (killed shim or CLI-created)
                try:
                    pidfd = os.pidfd_open(waiter)
                except ProcessLookupError:
                    continue
                try:
                    left = None if deadline is None else max(0.0, deadline - time.monotonic())
                    r, _, _ = select.select([pidfd] + ([fifo] if fifo >= 0 else []), [], [],
                                            left)
                finally:
                    os.close(pidfd)
                if fifo >= 0 and fifo in r and pidfd not in r:
                    if self.states.exit_info(id) is None:  # not the shim's byte: stop polling it
                        os.close(fifo)
                        fifo = -1
                if not r:
                    raise TimeoutError(f"container {id} still running after {timeout}s")
        finally:
            if fifo >= 0:
                os.close(fifo)

    def pause(self, id: str) -> None:
        rec = self.states.load(id)
        if self.states.status(id, rec) != "running":
            raise Conflict(f"container {id} is not running")
        cgroup_glue.freeze(rec.get("cgroup_paths") or {}, True)

    def resume(self, id: str) -> None:
        rec = self.states.load(id)
        if self.states.status(id, rec) != "paused":
            raise Conflict(f"container {id} is not paused")
        cgroup_glue.freeze(rec.get("cgroup_paths") or {}, False)

    def ps(self, id: str) -> list[int]:
        """Host pids of every process in the container."""
        return cgroup_glue.pids(self.states.load(id).get("cgroup_paths") or {})

    def stats(self, id: str) -> dict:
        return cgroup_glue.stats(self.states.load(id).get("cgroup_paths") or {})

    def delete(self, id: str, force: bool = False) -> None:
        """Remove a stopped (or, with ``force``, any) container: processes, cgroups, files."""
        rec = self.states.load(id)
        status = self.states.status(id, rec)
        paths = rec.get("cgroup_paths") or {}
        if status in ("running", "paused") and not force:
            raise Conflict(f"cannot delete container {id} that is {status}: stop it or use force")
        if status != "stopped":
            if status == "paused":
                cgroup_glue.freeze(paths, False)
            signal_pid(rec, signal.SIGKILL)
        # a shared pid namespace leaves other processes alive when PID 1 dies
        cgroup_glue.kill_all(paths, signal.SIGKILL)
        wait_gone(rec)
        deadline = time.monotonic() + 10
        while cgroup_glue.pids(paths) and time.monotonic() < deadline:
            cgroup_glue.kill_all(paths, signal.SIGKILL)
            time.sleep(0.005)
        cgroup_glue.remove(paths)
        _rmtree(self.states.dir(id))

    # -- exec -----------------------------------------------------------------------------

    def exec(self, id: str, process: dict, *, tty: bool = False, console_socket=None,
             stdio: tuple[int, int, int] | None = None, detach: bool = False) -> ExecProcess:
        """Run ``process`` (an OCI process object) in the running container ``id``.

        Without ``stdio`` the result has pipes ``stdin``/``stdout``/``stderr`` (or, with
        ``tty``, a pty master fd in ``pty`` unless ``console_socket`` takes it).
        Missing fields (env, cwd, user, capabilities, rlimits) come from the container's
        own process, as runc does."""
        rec = self.states.load(id)
        status = self.states.status(id, rec)
        if status != "running":
            raise Conflict(f"container {id} is {status}: cannot exec")
        spec = load_bundle(rec["bundle"])
        base = dict(spec.get("process") or {})
        proc = {**base, **process}
        proc["terminal"] = bool(tty or process.get("terminal"))
        spec["process"] = proc
        plan = {"id": id, "spec": spec, "pid": rec["pid"], "pid_start": rec["pid_start"],
                "cgroup_paths": rec.get("cgroup_paths") or {}}
        mine: list = []
        ends: tuple[int, int, int]
        files: list = [None, None, None]
        if stdio is not None:
            ends = tuple(stdio)  # type: ignore[assignment]
        elif detach and not tty:
            # nobody will read pipes: the process gets /dev/null, as `docker exec -d` does
            null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
            ends = (null, null, null)
            mine = [null]
        else:
            null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
            r0, w0 = os.pipe()
            r1, w1 = os.pipe()
            r2, w2 = os.pipe()
            ends = (r0, w1, w2)
            mine = [r0, w1, w2, null]
            if tty:
                ends = (null, null, null)
                for fd in (r0, w0, r1, w1, r2, w2):
                    os.close(fd)
                mine = [null]
            else:
                files = [os.fdopen(w0, "wb", buffering=0), os.fdopen(r1, "rb", buffering=0),
                         os.fdopen(r2, "rb", buffering=0)]
        try:
            sock = self._exec_request(plan, ends)
        finally:
            for fd in mine:
                os.close(fd)
        pty = None
        while True:  # the child's {"pty"} (with a terminal) comes before {"pid"} or {"error"}
            reply, fds = _recv_json(sock)
            if reply.get("pty"):
                pty = fds[0] if fds else None
                continue
            break
        if "pid" not in reply:
            sock.close()
            if pty is not None:
                os.close(pty)
            for f in files:
                if f is not None:
                    f.close()
            raise ContainerError(reply.get("error") or "exec failed",
                                 exit_code=reply.get("exit_code") or 1)
        ep = ExecProcess(pid=reply["pid"], _sock=sock, stdin=files[0], stdout=files[1],
                         stderr=files[2], pty=pty)
        if pty is not None and console_socket:
            from pystack.runtime.shim import send_console
            send_console(console_socket, pty)
            os.close(pty)
            ep.pty = None
        return ep

    def _exec_request(self, plan: dict, stdio: tuple[int, int, int]) -> socket.socket:
        import socket  # (not at import time: the CLI does not need it)
        if not self._direct():
            return self._request("exec", plan, stdio)
        from pystack.runtime import shim
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            mine.close()
            shim.exec_supervisor(plan, stdio, theirs)
        theirs.close()
        threading_reap(pid)
        return mine


def _rmtree(path) -> None:
    """Remove a container's state directory (flat: a few files and fifos)."""
    try:
        with os.scandir(path) as entries:
            for e in entries:
                if e.is_dir(follow_symlinks=False):
                    raise IsADirectoryError(e.path)
                os.unlink(e.path)
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError:
        import shutil  # lazily: shutil pulls in bz2/lzma, ~10 ms on the CLI's path
        shutil.rmtree(path, ignore_errors=True)


def _recv_json(sock: socket.socket) -> tuple[dict, list[int]]:
    from pystack.runtime import process
    msg, fds = process.recv(sock)
    if not msg:
        return {}, fds
    return json.loads(msg), fds


def threading_reap(pid: int) -> None:
    """The direct-mode exec supervisor is our child: reap it when it ends (no zombie)."""
    import threading
    def reap() -> None:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
    threading.Thread(target=reap, daemon=True).start()


def load_bundle(bundle: str) -> dict:
    """config.json of a bundle, checked by part B's validate_spec; one-line errors."""
    return load_bundle_text(bundle)[0]


def load_bundle_text(bundle: str) -> tuple[dict, str]:
    """``load_bundle``, and the file's text: a create sends that text on as the plan's
    spec (re-encoding the ~12 KB spec cost the caller ~0.1-0.2 ms per start)."""
    path = os.path.join(bundle, "config.json")
    try:
        with open(path) as f:
            text = f.read()
        spec = json.loads(text)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file (not an OCI bundle)") from None
    except ValueError as exc:
        raise UserError(f"{path}: invalid JSON: {exc}") from None
    from pystack.runtime.spec import validate_spec
    validate_spec(spec)
    return spec, text


def plan_json(plan: dict) -> bytes:
    """The plan's JSON; its spec as the bundle's own text when the plan carries it
    (``spec_text``: the JSON text of ``plan["spec"]``, which the caller does not change)."""
    text = plan.get("spec_text")
    if text is None:
        return json.dumps(plan).encode()
    rest = {k: v for k, v in plan.items() if k not in ("spec", "spec_text")}
    head = json.dumps(rest)
    return (head[:-1] + (', "spec": ' if rest else '"spec": ') + text.strip() + "}").encode()


def signal_pid(rec: dict, signum: int) -> None:
    """Signal the container's PID 1, unless that pid now belongs to another process."""
    pid = rec.get("pid") or 0
    if pid <= 0 or proc_start_time(pid) != rec.get("pid_start"):
        return
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        if proc_start_time(pid) == rec.get("pid_start"):
            signal.pidfd_send_signal(fd, signum)
    except ProcessLookupError:
        pass
    finally:
        os.close(fd)


def wait_gone(rec: dict, timeout: float = 10.0) -> None:
    """Wait until PID 1 and the shim have exited (the shim writes exit.json first)."""
    for key, start in (("pid", "pid_start"), ("shim_pid", "shim_start")):
        pid = rec.get(key) or 0
        if pid <= 0:
            continue
        deadline = time.monotonic() + timeout
        while proc_start_time(pid) == rec.get(start) and time.monotonic() < deadline:
            try:
                fd = os.pidfd_open(pid)
            except ProcessLookupError:
                break
            try:
                select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            finally:
                os.close(fd)


def _write_started(d: str) -> None:
    """The start time into ``started``: through the empty ``.started`` the shim made at
    create (filled, then renamed: no new inode on the start path, ~0.1-0.5 ms on ext4),
    else (a container the CLI created) as a new file."""
    ready = os.path.join(d, ".started")
    try:
        fd = os.open(ready, os.O_WRONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        write_atomic(os.path.join(d, "started"), rfc3339())
        return
    try:
        os.write(fd, rfc3339().encode())
    finally:
        os.close(fd)
    os.rename(ready, os.path.join(d, "started"))


def start_fifo(d: str, rec: dict, timeout: float = 10.0) -> None:
    """Open the exec fifo for reading: the init, blocked opening it, goes on to exec."""
    fifo = os.path.join(d, "exec.fifo")
    try:
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise Conflict("container is not in the created state") from None
    try:
        deadline = time.monotonic() + timeout
        got = False
        while True:
            r, _, _ = select.select([fd], [], [], 0.05)
            if r:
                data = os.read(fd, 1)
                if data and not got:
                    got = True
                    _write_started(d)
                    os.unlink(fifo)
                elif not data and got:
                    return  # the init's end closed on execve: the program runs
            alive = proc_start_time(rec.get("pid") or 0) == rec.get("pid_start")
            if not alive:
                if got:
                    return  # started, and already gone (a short program)
                raise ContainerError("container init exited before start")
            if time.monotonic() > deadline:
                raise ContainerError("container init did not respond to start")
    finally:
        os.close(fd)


def _yield() -> None:
    """A hand-over: the process just woken (on this CPU, often) runs now, not after the
    rest of our time slice (EEVDF lets the waker run on; each hop cost up to ~1 ms)."""
    if os.environ.get("PYSTACK_RUNTIME_YIELD") != "0":
        os.sched_yield()
