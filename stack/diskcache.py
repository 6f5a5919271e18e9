"""A small on-disk cache of pure computations, in the user's cache directory.

``$PYSTACK_CACHE_DIR``, else ``$XDG_CACHE_HOME/pystack``, else ``~/.cache/pystack``;
``PYSTACK_NO_CACHE=1`` turns it off. An entry is a file written whole and renamed into
place (readers never see half of one); anything that cannot be read or written is simply
a miss: the cache never makes a command fail. Entries are :mod:`marshal` data (fast,
plain values only) and each carries what it was computed from, which the caller compares
in full on a hit: a file name is only a place, never the proof of a match.
"""
from __future__ import annotations

import marshal
import os

# entries per area before the oldest half is dropped (checked when an entry is written)
MAX_ENTRIES = 256


def cache_dir(area: str) -> str | None:
    """The directory of one area of the cache, or ``None`` when caching is off."""
    env = os.environ
    if env.get("PYSTACK_NO_CACHE"):
        return None
    base = env.get("PYSTACK_CACHE_DIR")
    if not base:
        xdg = env.get("XDG_CACHE_HOME")
        home = env.get("HOME")
        if xdg and os.path.isabs(xdg):
            base = os.path.join(xdg, "pystack")
        elif home:
            base = os.path.join(home, ".cache", "pystack")
        else:
            return None
    return os.path.join(base, area)


def read(area: str, name: str) -> object | None:
    """The value stored under ``name``, or ``None``."""
    directory = cache_dir(area)
    if directory is None:
        return None
    try:
        with open(os.path.join(directory, name), "rb") as fh:
            data = fh.read()
        return marshal.loads(data)
    except (OSError, ValueError, EOFError, TypeError):
        return None


def write(area: str, name: str, value: object) -> None:
    """Store ``value`` (marshal-able) under ``name``; errors are ignored."""
    directory = cache_dir(area)
    if directory is None:
        return
    try:
        data = marshal.dumps(value)
    except ValueError:
        return
    path = os.path.join(directory, name)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        except FileNotFoundError:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            _prune(directory)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        return
    if not hash(name) & 31:  # now and then: keep the area small
        _prune(directory)


def _prune(directory: str) -> None:
    """Drop the least recently written half of the entries when there are too many."""
    try:
        entries = []
        with os.scandir(directory) as it:
            for e in it:
                try:
                    entries.append((e.stat().st_mtime_ns, e.path))
                except OSError:
                    pass
        if len(entries) <= MAX_ENTRIES:
            return
        entries.sort()
        for _, path in entries[: len(entries) // 2]:
            try:
                os.unlink(path)
            except OSError:
                pass
    except OSError:
        pass
