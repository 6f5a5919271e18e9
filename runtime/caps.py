"""Linux capabilities: names, Docker's default set, and applying them in a container's init.

API (used by the runtime core, part A):

    CAPABILITIES                  tuple of names, index = capability number (0..40)
    DOCKER_DEFAULT                Docker's 14 default capabilities (bounding/effective/permitted)
    last_cap() -> int             /proc/sys/kernel/cap_last_cap (what this kernel knows)
    normalize(name) -> str        "net_admin" / "NET_ADMIN" / "CAP_NET_ADMIN" -> "CAP_NET_ADMIN"
    is_known(name) -> bool
    to_mask(names) -> int;  from_mask(mask) -> list[str]
    all_caps() -> list[str]       every capability this kernel has (privileged)
    tweak(base, add, drop)        Compose cap_add/cap_drop (incl. ALL) as Docker applies them
    CapSets.from_spec(process["capabilities"]) -> CapSets    # compute in the parent, before fork
    caps.drop_bounding()          # in the child, while still root with CAP_SETPCAP
    set_keep_caps(True)           # before setuid() to a non-root user, as runc does
    caps.apply()                  # after setuid(): capset(eff, perm, inh) + ambient set
    apply_all(caps, change_user=None)   # the three steps above in runc's order
    read_status(pid="self") -> dict     # CapInh/CapPrm/CapEff/CapBnd/CapAmb masks from /proc

Why precompute: the child runs between fork and exec, single-threaded, and should do no
parsing and no imports there; everything it calls is a ctypes call into libc that was
resolved before the fork.  Capabilities this kernel does not know (number above
``cap_last_cap``) are skipped silently, as runc does.
"""
from __future__ import annotations

import ctypes
import os

# (no dataclasses/typing: they cost ~10 ms of imports on the one-shot CLI's start path)

# Index = capability number (linux/capability.h).
CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)
_NUMBER = {name: i for i, name in enumerate(CAPABILITIES)}

# moby daemon/pkg/oci/caps/defaults.go: bounding = permitted = effective; inheritable and
# ambient empty (CVE-2022-24769).
DOCKER_DEFAULT: tuple[str, ...] = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
)

SETS = ("bounding", "effective", "permitted", "inheritable", "ambient")

PR_SET_KEEPCAPS = 8
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


_LAST_CAP: int | None = None


def last_cap() -> int:
    """Highest capability number the running kernel knows (40 on 5.9+); read once (the
    kernel's answer does not change while it runs)."""
    global _LAST_CAP
    if _LAST_CAP is None:
        try:
            with open("/proc/sys/kernel/cap_last_cap") as f:
                _LAST_CAP = int(f.read())
        except OSError:
            return len(CAPABILITIES) - 1
    return _LAST_CAP


def normalize(name: str) -> str:
    """Canonical ``CAP_*`` spelling of a capability name, as Docker accepts it (any case,
    with or without the ``CAP_`` prefix); does not check that it exists."""
    up = name.strip().upper()
    return up if up.startswith("CAP_") else "CAP_" + up


def is_known(name: str) -> bool:
    """Whether ``name`` is a capability pystack knows (regardless of this kernel)."""
    return normalize(name) in _NUMBER


def number(name: str) -> int:
    """Capability number; KeyError for an unknown name."""
    return _NUMBER[normalize(name)]


def to_mask(names: Iterable[str]) -> int:
    """Bit mask of the known capabilities in ``names`` that this kernel supports."""
    top = last_cap()
    mask = 0
    for name in names:
        n = _NUMBER.get(normalize(name))
        if n is not None and n <= top:
            mask |= 1 << n
    return mask


def from_mask(mask: int) -> list[str]:
    """Names of the capabilities set in ``mask`` (unknown high bits named ``CAP_<n>``)."""
    out = []
    for n in range(max(mask.bit_length(), 0)):
        if mask >> n & 1:
            out.append(CAPABILITIES[n] if n < len(CAPABILITIES) else f"CAP_{n}")
    return out


def all_caps() -> list[str]:
    """Every capability this kernel supports (what ``privileged: true`` grants)."""
    return list(CAPABILITIES[: last_cap() + 1])


def tweak(base: Iterable[str], add: Iterable[str] = (), drop: Iterable[str] = ()) -> list[str]:
    """Compose's ``cap_add``/``cap_drop`` applied to ``base`` as Docker does
    (moby ``caps.TweakCapabilities``): ``ALL`` in ``add`` means every capability, in
    ``drop`` means start from nothing; drops apply before adds; unknown names are a
    UserError naming the capability."""
    from pystack.errors import UserError

    def norm(names: Iterable[str], what: str) -> list[str]:
        out = []
        for n in names:
            c = normalize(n)
            if c != "CAP_ALL" and c not in _NUMBER:
                raise UserError(f"{what}: unknown capability: {n!r}")
            out.append(c)
        return out

    adds, drops = norm(add, "cap_add"), norm(drop, "cap_drop")
    if "CAP_ALL" in adds:
        result = all_caps()
    elif "CAP_ALL" in drops:
        result = []
    else:
        result = [normalize(c) for c in base if normalize(c) not in drops]
    for c in adds:
        if c != "CAP_ALL" and c not in result:
            result.append(c)
    if "CAP_ALL" in adds:
        result = [c for c in result if c not in drops]
    return result


