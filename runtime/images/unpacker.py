"""Layer unpacking in a helper process, so that layers unpack in parallel with downloads
and with each other (the GIL would serialise tar parsing in threads).

The helper is started with ``subprocess`` (a fresh interpreter, never a ``fork()`` of a
threaded process, as DESIGN.md asks) and runs the very same safe unpacker
(``layers.unpack``) on its stdin or on a blob file. It prints one JSON line with the
result, or exits non-zero with the error on stderr, which the parent re-raises as the
same exception type.

    python -m pystack.runtime.images.unpacker DEST DIFF_ID MAX_BYTES MAX_ENTRIES LABEL SRC|-
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from .errors import DigestMismatch, LayerError
from .layers import Limits, UnpackResult

_EXIT = {3: LayerError, 4: DigestMismatch}


# The helper's big buffers (1 MiB inflate output, 256 KiB reads) come from the heap and
# stay there: with glibc's defaults each one is a fresh mmap (or a trimmed heap), i.e.
# page faults on every chunk, about a third of the helper's system time.
MALLOC_TUNABLES = "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=268435456"


def helper_env() -> dict[str, str]:
    env = dict(os.environ)
    old = env.get("GLIBC_TUNABLES")
    env["GLIBC_TUNABLES"] = f"{old}:{MALLOC_TUNABLES}" if old else MALLOC_TUNABLES
    return env


class HelperUnpack:
    """One helper process; feed it with ``write`` (or give it ``src``), then ``finish``."""

    def __init__(self, dest: Path, *, expected_diff_id: str | None, limits: Limits, label: str,
                 src: Path | None = None) -> None:
        self.label = label
        self.broken = False
        import subprocess  # lazily: the helper process itself does not need it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pystack.runtime.images.unpacker", str(dest), expected_diff_id or "",
             str(limits.max_bytes), str(limits.max_entries), label, str(src) if src else "-"],
            stdin=subprocess.PIPE if src is None else subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, close_fds=True, env=helper_env())

    def write(self, data: bytes) -> None:
        if self.broken or self.proc.stdin is None:
            return
        try:
            self.proc.stdin.write(data)
        except BrokenPipeError:  # the helper stopped early (bad layer): finish() says why
            self.broken = True

    def finish(self) -> UnpackResult:
        try:
            out, err = self.proc.communicate()
        except BrokenPipeError:
            out, err = self.proc.stdout.read() if self.proc.stdout else b"", b""
            self.proc.wait()
        if self.proc.returncode == 0:
            d = json.loads(out)
            return UnpackResult(d["diff_id"], d["size"], d["entries"])
        message = err.decode(errors="replace").strip().splitlines()[-1:] or [f"exit {self.proc.returncode}"]
        raise _EXIT.get(self.proc.returncode, LayerError)(
            message[0] if self.proc.returncode in _EXIT else f"{self.label}: unpack helper failed: {message[0]}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()


def main(argv: list[str]) -> int:
    from .layers import unpack
    dest, diff_id, max_bytes, max_entries, label, src = argv
    limits = Limits(max_bytes=int(max_bytes), max_entries=int(max_entries))
    try:
        if src == "-":
            result = unpack(sys.stdin.buffer, Path(dest), expected_diff_id=diff_id or None, limits=limits, label=label)
        else:
            with open(src, "rb") as f:
                result = unpack(f, Path(dest), expected_diff_id=diff_id or None, limits=limits, label=label)
    except DigestMismatch as exc:
        print(str(exc), file=sys.stderr)
        return 4
    except LayerError as exc:
        print(str(exc), file=sys.stderr)
        return 3
    print(json.dumps({"diff_id": result.diff_id, "size": result.size, "entries": result.entries}))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main(sys.argv[1:]))
