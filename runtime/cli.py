"""``pystack-runtime``: runc's command line over pystack's runtime, for other tools.

Commands and flags follow runc 1.1 (``spec create start run state kill delete exec list
ps pause resume``, ``--root --bundle --pid-file --console-socket --detach``, the same
``state`` JSON), so podman (``--runtime``) or a test can swap runc for it.

Like runc, and unlike the library's ``Runtime``, the command keeps no shim: ``create``
forks the container's init and exits, and the init is re-parented to the caller's
subreaper (podman's conmon), which reaps it and reads its exit status; ``run`` in the
foreground waits for it itself. argparse, not click: this command is on the start path
of every container a tool starts, so it imports as little as possible.
"""
from __future__ import annotations

import _signal as signal  # (signal.py builds enums: ~5 ms of imports per run)
import os
import sys
import time

from pystack.errors import UserError
from pystack.runtime import minijson as json  # (json imports re: ~10 ms per run)

DEFAULT_ROOT = "/run/pystack-runtime"


COMMANDS = ("spec", "create", "run", "start", "state", "pause", "resume", "kill", "delete",
            "exec", "list", "ps", "features")
_GLOBAL_WITH_VALUE = {"--root", "--log", "--log-format", "--rootless", "--criu"}


def _command_of(argv: list[str] | None) -> str | None:
    """The subcommand named in ``argv`` (after the global flags), so that only its
    parser is built: argparse with every subcommand costs more than running one."""
    args = list(sys.argv[1:] if argv is None else argv)
    i = 0
    while i < len(args):
        a = args[i]
        if a in COMMANDS:
            return a
        if a in _GLOBAL_WITH_VALUE:
            i += 2
            continue
        if not a.startswith("-"):
            return None
        i += 1
    return None


def _parser(argv: list[str] | None = None):
    import argparse  # (lazily: the common commands are parsed by _fast_parse)

    class _Formatter(argparse.HelpFormatter):
        """argparse's formatter without ``import shutil`` (bz2, lzma: ~3 ms on every run) just
        to learn the terminal width; the same width rule as shutil.get_terminal_size."""

        def __init__(self, prog: str, **kw) -> None:
            if kw.get("width") is None:
                try:
                    cols = int(os.environ.get("COLUMNS", "0"))
                except ValueError:
                    cols = 0
                if cols <= 0:
                    try:
                        cols = os.get_terminal_size(sys.__stdout__.fileno()).columns
                    except (AttributeError, ValueError, OSError):
                        cols = 0
                kw["width"] = (cols or 80) - 2
            super().__init__(prog, **kw)

    # argparse translates every help string through gettext, which stats a dozen locale
    # paths per string (~20 ms per run); this command's messages are English only
    argparse._ = lambda text: text  # type: ignore[attr-defined]
    argparse.ngettext = lambda s, p, n: s if n == 1 else p  # type: ignore[attr-defined]
    p = argparse.ArgumentParser(prog="pystack-runtime", formatter_class=_Formatter,
                                description="runc-compatible OCI runtime of pystack")
    p.add_argument("--root", default=os.environ.get("PYSTACK_RUNTIME_ROOT", DEFAULT_ROOT),
                   help="state directory (default %(default)s)")
    p.add_argument("--log", help="write errors here (runc's --log)")
    p.add_argument("--log-format", default="text", choices=("text", "json"))
    p.add_argument("--debug", action="store_true")
    p.add_argument("--systemd-cgroup", action="store_true",
                   help="accepted for compatibility; cgroupfs is always used")
    p.add_argument("--rootless", default="false")
    p.add_argument("--criu", help=argparse.SUPPRESS)
    p.add_argument("-v", "--version", action="store_true")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    wanted = _command_of(argv)

    def cmd(name: str, help: str) -> argparse.ArgumentParser:
        if wanted is not None and name != wanted:
            return argparse.ArgumentParser(add_help=False, formatter_class=_Formatter)
        return sub.add_parser(name, help=help, formatter_class=_Formatter)

    s = cmd("spec", "write a config.json with Docker's defaults")
    s.add_argument("-b", "--bundle", default=".")
    s.add_argument("--rootless", action="store_true")
    for name, helptext in (("create", "create a container"), ("run", "create and start")):
        c = cmd(name, helptext)
        c.add_argument("-b", "--bundle", default=".")
        c.add_argument("--pid-file")
        c.add_argument("--console-socket")
        c.add_argument("--no-pivot", action="store_true")
        c.add_argument("--no-new-keyring", action="store_true")
        c.add_argument("--preserve-fds", type=int, default=0)
        if name == "run":
            c.add_argument("-d", "--detach", action="store_true")
            c.add_argument("--keep", action="store_true")
        c.add_argument("id")
    for name in ("start", "state", "pause", "resume"):
        cmd(name, f"{name} a container").add_argument("id")
    k = cmd("kill", "send a signal to a container's init")
    k.add_argument("-a", "--all", action="store_true")
    k.add_argument("id")
    k.add_argument("signal", nargs="?", default="SIGTERM")
    d = cmd("delete", "delete a container")
    d.add_argument("-f", "--force", action="store_true")
    d.add_argument("id")
    e = cmd("exec", "run a process in a running container")
    e.add_argument("-p", "--process")
    e.add_argument("-d", "--detach", action="store_true")
    e.add_argument("--pid-file")
    e.add_argument("--console-socket")
    e.add_argument("-t", "--tty", action="store_true")
    e.add_argument("--cwd")
    e.add_argument("-e", "--env", action="append", default=[])
    e.add_argument("-u", "--user")
    e.add_argument("-g", "--additional-gids", action="append", default=[])
    e.add_argument("-c", "--cap", action="append", default=[])
    e.add_argument("--no-new-privs", action="store_true")
    e.add_argument("--preserve-fds", type=int, default=0)
    e.add_argument("--process-label")
    e.add_argument("--apparmor")
    e.add_argument("id")
    e.add_argument("args", nargs=argparse.REMAINDER)
    li = cmd("list", "list containers")
    li.add_argument("-f", "--format", default="table", choices=("table", "json"))
    li.add_argument("-q", "--quiet", action="store_true")
    ps = cmd("ps", "processes of a container")
    ps.add_argument("-f", "--format", default="table", choices=("table", "json"))
    ps.add_argument("id")
    ps.add_argument("ps_args", nargs=argparse.REMAINDER)
    cmd("features", "what this runtime supports (JSON)")
    return p


