"""Seccomp: Docker's default profile as an OCI ``linux.seccomp`` section, and loading
such a section into the kernel through libseccomp (ctypes, libseccomp.so.2).

API:

    docker_profile() -> dict                 Docker's default profile (data/seccomp-default.json)
    docker_to_oci(profile, capabilities, arch=None, kernel=None) -> dict
                                             resolve includes/excludes (caps, arches, minKernel)
                                             as moby's setupSeccomp does -> OCI linux.seccomp
    default_oci(capabilities) -> dict        docker_to_oci(docker_profile(), capabilities)
    from_security_opt(value, capabilities)   `seccomp=unconfined|builtin|FILE` -> section | None
    validate(section, where="linux.seccomp") raise UserError naming the field on bad input
    available() -> tuple[bool, str]          for `pystack info`: can filters be loaded here?
    f = Filter.compile(section, no_new_privileges=False, cache_dir="auto")
                                             # in the parent, before fork: libseccomp builds
                                             # the BPF program (cached by content)
    f.load()                                 # in the child, right before exec: one syscall
    f.bpf, f.skipped                         # the program; names this libseccomp lacks

Ordering in the container's init (as runc does): with ``noNewPrivileges`` the filter is
loaded last, just before exec.  Without it the kernel demands CAP_SYS_ADMIN to install a
filter, so the runtime must call ``load()`` *before* dropping capabilities; the filter
then also governs the init's remaining syscalls (setgroups/setuid/capset/prctl/execve),
which Docker's profile allows.

``compile`` does all the parsing and every libseccomp call, down to the BPF program
(``seccomp_export_bpf``); the child, single-threaded between fork and exec, only makes
the prctl(PR_SET_SECCOMP) / seccomp() call.  Syscall names
this libseccomp does not know are skipped (as runc does); their calls get the default
action.
"""
from __future__ import annotations

import ctypes
import errno as _errno
import os

from pystack.errors import UserError
from pystack.runtime import minijson as json  # (no json, pathlib, functools: see cli.py)

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "seccomp-default.json")

ACTIONS = {
    "SCMP_ACT_KILL": 0x00000000,          # kill the thread
    "SCMP_ACT_KILL_THREAD": 0x00000000,
    "SCMP_ACT_KILL_PROCESS": 0x80000000,
    "SCMP_ACT_TRAP": 0x00030000,
    "SCMP_ACT_ERRNO": 0x00050000,         # | errno
    "SCMP_ACT_TRACE": 0x7FF00000,         # | msg
    "SCMP_ACT_LOG": 0x7FFC0000,
    "SCMP_ACT_ALLOW": 0x7FFF0000,
}
UNSUPPORTED_ACTIONS = {"SCMP_ACT_NOTIFY"}   # needs a listener socket: not implemented
OPS = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4,
       "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}
ARCHES = {"SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_ARM",
          "SCMP_ARCH_AARCH64", "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32",
          "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC",
          "SCMP_ARCH_PPC64", "SCMP_ARCH_PPC64LE", "SCMP_ARCH_S390", "SCMP_ARCH_S390X",
          "SCMP_ARCH_PARISC", "SCMP_ARCH_PARISC64", "SCMP_ARCH_RISCV64",
          "SCMP_ARCH_LOONGARCH64", "SCMP_ARCH_M68K", "SCMP_ARCH_SH", "SCMP_ARCH_SHEB"}
FLAGS = {"SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
         "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"}

# os.uname().machine -> (Go's GOARCH as Docker's "arches" lists use it, SCMP arch)
_MACHINES = {
    "x86_64": ("amd64", "SCMP_ARCH_X86_64"), "i686": ("386", "SCMP_ARCH_X86"),
    "aarch64": ("arm64", "SCMP_ARCH_AARCH64"), "armv7l": ("arm", "SCMP_ARCH_ARM"),
    "ppc64le": ("ppc64le", "SCMP_ARCH_PPC64LE"), "s390x": ("s390x", "SCMP_ARCH_S390X"),
    "riscv64": ("riscv64", "SCMP_ARCH_RISCV64"), "mips64": ("mips64", "SCMP_ARCH_MIPS64"),
    "loongarch64": ("loong64", "SCMP_ARCH_LOONGARCH64"),
}
_GO_TO_DOCKER = {"386": "x86"}  # Docker's profile names 32-bit x86 "x86"

