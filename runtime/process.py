"""The container's init, from fork to exec: namespaces, rootfs, then the process itself.

``container_main`` runs in the child the launcher forks (PID 1 of the new pid namespace),
or in an init forked ahead of time (``shim.Preforked``). It reports to the launcher over
a socket: ``R`` once everything up to the user's program is in place (the container is
"created"), or ``E<message>`` and exit. It then changes user, drops capabilities, sets
no_new_privs and loads seccomp (while the caller gets "created" and calls ``start``),
blocks on the exec fifo until ``start`` and execs: runc's order, so that the program
runs with exactly the spec's privileges.

Everything that parses or imports happens in ``prepare`` before the container's work
(in the launcher before the fork, or in the pre-forked init before it starts); the
container's setup only makes system calls (no threads exist there).
"""
from __future__ import annotations

import errno
import fcntl
import os
import resource
import _socket as socket  # the C module: socket.py costs ~2.5 ms (enum, selectors) per CLI run
import struct

from pystack.runtime import namespaces as ns
from pystack.runtime import rootfs, state
from pystack.runtime.state import trace

PR_SET_NO_NEW_PRIVS = 38
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
TIOCGPTN = 0x80045430
TIOCSPTLCK = 0x40045431
TIOCSCTTY = 0x540E



class SpecError(ValueError):
    """The bundle's config.json asks for something invalid; the message says what."""


class Prepared:
    """What the child needs, computed before the fork (a plain class: ``dataclasses``
    pulls in ``inspect``, ~10 ms on the CLI's start path)."""

    __slots__ = ("args", "env", "cwd", "uid", "gid", "groups", "umask", "caps", "rlimits",
                 "no_new_privs", "oom_score_adj", "sysctls", "seccomp", "hostname",
                 "domainname", "terminal", "unshare_flags", "joins")

    def __init__(self, **kw) -> None:
        self.unshare_flags = 0
        self.joins: list[tuple[str, str]] = []
        for k, v in kw.items():
            setattr(self, k, v)


def _libc():
    import ctypes
    lib = ctypes.CDLL(None, use_errno=True)
    lib.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                          ctypes.c_ulong]
    return lib


_LIBC = _libc()


