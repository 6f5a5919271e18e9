"""Device rules on cgroup v2: an eBPF BPF_PROG_TYPE_CGROUP_DEVICE program, as runc does.

cgroup v2 has no devices.allow/deny files; the kernel instead asks a BPF program attached
to the cgroup whether an open/mknod of (type, major, minor) with access r/w/m may proceed.

API:

    program(rules) -> bytes              the BPF instructions for OCI device rules
    attach(cgroup_dir, rules) -> None    load it and attach it (replacing earlier ones)
    supported() -> bool                  bpf() and cgroup-device programs usable here

Semantics of the rule list (the OCI spec: "applied in the listed order"): the last
``a *:* rwm`` rule sets the default (allow or deny); the rules after it are checked from
the last one back, and the first that covers the request decides.  A rule covers a
request when the type, major and minor match (``a`` / ``-1`` / missing are wildcards) and
the requested access bits are within the rule's.  This equals cgroup v1's behaviour for
the lists Docker and runc produce, and is stricter in one corner: v1 cannot subtract a
single device from a wildcard allow, this can.
"""
from __future__ import annotations

import ctypes
import errno
import os
import struct
# (no platform, pathlib or typing: a v2 host's `pystack-runtime create` loads this module
# for every container, and those imports cost it ~20 ms of CPU on a slow VM)

BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_DETACH = 9
BPF_PROG_GET_FD_BY_ID = 13
BPF_PROG_QUERY = 16
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
BPF_F_ALLOW_MULTI = 2

DEV_BLOCK, DEV_CHAR = 1, 2
ACC_MKNOD, ACC_READ, ACC_WRITE = 1, 2, 4
_ACCESS = {"m": ACC_MKNOD, "r": ACC_READ, "w": ACC_WRITE}

_SYS_BPF = {"x86_64": 321, "aarch64": 280, "riscv64": 280, "loongarch64": 280,
            "s390x": 351, "ppc64le": 361, "i686": 357, "armv7l": 386}

# instruction opcodes (linux/bpf.h)
_LDX_MEM_W = 0x61      # dst = *(u32 *)(src + off)
_ALU64_AND_K = 0x57
_ALU64_RSH_K = 0x77
_ALU64_MOV_K = 0xB7
_ALU64_MOV_X = 0xBF
_JMP_JNE_K = 0x55      # if dst != imm goto pc + off
_EXIT = 0x95


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def _access_bits(text: str | None) -> int:
    bits = 0
    for ch in text or "rwm":
        bits |= _ACCESS.get(ch, 0)
    return bits


def _wild(v: Any) -> bool:
    return v is None or v == -1


def _is_full_wildcard(rule: dict) -> bool:
    return ((rule.get("type") or "a") == "a" and _wild(rule.get("major"))
            and _wild(rule.get("minor")) and _access_bits(rule.get("access")) == 7)


def _block(rule: dict) -> list[bytes]:
    """Instructions testing one rule: each failed test jumps past the block; a match
    returns the rule's verdict.  Registers: r2 type, r3 access, r4 major, r5 minor."""
    steps: list[tuple[int, int] | bytes] = []   # (register, value) = "jump out if !="
    kind = rule.get("type") or "a"
    if kind != "a":
        steps.append((2, DEV_BLOCK if kind == "b" else DEV_CHAR))
    acc = _access_bits(rule.get("access"))
    if acc != 7:   # requested bits outside the rule's: not covered
        steps.append(_insn(_ALU64_MOV_X, dst=1, src=3))
        steps.append(_insn(_ALU64_AND_K, dst=1, imm=7 & ~acc))
        steps.append((1, 0))
    if not _wild(rule.get("major")):
        steps.append((4, int(rule["major"])))
    if not _wild(rule.get("minor")):
        steps.append((5, int(rule["minor"])))
    steps.append(_insn(_ALU64_MOV_K, dst=0, imm=1 if rule.get("allow") else 0))
    steps.append(_insn(_EXIT))
    n = len(steps)
    return [_insn(_JMP_JNE_K, dst=s[0], off=n - i - 1, imm=s[1]) if isinstance(s, tuple) else s
            for i, s in enumerate(steps)]