_SCMP_FLTATR_CTL_NNP = 3
_SCMP_FLTATR_CTL_OPTIMIZE = 8  # libseccomp >= 2.5
# 2 = the syscalls of each architecture as a binary tree instead of a linear list: the same
# rules and the same verdicts, but a few comparisons per syscall instead of hundreds. The
# kernel runs the program once per syscall number when it is loaded (to fill its
# always-allow cache): Docker's profile (~1000 instructions) then loads in ~0.45 ms instead
# of ~1.2 ms, and each filtered syscall of the container costs less.
_OPTIMIZE_LEVEL = 2


# ---------------------------------------------------------------------------------------
# Docker profile -> OCI section

def docker_profile() -> dict:
    """Docker's default profile, in Docker's own format (archMap, includes/excludes)."""
    return json.loads(_read(DATA))


def _kernel_version() -> tuple[int, ...]:
    rel = os.uname().release.split("-")[0]
    out = []
    for part in rel.split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits or 0))
    return tuple(out)


def _parse_version(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split(".") if x.isdigit())


def docker_to_oci(profile: dict, capabilities: Iterable[str], arch: str | None = None,
                  kernel: tuple[int, ...] | None = None) -> dict:
    """Resolve a Docker-format profile for one container, as moby's setupSeccomp does.

    ``capabilities`` is the container's bounding set: a rule whose ``includes.caps`` are
    not all there is left out; a rule with any ``excludes.caps`` cap present is left out.
    ``arch`` is ``platform.machine()`` (default: this host)."""
    from pystack.runtime.caps import normalize

    machine = arch or os.uname().machine
    goarch, native = _MACHINES.get(machine, (machine, "SCMP_ARCH_" + machine.upper()))
    docker_arch = _GO_TO_DOCKER.get(goarch, goarch)
    kver = kernel or _kernel_version()
    capset = {normalize(c) for c in capabilities}

    arches: list[str] = []
    for entry in profile.get("archMap") or []:
        if entry["architecture"] == native:
            arches = [native] + list(entry.get("subArchitectures") or [])
            break
    if not arches and profile.get("architectures"):
        arches = list(profile["architectures"])

    syscalls = []
    for rule in profile.get("syscalls") or []:
        inc = rule.get("includes") or {}
        exc = rule.get("excludes") or {}
        if inc.get("arches") and docker_arch not in inc["arches"]:
            continue
        if inc.get("caps") and not all(normalize(c) in capset for c in inc["caps"]):
            continue
        if inc.get("minKernel") and kver < _parse_version(inc["minKernel"]):
            continue
        if exc.get("arches") and docker_arch in exc["arches"]:
            continue
        if exc.get("caps") and any(normalize(c) in capset for c in exc["caps"]):
            continue
        if exc.get("minKernel") and kver >= _parse_version(exc["minKernel"]):
            continue
        names = list(rule.get("names") or ([rule["name"]] if rule.get("name") else []))
        out: dict[str, Any] = {"names": names, "action": rule["action"]}
        if rule.get("args"):
            out["args"] = [{k: a[k] for k in ("index", "value", "valueTwo", "op") if k in a}
                           for a in rule["args"]]
        if rule.get("errnoRet") is not None:
            out["errnoRet"] = rule["errnoRet"]
        syscalls.append(out)

    section: dict[str, Any] = {"defaultAction": profile["defaultAction"],
                               "architectures": arches, "syscalls": syscalls}
    if profile.get("defaultErrnoRet") is not None:
        section["defaultErrnoRet"] = profile["defaultErrnoRet"]
    return section