def prctl(option: int, arg: int) -> None:
    import ctypes
    if _LIBC.prctl(option, arg, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl({option}): {os.strerror(err)}")


def prepare(spec: dict, process: dict | None = None, seccomp_cache: str | None = None) -> Prepared:
    """Validate and pre-compute the process part of a spec (or of an exec's process)."""
    proc = process if process is not None else (spec.get("process") or {})
    linux = spec.get("linux") or {}
    args = list(proc.get("args") or ())
    if not args:
        raise SpecError("process.args must not be empty")
    env: dict[str, str] = {}
    for item in proc.get("env") or ():
        k, sep, v = item.partition("=")
        env[k] = v
    user = proc.get("user") or {}
    try:
        flags, joins = ns.split(linux.get("namespaces") or [])
    except ValueError as exc:
        raise SpecError(str(exc)) from None
    if any((spec.get("hooks") or {}).values()):
        raise SpecError("hooks: OCI hooks are not supported by pystack-runtime")
    if flags & ns.CLONE_NEWUSER or any(k == "user" for k, _ in joins):
        raise SpecError("linux.namespaces: user namespaces are not supported by pystack-runtime")
    sysctls = dict(linux.get("sysctl") or {})
    from pystack.runtime import sysctl
    sysctl.validate(sysctls, linux.get("namespaces") or [])
    rlimits = []
    for rl in proc.get("rlimits") or ():
        name = rl.get("type", "")
        res = getattr(resource, name, None)
        if not name.startswith("RLIMIT_") or res is None:
            raise SpecError(f"unknown rlimit {name!r}")
        rlimits.append((res, int(rl.get("soft", 0)), int(rl.get("hard", 0))))
    oom = proc.get("oomScoreAdj")
    if oom is not None and not -1000 <= int(oom) <= 1000:
        raise SpecError(f"oomScoreAdj {oom} is outside -1000..1000")
    return Prepared(
        args=args, env=env, cwd=proc.get("cwd") or "/",
        uid=int(user.get("uid", 0)), gid=int(user.get("gid", 0)),
        groups=[int(g) for g in user.get("additionalGids") or ()],
        umask=int(user["umask"]) if user.get("umask") is not None else 0o022,
        caps=prepare_caps(proc.get("capabilities")),
        rlimits=rlimits, no_new_privs=bool(proc.get("noNewPrivileges")),
        oom_score_adj=int(oom) if oom is not None else None, sysctls=sysctls,
        seccomp=prepare_seccomp(linux.get("seccomp"), bool(proc.get("noNewPrivileges")),
                                seccomp_cache),
        hostname=spec.get("hostname"), domainname=spec.get("domainname"),
        terminal=bool(proc.get("terminal")), unshare_flags=flags, joins=joins,
    )


def prepare_caps(capabilities: dict | None):
    """Part B's capability sets (runtime/caps.py), computed before the fork."""
    from pystack.runtime import caps
    caps.prepare()
    return caps.CapSets.from_spec(capabilities)


def prepare_seccomp(section: dict | None, no_new_privs: bool, cache_dir: str | None = None):
    """Part B's compiled seccomp program (runtime/seccomp.py), or None without a section.

    Compiling Docker's profile costs ~10 ms of libseccomp work; B's module caches the
    program by content (in memory, and on disk under ``cache_dir`` for one-shot CLI runs)."""
    if not section:
        return None
    from pystack.runtime import seccomp
    try:
        return seccomp.Filter.compile(section, no_new_privileges=no_new_privs,
                                      cache_dir=cache_dir)
    except TypeError:  # an older compile() without the cache
        return seccomp.Filter.compile(section, no_new_privileges=no_new_privs)


# ---------------------------------------------------------------------------------------
# sync protocol with the launcher

def send(sock: socket.socket, msg: bytes, fds: list[int] | None = None) -> None:
    if fds:
        # (struct, not array: array imports collections, ~4 ms per CLI run)
        sock.sendmsg([msg], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                              struct.pack(f"{len(fds)}i", *fds))])
    else:
        sock.sendall(msg)


def recv(sock: socket.socket, size: int = 65536) -> tuple[bytes, list[int]]:
    msg, anc, _flags, _addr = sock.recvmsg(size, socket.CMSG_LEN(16 * 4))
    return msg, fds_of(anc)


def fds_of(anc: list) -> list[int]:
    """The file descriptors in ``recvmsg``'s ancillary data (SCM_RIGHTS)."""
    fds: list[int] = []
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            n = len(data) // 4
            fds.extend(struct.unpack(f"{n}i", data[: n * 4]))
    return fds


# ---------------------------------------------------------------------------------------
# pieces of the init

def set_hostname(prep: Prepared) -> None:
    if prep.hostname is not None and prep.unshare_flags & ns.CLONE_NEWUTS:
        socket.sethostname(prep.hostname)
    if prep.domainname is not None and prep.unshare_flags & ns.CLONE_NEWUTS:
        name = prep.domainname.encode()
        if _LIBC.setdomainname(name, len(name)) != 0:
            raise OSError(errno.EPERM, "setdomainname failed")


def write_sysctls(sysctls: dict[str, str]) -> None:
    """Part B's writer, on the container's own fresh /proc (after pivot_root)."""
    from pystack.runtime import sysctl
    sysctl.apply(sysctls)


def set_rlimits(prep: Prepared) -> None:
    for res, soft, hard in prep.rlimits:
        try:
            resource.setrlimit(res, (soft, hard))
        except (ValueError, OSError) as exc:
            raise OSError(errno.EPERM, f"setting rlimit {res} to {soft}:{hard}: {exc} "
                                       "(raising a hard limit needs CAP_SYS_RESOURCE)") from None


def set_oom_score_adj(value: int | None) -> None:
    if value is not None:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(value))