def _runtime(args):
    from pystack.runtime.container import Runtime
    return Runtime(args.root, spawner="direct")


def _write_pid_file(path: str | None, pid: int) -> None:
    if path:
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(str(pid))
        os.rename(tmp, path)


def create_direct(rt, cid: str, bundle: str, console_socket: str | None,
                  pid_file: str | None, keep_pty: list | None = None,
                  preserve_fds: int = 0) -> int:
    """runc's create: fork the init (stopped at the exec fifo) from this process, record
    it, hand over the pty, write the pid file. Returns the init's host pid."""
    from pystack.runtime import cgroup_glue, shim
    from pystack.runtime.container import ContainerError, load_bundle
    from pystack.runtime.state import rfc3339, write_atomic
    bundle = os.path.abspath(bundle)
    spec = load_bundle(bundle)
    root = os.path.normpath(os.path.join(bundle, (spec.get("root") or {}).get("path") or "rootfs"))
    if not os.path.isdir(root):
        raise UserError(f"root.path {root} is not a directory")
    terminal = bool((spec.get("process") or {}).get("terminal"))
    if terminal and not console_socket and keep_pty is None:
        raise UserError("process.terminal is true: --console-socket is required")
    d = rt.states.make_dir(cid)
    paths: dict = {}
    try:
        try:
            paths = cgroup_glue.paths_for(spec, cid)
        except ValueError as exc:
            raise UserError(f"cgroups for {cid}: {exc}") from None
        plan = {"id": cid, "dir": d, "bundle": bundle, "spec": spec, "root": root,
                "cgroup_paths": paths, "created": rfc3339(),
                "seccomp_cache": os.path.join(rt.states.root_path, ".seccomp-cache"),
                "preserve_fds": preserve_fds, "cgroups_later": True,
                "init": (spec.get("annotations") or {}).get("org.pystack.init") == "true"}

        def cgroups_ready() -> None:
            # made while the init (forked first) builds its mounts on the other CPU
            try:
                cgroup_glue.setup(spec, cid)
            except UserError as exc:
                raise shim.LaunchError(str(exc)) from None
            except (OSError, ValueError) as exc:
                raise shim.LaunchError(f"cgroups for {cid}: {exc}") from None

        try:
            ipid, sock, plan = shim.begin_launch(plan, (0, 1, 2))
            pid, master = shim.finish_launch(plan, ipid, sock, cgroups_ready=cgroups_ready)
        except shim.LaunchError as exc:
            raise ContainerError(str(exc), exit_code=exc.exit_code) from None
        if master is not None:
            if console_socket:
                shim.send_console(console_socket, master)
                os.close(master)
            else:
                keep_pty.append(master)  # type: ignore[union-attr]
        write_atomic(os.path.join(d, "state.json"), json.dumps(shim.record(plan, pid)))
        _write_pid_file(pid_file, pid)
        return pid
    except BaseException:
        cgroup_glue.kill_all(paths)
        try:
            cgroup_glue.remove(paths)
        finally:
            import shutil
            shutil.rmtree(d, ignore_errors=True)
        raise