def from_security_opt(value: str, capabilities: Iterable[str]) -> dict | None:
    """``security_opt: seccomp=...``: ``unconfined`` -> None (no filter), ``builtin`` ->
    Docker's default, else a JSON profile file in Docker's format (what
    ``docker run --security-opt seccomp=FILE`` reads) or already an OCI section.
    Errors name the file."""
    if value == "unconfined":
        return None
    if value == "builtin":
        return default_oci(capabilities)
    try:
        profile = json.loads(_read(value))
    except OSError as exc:
        raise UserError(f"security_opt seccomp={value}: {exc.strerror}") from None
    except ValueError as exc:
        raise UserError(f"security_opt seccomp={value}: not valid JSON ({exc})") from None
    if not isinstance(profile, dict) or "defaultAction" not in profile:
        raise UserError(f"security_opt seccomp={value}: a seccomp profile needs defaultAction")
    section = docker_to_oci(profile, capabilities)
    validate(section, where=f"seccomp profile {value}")
    return section


def default_oci(capabilities: Iterable[str]) -> dict:
    """Docker's default profile resolved for a container with these (bounding) caps."""
    return docker_to_oci(docker_profile(), capabilities)


# ---------------------------------------------------------------------------------------
# validation (no libseccomp needed)

def validate(section: dict, where: str = "linux.seccomp") -> None:
    """Refuse what cannot be loaded, naming the field: unknown actions, operators,
    architectures, flags; a listener (SCMP_ACT_NOTIFY) pystack does not implement."""
    if not isinstance(section, dict):
        raise UserError(f"{where}: must be an object")

    def action(value: Any, path: str) -> None:
        if value in UNSUPPORTED_ACTIONS:
            raise UserError(f"{path}: {value} is not supported by pystack-runtime")
        if value not in ACTIONS:
            raise UserError(f"{path}: unknown seccomp action {value!r}")

    action(section.get("defaultAction"), f"{where}.defaultAction")
    for i, a in enumerate(section.get("architectures") or []):
        if a not in ARCHES:
            raise UserError(f"{where}.architectures[{i}]: unknown architecture {a!r}")
    for i, fl in enumerate(section.get("flags") or []):
        if fl not in FLAGS:
            raise UserError(f"{where}.flags[{i}]: unknown seccomp flag {fl!r}")
    if section.get("listenerPath"):
        raise UserError(f"{where}.listenerPath: seccomp notify is not supported")
    for i, rule in enumerate(section.get("syscalls") or []):
        path = f"{where}.syscalls[{i}]"
        if not isinstance(rule, dict) or not rule.get("names"):
            raise UserError(f"{path}.names: a non-empty list of syscall names is required")
        action(rule.get("action"), f"{path}.action")
        for j, arg in enumerate(rule.get("args") or []):
            apath = f"{path}.args[{j}]"
            if not isinstance(arg.get("index"), int) or not 0 <= arg["index"] <= 5:
                raise UserError(f"{apath}.index: must be 0..5")
            if arg.get("op") not in OPS:
                raise UserError(f"{apath}.op: unknown comparison {arg.get('op')!r}")
            for k in ("value", "valueTwo"):
                v = arg.get(k, 0)
                if not isinstance(v, int) or not 0 <= v < 1 << 64:
                    raise UserError(f"{apath}.{k}: must be an unsigned 64-bit integer")


# ---------------------------------------------------------------------------------------
# libseccomp through ctypes

class _ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]


class _Version(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]


_LIB: list = []  # [libseccomp or None] once looked up and its functions typed
_HANDLE: list = []  # [libseccomp or None] once loaded (only seccomp_version typed)


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def _lib() -> ctypes.CDLL | None:
    """libseccomp with the signatures ``_compile_bpf`` calls (None if not installed)."""
    if not _LIB:
        lib = _handle()
        if lib is not None:
            _type_functions(lib)
        _LIB.append(lib)
    return _LIB[0]


def _handle() -> ctypes.CDLL | None:
    """libseccomp for its version only (a cache key: a CLI run with the program cached
    on disk types none of the functions it would not call)."""
    if not _HANDLE:
        _HANDLE.append(_load_lib())
    return _HANDLE[0]


