"""The on-disk state of containers, like runc's ``--root`` directory.

One directory per container id under the state root, mode 0700:

``state.json``  written once at create: id, bundle, rootfs, pid (+ its start time so a
                reused pid is never mistaken for the container), shim pid, cgroup paths,
                annotations, created time
``exec.fifo``   present between create and start (the init blocks opening it; ``start``
                reads it): its existence means "created"
``started``     RFC 3339 time of ``start``
``exit.json``   written by the shim when PID 1 is reaped: exitCode, oomKilled, finishedAt

Status is derived from these files and /proc, never cached, so a crashed caller or shim
leaves nothing stale: a dead pid means "stopped".
"""
from __future__ import annotations

import os
import time

from pystack.errors import Conflict, NotFound, UserError
from pystack.runtime import minijson as json

# (no re, pathlib or json here: this module is on the start path of every one-shot
# `pystack-runtime` command, and those three cost ~20 ms of imports on a slow VM)

OCI_VERSION = "1.0.2"


_TRACE_PATH = os.environ.get("PYSTACK_RUNTIME_TRACE") or None
TRACE_FD = -1  # kept open by close_fds; close-on-exec, so it never reaches a program


def trace(label: str) -> None:
    """Debugging the start path: with ``PYSTACK_RUNTIME_TRACE=<file>`` in the environment,
    every process of the runtime (caller, fork server, shim, init) appends
    ``<CLOCK_MONOTONIC ns> <pid> <label>`` lines to that file. Off: one global test."""
    global TRACE_FD
    if _TRACE_PATH is None:
        return
    if TRACE_FD < 0:
        import fcntl
        fd = os.open(_TRACE_PATH, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        TRACE_FD = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 900)
        os.close(fd)
    import resource
    flt = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    os.write(TRACE_FD, f"{time.monotonic_ns()} {os.getpid()} {label} [{flt}]\n".encode())


def rfc3339(ns: int | None = None) -> str:
    """UTC time with nanoseconds, as Docker and runc print it (``...T12:00:00.123456789Z``)."""
    ns = time.time_ns() if ns is None else ns
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