def open_pty() -> tuple[int, int]:
    """A pty from the container's own devpts (so the slave is /dev/pts/N inside)."""
    master = os.open("/dev/pts/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
    n = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, b"\0\0\0\0"))[0]
    slave = os.open(f"/dev/pts/{n}", os.O_RDWR | os.O_NOCTTY)
    return master, slave


def use_pty_slave(slave: int, console: bool) -> None:
    """Make the pty slave stdio and the controlling terminal (and /dev/console)."""
    if console:
        rootfs.mount(f"/proc/self/fd/{slave}", "/dev/console", None, rootfs.MS_BIND, None,
                     "/dev/console")
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    fcntl.ioctl(0, TIOCSCTTY, 0)
    if slave > 2:
        os.close(slave)


def home_of(uid: int) -> str:
    """HOME from the container's /etc/passwd (runc sets it when the spec does not)."""
    try:
        with open("/etc/passwd") as f:
            for line in f:
                parts = line.rstrip("\n").split(":")
                if len(parts) >= 6 and parts[2] == str(uid):
                    return parts[5] or "/"
    except OSError:
        pass
    return "/"


def lookup(prep: Prepared) -> str:
    """The program's path, searched in the container's PATH (exit 127 if absent)."""
    name = prep.args[0]
    if "/" in name:
        candidates = [name if name.startswith("/") else os.path.join(prep.cwd, name)]
    else:
        candidates = [os.path.join(d or ".", name)
                      for d in prep.env.get("PATH", "").split(":")]
    for c in candidates:
        if os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    if "/" in name and os.path.exists(candidates[0]):
        raise PermissionError(errno.EACCES, f"exec: {name!r}: permission denied")
    raise FileNotFoundError(errno.ENOENT,
                            f"exec: {name!r}: executable file not found in $PATH")


def become(prep: Prepared) -> None:
    """User, capabilities, no_new_privs, seccomp: the last steps before exec."""
    from pystack.runtime import caps as capmod

    def change_user() -> None:
        os.setgroups(prep.groups)
        os.setresgid(prep.gid, prep.gid, prep.gid)
        os.setresuid(prep.uid, prep.uid, prep.uid)

    if prep.seccomp is not None and not prep.no_new_privs:
        prep.seccomp.load()  # needs CAP_SYS_ADMIN without no_new_privs
    capmod.apply_all(prep.caps, change_user)
    if prep.no_new_privs:
        prctl(PR_SET_NO_NEW_PRIVS, 1)
    os.umask(prep.umask)
    if prep.seccomp is not None and prep.no_new_privs:
        prep.seccomp.load()


def chdir_checked(cwd: str) -> None:
    """chdir into the spec's cwd and check it is inside our root (CVE-2024-21626)."""
    os.chdir(cwd)
    if not os.getcwd().startswith("/"):
        raise OSError(errno.ENOENT, f"cwd {cwd} is outside the container")


def close_fds(keep: tuple[int, ...] = ()) -> None:
    """Close every fd above stdio except ``keep`` (leaked host fds: CVE-2024-21626)."""
    if state.TRACE_FD >= 0:
        keep = (*keep, state.TRACE_FD)  # close-on-exec: gone at execve
    lo = 3
    for k in sorted(keep):
        if k >= lo:
            os.closerange(lo, k)
            lo = k + 1
    os.closerange(lo, 1 << 20)


def exec_program(prep: Prepared, path: str) -> None:
    env = dict(prep.env)
    env.setdefault("HOME", home_of(prep.uid))
    os.execve(path, prep.args, env)


# ---------------------------------------------------------------------------------------
# the init itself

