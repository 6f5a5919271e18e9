"""A tiny PID 1 for ``init: true``: reaps zombies and forwards signals, like tini.

The container's init process (already inside the container, with the user's privileges
and seccomp applied) calls :func:`run` instead of exec'ing the program: it forks the
program, then waits with every signal blocked. SIGCHLD reaps every exited child (orphans
are re-parented to PID 1, so nothing stays a zombie); any other signal is forwarded to the
program; when the program exits, init exits with the same status (128+n for a signal).

It only uses modules imported before ``pivot_root`` (os, signal), the process is
non-dumpable (so /proc/1/exe, the host's interpreter, cannot be opened from inside), and
it holds no file descriptor but stdio.
"""
from __future__ import annotations

import os
import signal

NOT_FORWARDED = {signal.SIGCHLD, signal.SIGKILL, signal.SIGSTOP}


def run(args: list[str], env: dict[str, str], path: str, ready_fd: int | None = None) -> None:
    """Fork ``path`` and supervise it until it exits; never returns.

    ``ready_fd`` (close-on-exec, the exec fifo's write end) is closed once signals are
    blocked here and the program is forked, so ``start`` returns only when a signal sent
    to PID 1 will be caught and forwarded."""
    every = set(signal.valid_signals())
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, every)
    child = os.fork()
    if child and ready_fd is not None:
        os.close(ready_fd)
    if child == 0:
        try:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
            os.execve(path, args, env)
        except OSError as exc:
            os.write(2, f"pystack-init: exec {args[0]}: {exc.strerror}\n".encode())
        os._exit(127)
    os._exit(supervise(child, every))


def supervise(child: int, sigset: set) -> int:
    """The loop: forward signals, reap everything, return the program's exit code."""
    while True:
        info = signal.sigwaitinfo(sigset)
        sig = info.si_signo
        if sig == signal.SIGCHLD:
            while True:
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
                if pid == child:
                    code = os.waitstatus_to_exitcode(status)
                    return 128 - code if code < 0 else code
        elif sig not in NOT_FORWARDED:
            try:
                os.kill(child, sig)
            except ProcessLookupError:
                pass
