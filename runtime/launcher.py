"""A fast-starting ``pystack-runtime``: the same command, run by ``python -S``.

A console script (``pystack-runtime`` as pip installs it) starts Python with ``site``:
every ``.pth`` file of the environment runs first (pip writes ``#!/path/to/python`` and
drops any interpreter option, so the script cannot ask for ``-S`` itself). setuptools'
own editable-install hook imported pathlib, importlib.util, urllib.parse... ~25 ms before
``main()`` on every call; setup.py now writes a hook that imports nothing, and ``site``
itself still costs a few ms (its own code, other packages' ``.pth`` files). Tools that
drive an OCI runtime (podman, a test, the benchmark) start it once per operation, and
runc's start-up is ~2 ms of Go.

The runtime imports nothing outside the standard library, so it does not need ``site``.
This module writes a launcher script with the interpreter's absolute path and ``-S`` in
its ``#!`` line and the directories of this installation put on ``sys.path`` by hand:

    python -m pystack.runtime.launcher /usr/local/bin/pystack-runtime-fast

It behaves exactly as ``pystack-runtime`` (same arguments, output, exit codes, state
under ``--root``); only the interpreter start-up differs.
"""
from __future__ import annotations

import os
import sys

TEMPLATE = """#!{python} -S
# pystack-runtime without site-packages processing (python -S); written by
# `python -m pystack.runtime.launcher` -- rerun it if the installation moves.
import gc, sys
gc.disable()  # a one-shot command (pystack.runtime.cli.main does the same)
sys.path[0:0] = {paths!r}
import pystack
pystack.__path__.extend({extra!r})
from pystack.runtime.cli import main
sys.exit(main())
"""


def script() -> str:
    """The launcher's text for this interpreter and this installation of pystack."""
    import pystack
    import pystack.runtime
    pkg = os.path.dirname(os.path.abspath(pystack.__file__))
    rt = os.path.dirname(os.path.abspath(pystack.runtime.__file__))
    paths = [os.path.dirname(pkg)]
    # an editable install maps pystack.runtime onto the repository's runtime/ folder
    # (setup.py): the same mapping, by adding that folder's parent to pystack's path
    extra = [] if os.path.dirname(rt) == pkg else [os.path.dirname(rt)]
    if os.path.basename(rt) != "runtime":
        raise SystemExit(f"unexpected layout: pystack.runtime is in {rt}")
    return TEMPLATE.format(python=sys.executable, paths=paths, extra=extra)


def write(dest: str | os.PathLike) -> str:
    """Write the launcher to ``dest`` (mode 0755); its path."""
    dest = os.fspath(dest)
    tmp = f"{dest}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(script())
    os.chmod(tmp, 0o755)
    os.rename(tmp, dest)
    return dest


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0].startswith("-"):
        print("usage: python -m pystack.runtime.launcher DEST", file=sys.stderr)
        return 2
    try:
        print(write(args[0]))
    except OSError as exc:
        print(f"pystack.runtime.launcher: {exc.strerror}: {args[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