def reset_signals() -> None:
    """Default dispositions and an empty mask: ignored signals survive execve, and the
    shim ignores SIGTERM/SIGINT/SIGHUP/SIGPIPE, which the container must not inherit."""
    import _signal as signal  # (signal.py's enums: not in the init)
    # Python knows every disposition (it reads them all at start-up, and records what it
    # sets): only the changed ones cost a sigaction, not all 64 of them
    dfl = signal.SIG_DFL
    for sig in range(1, signal.NSIG):
        if sig in (signal.SIGKILL, signal.SIGSTOP):
            continue
        try:
            if signal.getsignal(sig) != dfl:
                signal.signal(sig, dfl)
        except (OSError, ValueError, RuntimeError):
            pass
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def describe(exc: BaseException) -> str:
    """One line for an error: our OSErrors carry their message in strerror."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror + (f": {exc.filename}" if exc.filename else "")
    return str(exc) or type(exc).__name__


def place_in_cgroups(pid: int, paths: dict) -> None:
    """Move process ``pid`` (host pid) into each of the container's cgroups."""
    for path in (paths or {}).values():
        try:
            fd = os.open(os.path.join(path, "cgroup.procs"), os.O_WRONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            os.write(fd, str(pid).encode())
        finally:
            os.close(fd)


def placed_by_launcher(paths: dict) -> bool:
    """Whether the launcher must move the init (a pure cgroup v2 host), or the init moves
    itself (cgroup v1 / hybrid: see ``join_cgroups``)."""
    return bool(paths) and set(paths) == {""}


def join_cgroups(paths: dict) -> None:
    """Move ourselves into the container's cgroups, before unsharing the cgroup namespace
    (whose root is then the container's cgroup).

    On cgroup v1 we write "0" to each hierarchy's ``tasks`` file: moving only the calling
    thread of a single-threaded process, the kernel skips the threadgroup rwsem and its
    RCU grace period (~10 ms per container via ``cgroup.procs``). A hybrid host's
    controller-less unified (v2) hierarchy is not joined: it holds no limits, and joining
    it would cost that grace period again (runc joins it; nothing in the container can
    tell the difference). On a pure v2 host, ``cgroup.procs`` is the only way."""
    paths = paths or {}
    v1 = [p for k, p in paths.items() if k != ""]
    targets = [os.path.join(p, "tasks") for p in v1] if v1 else \
        [os.path.join(p, "cgroup.procs") for p in paths.values()]
    for target in targets:
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)