def _load_lib() -> ctypes.CDLL | None:
    try:
        lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    except OSError:
        import ctypes.util as ctypes_util  # lazily: it pulls in subprocess, tempfile...
        name = ctypes_util.find_library("seccomp")  # runs ldconfig: only as a fallback
        if name is None:
            return None
        try:
            lib = ctypes.CDLL(name, use_errno=True)
        except OSError:
            return None
    lib.seccomp_version.argtypes = []
    lib.seccomp_version.restype = ctypes.POINTER(_Version)
    return lib


def _type_functions(lib: ctypes.CDLL) -> None:
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    lib.seccomp_release.restype = None
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    lib.seccomp_load.restype = ctypes.c_int
    lib.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
    lib.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lib.seccomp_arch_add.restype = ctypes.c_int
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_syscall_resolve_name.restype = ctypes.c_int
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                           ctypes.c_uint, ctypes.POINTER(_ArgCmp)]
    lib.seccomp_rule_add_array.restype = ctypes.c_int
    lib.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
    lib.seccomp_attr_set.restype = ctypes.c_int
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.seccomp_export_bpf.restype = ctypes.c_int


def available() -> tuple[bool, str]:
    """Whether seccomp filters can be loaded here, and a one-line reason for `pystack info`."""
    try:
        with open("/proc/self/status") as f:
            has_field = any(line.startswith("Seccomp:") for line in f)
    except OSError:
        has_field = False
    if not has_field:
        return False, "the kernel has no seccomp support (CONFIG_SECCOMP)"
    if not os.path.exists("/proc/sys/kernel/seccomp/actions_avail"):
        return False, "the kernel has no seccomp filter support (CONFIG_SECCOMP_FILTER)"
    lib = _lib()
    if lib is None:
        return False, "libseccomp.so.2 not found (install libseccomp2)"
    v = lib.seccomp_version().contents
    return True, f"libseccomp {v.major}.{v.minor}.{v.micro}"


def _action_value(action: str, errno_ret: int | None) -> int:
    base = ACTIONS[action]
    if action == "SCMP_ACT_ERRNO":
        return base | ((_errno.EPERM if errno_ret is None else errno_ret) & 0xFFFF)
    if action == "SCMP_ACT_TRACE":
        return base | ((_errno.EPERM if errno_ret is None else errno_ret) & 0xFFFF)
    return base


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SECCOMP_SET_MODE_FILTER = 1
_FILTER_FLAGS = {"SECCOMP_FILTER_FLAG_TSYNC": 1, "SECCOMP_FILTER_FLAG_LOG": 2,
                 "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4,
                 "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": 32}
_SYS_SECCOMP = {"x86_64": 317, "aarch64": 277, "riscv64": 277, "loongarch64": 277,
                "s390x": 348, "ppc64le": 358, "i686": 354, "armv7l": 383}

# compiled programs by content hash: a daemon or fork server compiles Docker's profile
# once (about 20 ms of libseccomp work), then every container reuses the bytes
_CACHE: dict[str, tuple[bytes, list[str]]] = {}