def _run_foreground(rt, args) -> int:
    """runc run without -d: create, start, forward signals, wait, delete; exit code.

    With ``terminal: true`` and no ``--console-socket``, as runc does, the container's
    pty is proxied to our stdin/stdout (our terminal in raw mode when it is one)."""
    from pystack.runtime.state import trace
    ptys: list[int] = []
    pid = create_direct(rt, args.id, args.bundle, args.console_socket, args.pid_file,
                        keep_pty=ptys if not args.console_socket else None,
                        preserve_fds=args.preserve_fds)
    trace("cli: created")
    master = ptys[0] if ptys else None
    forwarded = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
                 signal.SIGUSR2)
    for sig in forwarded:
        signal.signal(sig, lambda n, _f: _forward(pid, n))
    try:
        rt.start(args.id)
        if master is not None:
            status = _proxy_pty(master, pid)
        else:
            while True:
                try:
                    _, status = os.waitpid(pid, 0)
                    break
                except InterruptedError:
                    continue
        trace("cli: exited")
        code = os.waitstatus_to_exitcode(status)
        code = 128 - code if code < 0 else code
    finally:
        if not getattr(args, "keep", False):
            rt.delete(args.id, force=True)
    trace("cli: deleted")
    return code


def _proxy_pty(master: int, pid: int) -> int:
    """Copy stdin -> pty and pty -> stdout until the container exits; its wait status."""
    import fcntl
    import select
    import termios
    import tty
    saved = None
    if os.isatty(0):
        saved = termios.tcgetattr(0)
        tty.setraw(0)

        def resize(*_a) -> None:
            fcntl.ioctl(master, termios.TIOCSWINSZ, fcntl.ioctl(0, termios.TIOCGWINSZ, b"\0" * 8))
        resize()
        signal.signal(signal.SIGWINCH, resize)
    inputs = [master, 0]
    status = None
    try:
        while True:
            try:
                ready, _, _ = select.select(inputs, [], [], 0.1)
            except InterruptedError:
                continue
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the slave side closed
                    data = b""
                if not data:
                    inputs.remove(master)
                else:
                    os.write(1, data)
            if 0 in ready:
                data = os.read(0, 65536)
                if data:
                    os.write(master, data)
                else:
                    inputs.remove(0)
            if status is None:
                done, st = os.waitpid(pid, os.WNOHANG)
                if done:
                    status = st
            if status is not None and master not in inputs:
                return status
            if status is not None and not ready:
                return status
    finally:
        if saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, saved)
        os.close(master)


