"""Helpers for the runtime tests: run a bundle through the library, runc or the CLI."""
from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path


def new_id(prefix: str = "c") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def run_container(rt, bundle: Path, overlay_kw: dict | None = None, *, cid: str | None = None,
                  timeout: float = 30, **create_kw) -> tuple[int, str]:
    """Create, start, wait, delete; return (exit code, stdout+stderr)."""
    cid = cid or new_id()
    out = bundle / f"out-{cid}"
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        rt.create(cid, bundle, stdio=(null, fd, fd), **(overlay_kw or {}), **create_kw)
    finally:
        os.close(fd)
        os.close(null)
    try:
        rt.start(cid)
        code = rt.wait(cid, timeout=timeout)
    finally:
        rt.delete(cid, force=True)
    return code, out.read_text()


def runc_run(bundle: Path, root: Path, cid: str | None = None, timeout: float = 30) -> tuple[int, str]:
    """``runc run`` of the same bundle (the oracle)."""
    cid = cid or new_id("runc")
    p = subprocess.run(["runc", "--root", str(root), "run", cid], cwd=bundle,
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=timeout)
    return p.returncode, p.stdout


def cli_run(bundle: Path, root: Path, cid: str | None = None, timeout: float = 30) -> tuple[int, str]:
    """``pystack-runtime run`` of a bundle, foreground."""
    cid = cid or new_id("cli")
    p = subprocess.run(["pystack-runtime", "--root", str(root), "run", cid], cwd=bundle,
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=timeout)
    return p.returncode, p.stdout