class Filter:
    """A compiled seccomp program (classic BPF bytes from libseccomp), ready to ``load()``.

    All of libseccomp's work (rules, arch tables, BPF generation) happens in ``compile``,
    in the parent; ``load`` is one prctl/seccomp syscall, safe in a forked child."""

    def __init__(self, bpf: bytes, no_new_privileges: bool, flags: int,
                 skipped: list[str]) -> None:
        if not bpf or len(bpf) % 8:
            raise ValueError("not a BPF program")
        self.bpf = bpf
        self.no_new_privileges = no_new_privileges
        self.flags = flags
        self.skipped = skipped  # syscall names this libseccomp does not know
        self._buf = ctypes.create_string_buffer(bpf, len(bpf))
        self._prog = _SockFprog(len(bpf) // 8, ctypes.cast(self._buf, ctypes.c_void_p))
        self._libc = ctypes.CDLL("libc.so.6", use_errno=True)  # not find_library: it runs ldconfig
        self._libc.syscall.restype = ctypes.c_long
        self._libc.prctl.restype = ctypes.c_int
        self._libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong,
                                     ctypes.c_ulong, ctypes.c_ulong]
        self._prog_addr = ctypes.addressof(self._prog)

    @classmethod
    def compile(cls, section: dict, no_new_privileges: bool = False, *,
                cache_dir: str | os.PathLike | None | object = "auto") -> "Filter":
        """Build the program for an OCI ``linux.seccomp`` section, cached by content in
        memory and on disk (``cache_dir``; "auto" = ``<run_root>/seccomp``, None = no disk
        cache) so that short-lived processes (the CLI, shims) skip libseccomp's ~25 ms."""
        if cache_dir == "auto":
            from pystack.paths import run_root

            cache_dir = run_root() / "seccomp"
        key = _seen_key(section)
        if key is None:
            validate(section)
            key = _cache_key(section)
            _remember(section, key)
        flags = 0
        for fl in section.get("flags") or []:
            flags |= _FILTER_FLAGS[fl]
        flags &= ~_FILTER_FLAGS["SECCOMP_FILTER_FLAG_TSYNC"]  # single-threaded child
        hit = _CACHE.get(key) or _disk_get(cache_dir, key)
        if hit is None:
            hit = _compile_bpf(section)
            _disk_put(cache_dir, key, hit[0], hit[1])
        _CACHE[key] = hit
        return cls(hit[0], no_new_privileges, flags, hit[1])

    def load(self) -> None:
        """Install the filter on the calling thread (call in the child, right before exec,
        or before dropping CAP_SYS_ADMIN when noNewPrivileges is false)."""
        libc = self._libc
        if self.no_new_privileges and libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"prctl(NO_NEW_PRIVS): {os.strerror(err)}")
        nr = _SYS_SECCOMP.get(os.uname().machine)
        if self.flags and nr is not None:
            rc = libc.syscall(ctypes.c_long(nr), ctypes.c_long(SECCOMP_SET_MODE_FILTER),
                              ctypes.c_long(self.flags), ctypes.c_void_p(self._prog_addr))
        else:
            rc = libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, self._prog_addr, 0, 0)
        if rc != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"loading the seccomp filter: {os.strerror(err)}")

    def release(self) -> None:
        """Nothing to free in the kernel or libseccomp (kept for callers written for a
        context-holding filter)."""


# sections already validated and keyed, compared by value (a dict comparison is ~10x
# cheaper than the canonical JSON and hash of the key; each container asks again)
_SEEN: list[tuple[dict, str]] = []


def _seen_key(section: dict) -> str | None:
    for known, key in _SEEN:
        if known == section:
            return key
    return None


def _remember(section: dict, key: str) -> None:
    _SEEN.insert(0, (json.loads(json.dumps(section)), key))  # a copy: callers may mutate theirs
    del _SEEN[8:]


def _cache_key(section: dict) -> str:
    try:  # the builtin module: hashlib's OpenSSL set-up costs ~2 ms per CLI run
        from _sha256 import sha256
    except ImportError:
        from hashlib import sha256

    lib = _handle()
    ver = ""
    if lib is not None:
        v = lib.seccomp_version().contents
        ver = f"{v.major}.{v.minor}.{v.micro}"
    blob = json.dumps({"s": section, "v": ver, "m": os.uname().machine, "o": _OPTIMIZE_LEVEL},
                      sort_keys=True)
    return sha256(blob.encode()).hexdigest()


def _disk_get(cache_dir, key: str) -> tuple[bytes, list[str]] | None:
    if cache_dir is None:
        return None
    try:
        data = json.loads(_read(os.path.join(cache_dir, f"{key}.json")))
        bpf = bytes.fromhex(data["bpf"])
        if bpf and len(bpf) % 8 == 0:
            return bpf, list(data.get("skipped") or [])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def _disk_put(cache_dir, key: str, bpf: bytes, skipped: list[str] | None = None) -> None:
    if cache_dir is None:
        return
    try:
        d = os.fspath(cache_dir)
        os.makedirs(d, mode=0o700, exist_ok=True)
        tmp = os.path.join(d, f".{key}.{os.getpid()}")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(json.dumps({"bpf": bpf.hex(), "skipped": skipped or []}))
        os.replace(tmp, os.path.join(d, f"{key}.json"))
    except OSError:
        pass  # a cache only