def proc_start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks); None if gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = data[data.rindex(b")") + 2:].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def write_atomic(path: "str | os.PathLike", data: str | bytes) -> None:
    """Write a file so readers see the old or the new content, never half of it."""
    path = os.fspath(path)
    head, name = os.path.split(path)
    tmp = os.path.join(head, f".{name}.{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
    os.rename(tmp, path)


class StateDir:
    """The state root of one runtime instance (a ``--root``).

    ``root``, ``path()`` and ``make()`` give ``pathlib.Path`` objects (callers use them);
    the rest works on strings, so that the one-shot command never imports pathlib."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root_path = os.fspath(root)

    @property
    def root(self):
        from pathlib import Path
        return Path(self.root_path)

    def ensure(self) -> None:
        os.makedirs(self.root_path, mode=0o700, exist_ok=True)

    def dir(self, cid: str) -> str:
        """``path(cid)`` as a string."""
        check_id(cid)
        return os.path.join(self.root_path, cid)

    def path(self, cid: str):
        from pathlib import Path
        return Path(self.dir(cid))

    def exists(self, cid: str) -> bool:
        return os.path.exists(os.path.join(self.dir(cid), "state.json"))

    def make_dir(self, cid: str) -> str:
        """Create the directory of a new container (its path); Conflict if the id is taken."""
        d = self.dir(cid)
        try:
            try:
                os.mkdir(d, 0o700)
            except FileNotFoundError:  # the root itself is missing (first use, removed)
                self.ensure()
                os.mkdir(d, 0o700)
        except FileExistsError:
            raise Conflict(f"container with id {cid} already exists") from None
        return d

    def make(self, cid: str):
        """``make_dir`` as a ``pathlib.Path``."""
        from pathlib import Path
        return Path(self.make_dir(cid))

    def load(self, cid: str) -> dict:
        """The record written at create; NotFound for an unknown id."""
        try:
            return json.loads(_read(os.path.join(self.dir(cid), "state.json")))
        except FileNotFoundError:
            raise NotFound(f"container {cid} does not exist") from None

    def save(self, cid: str, record: dict) -> None:
        write_atomic(os.path.join(self.dir(cid), "state.json"), json.dumps(record))

    def ids(self) -> list[str]:
        if not os.path.isdir(self.root_path):
            return []
        with os.scandir(self.root_path) as entries:
            return sorted(e.name for e in entries
                          if os.path.exists(os.path.join(e.path, "state.json")))

    def exit_info(self, cid: str) -> dict | None:
        try:
            return json.loads(_read(os.path.join(self.dir(cid), "exit.json")))
        except (FileNotFoundError, ValueError):
            return None

    def status(self, cid: str, record: dict) -> str:
        """created / running / paused / stopped, from the files and /proc (see module doc)."""
        d = self.dir(cid)
        if os.path.exists(os.path.join(d, "exit.json")):
            return "stopped"
        pid = record.get("pid") or 0
        if pid <= 0 or proc_start_time(pid) != record.get("pid_start"):
            return "stopped"
        if os.path.exists(os.path.join(d, "exec.fifo")):
            return "created"
        if is_frozen(record):
            return "paused"
        return "running"

    def oci_state(self, cid: str) -> dict:
        """runc's ``state`` JSON plus Docker's exit fields (see docs/contracts.md)."""
        rec = self.load(cid)
        status = self.status(cid, rec)
        try:
            started = _read(os.path.join(self.dir(cid), "started"))
        except FileNotFoundError:
            started = ""
        return oci_state_of({**rec, "id": cid}, status, started, self.exit_info(cid) or {})


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def oci_state_of(rec: dict, status: str, started_at: str = "", info: dict | None = None) -> dict:
    """The ``state`` JSON of a record (state.json), its status, start time and exit info."""
    info = info or {}
    out = {
        "ociVersion": OCI_VERSION,
        "id": rec.get("id", ""),
        "pid": rec.get("pid", 0) if status != "stopped" else 0,
        "status": status,
        "bundle": rec.get("bundle", ""),
        "rootfs": rec.get("rootfs", ""),
        "created": rec.get("created", ""),
        "owner": "",
    }
    if rec.get("annotations"):
        out["annotations"] = rec["annotations"]
    if rec.get("stdin"):
        out["stdinPath"] = rec["stdin"]  # a FIFO: write to it to feed the container
    out["startedAt"] = started_at
    out["exitCode"] = info.get("exitCode")
    out["oomKilled"] = bool(info.get("oomKilled", False))
    out["finishedAt"] = info.get("finishedAt", "")
    return out


def is_frozen(record: dict) -> bool:
    """Whether the container's cgroup is frozen (v1 freezer.state / v2 cgroup.freeze)."""
    paths = record.get("cgroup_paths") or {}
    v1 = paths.get("freezer")
    try:
        if v1:
            return _read(os.path.join(v1, "freezer.state")).strip() in ("FROZEN", "FREEZING")
        v2 = paths.get("")
        if v2:
            return _read(os.path.join(v2, "cgroup.freeze")).strip() == "1"
    except OSError:
        return False
    return False


def check_id(cid: str) -> None:
    """Ids are single path components (runc's rule): no '/', no '..', not empty."""
    if not _valid_id(cid) or cid in (".", ".."):
        raise UserError(f"invalid container id {cid!r}: use letters, digits, '_', '+', '-', '.'")


_ID_PUNCT = frozenset("_+-.")


def _valid_id(cid) -> bool:
    """``re.fullmatch(r"[\\w+\\-.]{1,1024}", cid)`` without ``re`` (``\\w``: str.isalnum,
    which is what re's Unicode ``\\w`` is, plus ``_``)."""
    if not isinstance(cid, str) or not 0 < len(cid) <= 1024:
        return False
    return all(c.isalnum() or c in _ID_PUNCT for c in cid)