def read_status(pid: int | str = "self") -> dict[str, int]:
    """The capability masks of a process from /proc/<pid>/status (CapInh, CapPrm, CapEff,
    CapBnd, CapAmb) as integers: what tests and ``ps``-like tools compare."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Cap"):
                key, _, val = line.partition(":")
                out[key] = int(val.strip(), 16)
    return out


# ---------------------------------------------------------------------------------------
# libc calls, resolved once (in the parent) so the child only calls them.

class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


_libc: ctypes.CDLL | None = None


def _lib() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        lib = ctypes.CDLL("libc.so.6", use_errno=True)  # not find_library: it runs ldconfig
        lib.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                              ctypes.c_ulong]
        lib.prctl.restype = ctypes.c_int
        lib.capset.argtypes = [ctypes.POINTER(_CapHeader), ctypes.POINTER(_CapData)]
        lib.capset.restype = ctypes.c_int
        _libc = lib
    return _libc


def _prctl(option: int, arg2: int = 0, arg3: int = 0) -> None:
    if _lib().prctl(option, arg2, arg3, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl({option}, {arg2}, {arg3}): {os.strerror(err)}")


def set_keep_caps(on: bool) -> None:
    """PR_SET_KEEPCAPS: keep the permitted set across setuid() from root to another uid
    (runc sets it before changing user and clears it after, then calls capset)."""
    _prctl(PR_SET_KEEPCAPS, 1 if on else 0)


class CapSets:
    """The five capability sets of a process, as bit masks limited to this kernel."""

    __slots__ = ("bounding", "effective", "permitted", "inheritable", "ambient", "last")

    def __init__(self, bounding: int = 0, effective: int = 0, permitted: int = 0,
                 inheritable: int = 0, ambient: int = 0, last: int | None = None) -> None:
        self.bounding = bounding
        self.effective = effective
        self.permitted = permitted
        self.inheritable = inheritable
        self.ambient = ambient
        self.last = last_cap() if last is None else last

    def _tuple(self) -> tuple[int, ...]:
        return tuple(getattr(self, k) for k in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._tuple() == other._tuple()  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        return "CapSets(" + ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__) + ")"

    @classmethod
    def from_spec(cls, capabilities: dict | None) -> "CapSets":
        """From an OCI ``process.capabilities`` object (missing sets are empty, as in runc)."""
        capabilities = capabilities or {}
        return cls(**{s: to_mask(capabilities.get(s) or ()) for s in SETS})

    @classmethod
    def docker_default(cls) -> "CapSets":
        """Docker's 14 in bounding, effective and permitted; inheritable/ambient empty."""
        m = to_mask(DOCKER_DEFAULT)
        return cls(bounding=m, effective=m, permitted=m)

    def drop_bounding(self) -> None:
        """Drop from the bounding set every capability not in ``bounding``.

        Needs CAP_SETPCAP in the effective set, so it runs before setuid/capset."""
        lib = _lib()
        for n in range(self.last + 1):
            if not self.bounding >> n & 1:
                # dropping a capability that is not in the set succeeds too: one call each
                if lib.prctl(PR_CAPBSET_DROP, n, 0, 0, 0) != 0:
                    err = ctypes.get_errno()
                    if lib.prctl(PR_CAPBSET_READ, n, 0, 0, 0) != 0:
                        raise OSError(err, f"prctl(PR_CAPBSET_DROP, {n}): {os.strerror(err)}")

    def apply(self) -> None:
        """capset() effective/permitted/inheritable, then set the ambient set exactly."""
        hdr = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
        data = (_CapData * 2)()
        for i in range(2):
            shift = 32 * i
            data[i].effective = (self.effective >> shift) & 0xFFFFFFFF
            data[i].permitted = (self.permitted >> shift) & 0xFFFFFFFF
            data[i].inheritable = (self.inheritable >> shift) & 0xFFFFFFFF
        if _lib().capset(ctypes.byref(hdr), data) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"capset: {os.strerror(err)}")
        _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
        for n in range(self.last + 1):
            if self.ambient >> n & 1:
                # needs the cap in permitted and inheritable; runc ignores failures here
                _lib().prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, n, 0, 0)


def apply_all(caps: CapSets, change_user: Callable[[], None] | None = None) -> None:
    """runc's order: drop bounding; keep caps across the user change; change user;
    stop keeping; capset + ambient.  ``change_user`` does setgroups/setgid/setuid."""
    _lib()
    caps.drop_bounding()
    if change_user is not None:
        set_keep_caps(True)
        change_user()
        set_keep_caps(False)
    caps.apply()


def prepare() -> None:
    """Resolve the libc symbols now (call in the parent before fork)."""
    _lib()