def container_main(plan: dict, prep: Prepared, sync: socket.socket, fifo_path: str,
                   preunshared: int = 0) -> None:
    """PID 1 of the container up to exec; never returns (exits on error).
    ``preunshared``: namespace flags this process has unshared already (a pre-forked
    init makes its network, IPC and UTS namespaces while it waits)."""
    spec = plan["spec"]
    linux = spec.get("linux") or {}
    created = False
    try:
        trace("init: forked")
        reset_signals()
        if os.getsid(0) != os.getpid():  # (a pre-forked init has its session already)
            os.setsid()
        prctl(PR_SET_DUMPABLE, 0)
        paths = plan.get("cgroup_paths") or {}
        # "C" from the launcher says our cgroups exist: on a pure v2 host it has moved us
        # into them; with ``cgroups_later`` (the library) the caller creates them while we
        # build the mounts, and we join them before the first cgroup mount
        later = bool(plan.get("cgroups_later"))
        if not later and not placed_by_launcher(paths):
            join_cgroups(paths)
        trace("init: cgroups joined")
        joins = ns.open_joins(prep.joins)
        ns.join(joins, skip=("pid", "time", "cgroup"))
        # on a pure v2 host the launcher moves us into our cgroup meanwhile (that waits for
        # an RCU grace period, ~10 ms): everything up to the cgroup mount overlaps it
        ns.unshare(prep.unshare_flags & ~(ns.CLONE_NEWPID | ns.CLONE_NEWTIME | ns.CLONE_NEWCGROUP
                                          | preunshared))
        trace("init: unshared")
        placed = False

        def await_placement() -> None:
            nonlocal placed
            if placed:
                return
            if (later or placed_by_launcher(paths)) and sync.recv(16) != b"C":
                raise OSError(errno.EIO, "the launcher could not place the container in its cgroups")
            if later and not placed_by_launcher(paths):
                join_cgroups(paths)
            trace("init: in its cgroups")
            # the cgroup namespace's root is the cgroup we are in now
            ns.join([j for j in joins if j[0] == "cgroup"])
            ns.unshare(prep.unshare_flags & ns.CLONE_NEWCGROUP)
            placed = True

        fifo = os.open(fifo_path, os.O_PATH | os.O_CLOEXEC)
        own_dev = any((m.get("destination") or "").rstrip("/") == "/dev"
                      for m in spec.get("mounts") or ())
        if not (prep.unshare_flags & ns.CLONE_NEWNS):
            raise SpecError("a mount namespace is required")
        root = plan["root"]
        rootfs.prepare_root(root, linux.get("rootfsPropagation"), plan.get("lowerdirs"),
                            plan.get("upper"), plan.get("work"))
        trace("init: root prepared")
        rootfd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        cgroupns = bool(prep.unshare_flags & ns.CLONE_NEWCGROUP) or any(
            k == "cgroup" for k, _ in prep.joins)
        try:
            for m in spec.get("mounts") or ():
                if m.get("type") == "cgroup":
                    await_placement()
                rootfs.mount_one(rootfd, root, m, plan["bundle"], plan.get("cgroup_paths") or {},
                                 cgroupns)
            await_placement()
            if own_dev:
                rootfs.create_devices(rootfd, linux.get("devices") or [], prep.terminal)
        finally:
            os.close(rootfd)
        trace("init: mounts + devices")
        rootfs.do_pivot(root)
        trace("init: pivot_root")
        set_hostname(prep)
        write_sysctls(prep.sysctls)
        master = None
        if prep.terminal:
            master, slave = open_pty()
            use_pty_slave(slave, console=own_dev)
        trace("init: hostname, sysctls, pty")
        rootfs.readonly_paths(linux.get("readonlyPaths") or [])
        trace("init: readonly paths")
        rootfs.mask_paths(linux.get("maskedPaths") or [])
        trace("init: masked paths")
        if (spec.get("root") or {}).get("readonly"):
            rootfs.readonly_root()
        set_rlimits(prep)
        set_oom_score_adj(prep.oom_score_adj)
        chdir_checked(prep.cwd)
        path = lookup(prep)
        prep.env.setdefault("HOME", home_of(prep.uid))
        trace("init: created")
        send(sync, b"R", [master] if master is not None else None)
        created = True
        if master is not None:
            os.close(master)
        sync.close()
        # runc's order: user, capabilities and seccomp now, then wait for `start` (so
        # that loading the filter, ~0.5 ms, overlaps the caller's round trip)
        become(prep)
        trace("init: become")
        preserved = tuple(range(3, 3 + int(plan.get("preserve_fds") or 0)))
        for fd in preserved:
            os.set_inheritable(fd, True)
        close_fds(keep=(fifo, *preserved))
        # "created": wait here until `start` opens the fifo for reading (mode 0622, as
        # runc's: any user the spec names may open it)
        wfd = os.open(f"/proc/self/fd/{fifo}", os.O_WRONLY | os.O_CLOEXEC)
        os.write(wfd, b"0")
        # wfd stays open until execve closes it: `start` reads EOF once the program runs
        trace("init: started")
        os.close(fifo)
        if plan.get("init"):
            from pystack.runtime import init as initmod  # imported by the launcher already
            import gc  # (builtin) the one-shot CLI disables the cyclic GC: a long-lived
            gc.enable()  # PID 1 wants it back
            initmod.run(prep.args, prep.env, path, ready_fd=wfd)
        trace("init: execve")
        os.execve(path, prep.args, prep.env)
    except BaseException as exc:  # noqa: BLE001 - report anything, then die
        msg = describe(exc)
        code = 127 if isinstance(exc, FileNotFoundError) else 126 if isinstance(
            exc, PermissionError) else 1
        if not created:
            try:
                send(sync, b"E" + msg.encode(errors="replace"))
            except OSError:
                pass
        else:
            try:
                os.write(2, f"pystack-runtime: {msg}\n".encode(errors="replace"))
            except OSError:
                pass
        os._exit(code)
    os._exit(1)