def _compile_bpf(section: dict) -> tuple[bytes, list[str]]:
    """libseccomp: context, architectures, rules, then the BPF program as bytes."""
    lib = _lib()
    if lib is None:
        raise UserError("seccomp: libseccomp.so.2 is not installed (apt-get install libseccomp2)")
    default = _action_value(section["defaultAction"], section.get("defaultErrnoRet"))
    ctx = lib.seccomp_init(default)
    if not ctx:
        raise OSError(_errno.EINVAL, "seccomp_init failed")
    skipped: list[str] = []
    try:
        # NNP is set by Filter.load itself; SSB (spec allow) is a load flag there too
        _check(lib.seccomp_attr_set(ctx, _SCMP_FLTATR_CTL_NNP, 0), "seccomp_attr_set(NNP)")
        # an older libseccomp refuses the attribute (EINVAL/EOPNOTSUPP): a linear program
        lib.seccomp_attr_set(ctx, _SCMP_FLTATR_CTL_OPTIMIZE, _OPTIMIZE_LEVEL)
        for a in section.get("architectures") or []:
            token = lib.seccomp_arch_resolve_name(a.removeprefix("SCMP_ARCH_").lower().encode())
            if token == 0:
                continue  # this libseccomp does not know the arch
            rc = lib.seccomp_arch_add(ctx, token)
            if rc not in (0, -_errno.EEXIST):
                _check(rc, f"seccomp_arch_add({a})")
        for rule in section.get("syscalls") or []:
            value = _action_value(rule["action"], rule.get("errnoRet"))
            if value == default:
                continue  # libseccomp refuses a rule equal to the default action
            for conds in _condition_sets(rule.get("args") or []):
                arr = (_ArgCmp * max(len(conds), 1))()
                for i, c in enumerate(conds):
                    arr[i] = _ArgCmp(c["index"], OPS[c["op"]], c.get("value", 0),
                                     c.get("valueTwo", 0))
                for name in rule["names"]:
                    nr = lib.seccomp_syscall_resolve_name(name.encode())
                    if nr == -1:  # __NR_SCMP_ERROR: unknown to this libseccomp
                        skipped.append(name)
                        continue
                    rc = lib.seccomp_rule_add_array(ctx, value, nr, len(conds), arr)
                    _check(rc, f"seccomp rule for {name}")
        fd = os.memfd_create("pystack-seccomp", os.MFD_CLOEXEC)
        try:
            _check(lib.seccomp_export_bpf(ctx, fd), "seccomp_export_bpf")
            size = os.lseek(fd, 0, os.SEEK_END)
            os.lseek(fd, 0, os.SEEK_SET)
            chunks = []
            while size > 0:
                chunk = os.read(fd, size)
                if not chunk:
                    break
                chunks.append(chunk)
                size -= len(chunk)
            bpf = b"".join(chunks)
        finally:
            os.close(fd)
    finally:
        lib.seccomp_release(ctx)
    return bpf, sorted(set(skipped))


def _condition_sets(args: list[dict]) -> list[list[dict]]:
    """runc's rule for several conditions on the same argument: libseccomp cannot AND two
    comparisons of one argument, so each becomes its own rule (OR); otherwise one rule."""
    if len(args) > 1 and len({a["index"] for a in args}) == 1:
        return [[a] for a in args]
    return [args]


def _check(rc: int, what: str) -> None:
    if rc < 0:
        raise OSError(-rc, f"{what}: {os.strerror(-rc)}")


def apply(section: dict, no_new_privileges: bool = False) -> None:
    """Compile and load in one go (for a process that does not fork after)."""
    Filter.compile(section, no_new_privileges).load()