def _forward(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _exec(rt, args) -> int:
    from pystack.runtime import process as procmod, shim
    from pystack.runtime.container import ContainerError, load_bundle
    rec = rt.states.load(args.id)
    if rt.states.status(args.id, rec) != "running":
        raise UserError(f"container {args.id} is not running")
    spec = load_bundle(rec["bundle"])
    base = dict(spec.get("process") or {})
    if args.process:
        with open(args.process) as f:
            proc = {**base, **json.loads(f.read())}
    else:
        if not args.args:
            raise UserError("exec: no command given")
        proc = dict(base)
        proc["args"] = list(args.args)
        proc["env"] = list(base.get("env") or ()) + list(args.env)
        if args.cwd:
            proc["cwd"] = args.cwd
        if args.tty:
            proc["terminal"] = True
        if args.user:
            uid, _, gid = args.user.partition(":")
            proc["user"] = {"uid": int(uid), "gid": int(gid or 0),
                            "additionalGids": [int(g) for g in args.additional_gids]}
        if args.no_new_privs:
            proc["noNewPrivileges"] = True
        if args.cap:
            caps = dict(proc.get("capabilities") or {})
            for key in ("bounding", "effective", "permitted"):
                caps[key] = list(caps.get(key) or ()) + args.cap
            proc["capabilities"] = caps
    if proc.get("terminal") and not args.console_socket:
        raise UserError("exec with a terminal needs --console-socket")
    spec["process"] = proc
    plan = {"id": args.id, "spec": spec, "pid": rec["pid"], "pid_start": rec["pid_start"],
            "cgroup_paths": rec.get("cgroup_paths") or {}}
    import socket
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        child = shim.exec_start(plan, (0, 1, 2), theirs)
    except shim.LaunchError as exc:
        raise ContainerError(f"exec failed: {exc}", exit_code=exc.exit_code) from None
    finally:
        theirs.close()
    # with a terminal, the child sent its pty master before it exec'd
    mine.setblocking(False)
    try:
        msg, fds = procmod.recv(mine)
        if msg and json.loads(msg).get("pty") and fds:
            shim.send_console(args.console_socket, fds[0])
            os.close(fds[0])
    except BlockingIOError:
        pass
    mine.close()
    _write_pid_file(args.pid_file, child)
    if args.detach:
        return 0
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, lambda n, _f: _forward(child, n))
    _, status = os.waitpid(child, 0)
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def dispatch(args) -> int:
    c = args.command
    if args.version or c is None:
        from pystack.runtime.state import OCI_VERSION
        print(f"pystack-runtime version 0.1.0\nspec: {OCI_VERSION}")
        return 0
    if c == "spec":
        from pystack.runtime.spec import default_spec
        path = os.path.join(args.bundle, "config.json")
        if os.path.exists(path):
            raise UserError(f"File {path} exists. Remove it first")
        with open(path, "w") as f:
            f.write(json.dumps(default_spec(["sh"], terminal=True), indent="\t"))
        return 0
    if c == "features":
        from pystack.runtime.state import OCI_VERSION
        print(json.dumps({"ociVersionMin": "1.0.0", "ociVersionMax": OCI_VERSION,
                          "hooks": [], "mountOptions": sorted(__import__(
                              "pystack.runtime.rootfs", fromlist=["FLAGS"]).FLAGS)}, indent=2))
        return 0
    if getattr(args, "preserve_fds", 0) and c == "exec":
        raise UserError("exec --preserve-fds is not supported by pystack-runtime yet")
    if getattr(args, "no_pivot", False):
        raise UserError("--no-pivot is not supported: pystack-runtime always uses pivot_root")
    rt = _runtime(args)
    if c == "create":
        create_direct(rt, args.id, args.bundle, args.console_socket, args.pid_file,
                      preserve_fds=args.preserve_fds)
    elif c == "run":
        if not args.detach:
            return _run_foreground(rt, args)
        create_direct(rt, args.id, args.bundle, args.console_socket, args.pid_file,
                      preserve_fds=args.preserve_fds)
        rt.start(args.id)
    elif c == "start":
        rt.start(args.id)
    elif c == "state":
        st = rt.state(args.id)
        print(json.dumps(st, indent=2))
    elif c == "kill":
        rt.kill(args.id, args.signal, all=args.all)
    elif c == "delete":
        try:
            rt.delete(args.id, force=args.force)
        except UserError:
            if not args.force or rt.states.exists(args.id):
                raise
    elif c == "pause":
        rt.pause(args.id)
    elif c == "resume":
        rt.resume(args.id)
    elif c == "exec":
        return _exec(rt, args)
    elif c == "list":
        items = rt.list()
        if args.quiet:
            print("\n".join(i["id"] for i in items))
        elif args.format == "json":
            print(json.dumps(items))
        else:
            rows = [["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]]
            rows += [[i["id"], str(i["pid"]), i["status"], i["bundle"], i["created"], "root"]
                     for i in items]
            print(_table(rows))
    elif c == "ps":
        pids = rt.ps(args.id)
        if args.format == "json":
            print(json.dumps(pids))
        else:
            import subprocess
            out = subprocess.run(["ps"] + (args.ps_args or ["-ef"]), capture_output=True,
                                 text=True).stdout.splitlines()
            print(out[0])
            want = {str(p) for p in pids}
            pid_col = out[0].split().index("PID")
            for line in out[1:]:
                cols = line.split()
                if len(cols) > pid_col and cols[pid_col] in want:
                    print(line)
    return 0


def _log_error(args, message: str) -> None:
    """runc's --log: conmon/podman read the last error from it."""
    if not getattr(args, "log", None):
        return
    try:
        with open(args.log, "a") as f:
            if args.log_format == "json":
                f.write(json.dumps({"level": "error", "msg": message,
                                    "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
                        + "\n")
            else:
                f.write(f"level=error msg={json.dumps(message)}\n")
    except OSError:
        pass


def main(argv: list[str] | None = None) -> int:
    """The command. Called as a program (``argv`` None: the console script, the launcher)
    it ends the process itself once its output is flushed: the interpreter's tear-down
    (modules, objects) costs ~6 ms of CPU and nothing is left to do; with ``argv`` it
    returns the exit status."""
    # a one-shot command: the cyclic GC only costs it (collections during the imports,
    # and copy-on-write faults in the forked init): ~4 ms of CPU per call
    import gc
    was = gc.isenabled()
    gc.disable()
    try:
        code = _main(argv)
    finally:
        if was:
            gc.enable()
    if argv is None:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code & 0xFF if isinstance(code, int) else 1)
    return code


_FAST_FLAGS = {  # command -> {flag: (attribute, takes a value)} (see _fast_parse)
    "create": {"-b": ("bundle", True), "--bundle": ("bundle", True),
               "--pid-file": ("pid_file", True), "--console-socket": ("console_socket", True),
               "--no-pivot": ("no_pivot", False), "--no-new-keyring": ("no_new_keyring", False),
               "--preserve-fds": ("preserve_fds", True)},
    "start": {}, "state": {},
    "delete": {"-f": ("force", False), "--force": ("force", False)},
    "kill": {"-a": ("all", False), "--all": ("all", False)},
}
_FAST_FLAGS["run"] = dict(_FAST_FLAGS["create"], **{
    "-d": ("detach", False), "--detach": ("detach", False), "--keep": ("keep", False)})
_FAST_GLOBAL = {"--root": ("root", True), "--log": ("log", True),
                "--log-format": ("log_format", True), "--debug": ("debug", False),
                "--systemd-cgroup": ("systemd_cgroup", False)}


def _fast_parse(argv: list[str]):
    """The commands tools run for every container (create, run, start, state, kill,
    delete) with their usual flags, parsed without argparse (its import and parser
    cost ~3 ms per call); None for anything else (help, errors, other commands), which
    argparse then parses. The result equals argparse's (tests/runtime compare them)."""
    import types
    ns = types.SimpleNamespace(
        root=os.environ.get("PYSTACK_RUNTIME_ROOT", DEFAULT_ROOT), log=None,
        log_format="text", debug=False, systemd_cgroup=False, rootless="false", criu=None,
        version=False, command=None)
    flags = _FAST_GLOBAL
    positional: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if ns.command is None and not a.startswith("-"):
            if a not in _FAST_FLAGS:
                return None
            ns.command = a
            flags = _FAST_FLAGS[a]
            for attr, takes in flags.values():
                setattr(ns, attr, None if takes else False)
            if a in ("create", "run"):
                ns.bundle, ns.preserve_fds = ".", 0
            i += 1
            continue
        if a.startswith("-"):
            name, eq, value = a.partition("=")
            spec = flags.get(name)
            if spec is None or (eq and not spec[1]) or (eq and not name.startswith("--")):
                return None
            attr, takes = spec
            if takes:
                if not eq:
                    if i + 1 >= len(argv) or argv[i + 1].startswith("-"):
                        return None
                    i += 1
                    value = argv[i]
                if attr == "preserve_fds":
                    if not value.isdigit():
                        return None
                    value = int(value)
                if attr == "log_format" and value not in ("text", "json"):
                    return None
                setattr(ns, attr, value)
            else:
                setattr(ns, attr, True)
            i += 1
            continue
        positional.append(a)
        i += 1
    c = ns.command
    if c is None:
        return None
    if c == "kill" and len(positional) in (1, 2):
        ns.id = positional[0]
        ns.signal = positional[1] if len(positional) == 2 else "SIGTERM"
    elif len(positional) == 1:
        ns.id = positional[0]
    else:
        return None
    return ns


def _main(argv: list[str] | None) -> int:
    from pystack.runtime.state import trace
    trace("cli: main")
    args = _fast_parse(list(sys.argv[1:] if argv is None else argv))
    if args is None:
        args = _parser(argv).parse_args(argv)
    trace("cli: parsed")
    try:
        code = dispatch(args)
    except UserError as exc:
        print(f"pystack-runtime: {exc}", file=sys.stderr)
        _log_error(args, str(exc))
        code = exc.exit_code
    except BrokenPipeError:  # stdout closed early (`| head`): not an error to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (OSError, ValueError) as exc:
        from pystack.runtime.process import describe
        msg = describe(exc)
        print(f"pystack-runtime: {msg}", file=sys.stderr)
        _log_error(args, msg)
        code = 1
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return code


if __name__ == "__main__":
    sys.exit(main())