def program(rules: Iterable[dict]) -> bytes:
    """The whole program for an ordered OCI device rule list."""
    rules = list(rules)
    default = True  # no rules at all: everything allowed, as an empty v1 list
    start = 0
    for i, r in enumerate(rules):
        if _is_full_wildcard(r):
            default, start = bool(r.get("allow")), i + 1
    insns = [
        _insn(_LDX_MEM_W, dst=2, src=1, off=0),     # r2 = access_type
        _insn(_ALU64_AND_K, dst=2, imm=0xFFFF),     # r2 = device type
        _insn(_LDX_MEM_W, dst=3, src=1, off=0),
        _insn(_ALU64_RSH_K, dst=3, imm=16),         # r3 = requested access
        _insn(_LDX_MEM_W, dst=4, src=1, off=4),     # r4 = major
        _insn(_LDX_MEM_W, dst=5, src=1, off=8),     # r5 = minor
    ]
    for rule in reversed(rules[start:]):
        if _is_full_wildcard(rule):
            continue
        insns.extend(_block(rule))
    insns.append(_insn(_ALU64_MOV_K, dst=0, imm=1 if default else 0))
    insns.append(_insn(_EXIT))
    return b"".join(insns)


# ---------------------------------------------------------------------------------------
# the bpf() syscall

_libc = None


def _bpf(cmd: int, attr: ctypes.Array) -> int:
    global _libc
    nr = _SYS_BPF.get(os.uname().machine)
    if nr is None:
        raise OSError(errno.ENOSYS, f"bpf() number unknown for {os.uname().machine}")
    if _libc is None:
        _libc = ctypes.CDLL("libc.so.6", use_errno=True)
        _libc.syscall.restype = ctypes.c_long
    rc = _libc.syscall(ctypes.c_long(nr), ctypes.c_long(cmd), attr,
                       ctypes.c_long(ctypes.sizeof(attr)))
    if rc < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bpf({cmd}): {os.strerror(err)}")
    return rc


def _load(code: bytes) -> int:
    insns = ctypes.create_string_buffer(code, len(code))
    license = ctypes.create_string_buffer(b"Apache-2.0")
    log = ctypes.create_string_buffer(65536)
    attr = ctypes.create_string_buffer(128)
    struct.pack_into("<IIQQIIQII", attr, 0, BPF_PROG_TYPE_CGROUP_DEVICE, len(code) // 8,
                     ctypes.addressof(insns), ctypes.addressof(license), 1, len(log),
                     ctypes.addressof(log), 0, 0)
    struct.pack_into("<16s", attr, 48, b"pystack_devices")
    struct.pack_into("<II", attr, 64, 0, BPF_CGROUP_DEVICE)
    try:
        return _bpf(BPF_PROG_LOAD, attr)
    except OSError as exc:
        detail = log.value.decode(errors="replace").strip().splitlines()[-1:] or [""]
        raise OSError(exc.errno, f"loading the device filter: {exc.strerror} {detail[0]}") from None


def _attached(cgfd: int) -> list[int]:
    ids = (ctypes.c_uint32 * 64)()
    attr = ctypes.create_string_buffer(64)
    struct.pack_into("<IIIIQI", attr, 0, cgfd, BPF_CGROUP_DEVICE, 0, 0,
                     ctypes.addressof(ids), 64)
    _bpf(BPF_PROG_QUERY, attr)
    count = struct.unpack_from("<I", attr, 24)[0]
    return list(ids[:count])


def _fd_by_id(prog_id: int) -> int:
    attr = ctypes.create_string_buffer(16)
    struct.pack_into("<I", attr, 0, prog_id)
    return _bpf(BPF_PROG_GET_FD_BY_ID, attr)


def _attach_cmd(cmd: int, cgfd: int, progfd: int, flags: int) -> None:
    attr = ctypes.create_string_buffer(32)
    struct.pack_into("<IIII", attr, 0, cgfd, progfd, BPF_CGROUP_DEVICE, flags)
    _bpf(cmd, attr)


def attach(cgroup_dir: str | os.PathLike, rules: Iterable[dict]) -> None:
    """Load the program for ``rules`` and make it the cgroup's only device filter."""
    code = program(rules)
    progfd = _load(code)
    cgfd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        old = _attached(cgfd)
        _attach_cmd(BPF_PROG_ATTACH, cgfd, progfd, BPF_F_ALLOW_MULTI)
        for prog_id in old:   # the new filter is in place before the old ones go
            fd = _fd_by_id(prog_id)
            try:
                _attach_cmd(BPF_PROG_DETACH, cgfd, fd, 0)
            finally:
                os.close(fd)
    finally:
        os.close(cgfd)
        os.close(progfd)


def attached_count(cgroup_dir: str | os.PathLike) -> int:
    """How many device programs are attached to the cgroup (for tests and `inspect`)."""
    cgfd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return len(_attached(cgfd))
    finally:
        os.close(cgfd)


def supported() -> bool:
    """Whether a cgroup-device program can be loaded here (root, CONFIG_CGROUP_BPF)."""
    try:
        os.close(_load(program([])))
        return True
    except OSError:
        return False
