"""rootfs.open_in_root: the kernel's openat2(RESOLVE_IN_ROOT) fast path and the
component-by-component walk resolve the same way: symlinks (absolute, ``..``-escaping,
dangling) stay inside the root, missing directories are created inside it."""
from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from pystack.runtime import rootfs


@pytest.fixture
def tree(tmp_path: Path):
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    for d in (root / "etc", root / "real" / "sub", outside / "sub"):
        d.mkdir(parents=True)
    (root / "etc" / "f").write_text("in")
    os.symlink("/real", root / "abs")                       # absolute: inside the root
    os.symlink("../../../../" + str(outside).lstrip("/"), root / "rel")  # climbs: clamped
    os.symlink(str(outside), root / "host")                 # a host path: inside the root
    os.symlink("/made/here", root / "dangling")             # target missing
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY)
    yield root, outside, fd
    os.close(fd)


def _ino(fd: int) -> tuple[int, int]:
    try:
        st = os.fstat(fd)
        return st.st_dev, st.st_ino
    finally:
        os.close(fd)


@pytest.mark.parametrize("walk", [False, True])
def test_paths_resolve_inside_the_root(tree, walk, monkeypatch):
    root, outside, rootfd = tree
    if walk:
        monkeypatch.setattr(rootfs, "_openat2_ok", False)
    st = lambda p: (os.stat(p).st_dev, os.stat(p).st_ino)  # noqa: E731
    assert _ino(rootfs.open_in_root(rootfd, "/abs/sub")) == st(root / "real" / "sub")
    assert _ino(rootfs.open_in_root(rootfd, "../../etc/f")) == st(root / "etc" / "f")
    # a link to a host path, or one that climbs, ends at <root>/<that path>, never the host's
    with pytest.raises(FileNotFoundError):
        rootfs.open_in_root(rootfd, "/host/sub")
    made = rootfs.open_in_root(rootfd, "/rel/sub", create="dir")
    assert _ino(made) == st(root / str(outside).lstrip("/") / "sub")
    assert _ino(rootfs.open_in_root(rootfd, "/host/sub")) == st(root / str(outside).lstrip("/") / "sub")
    # a dangling link's target is made inside the root, a missing chain too
    assert _ino(rootfs.open_in_root(rootfd, "/dangling", create="dir")) == st(root / "made" / "here")
    assert _ino(rootfs.open_in_root(rootfd, "/a/b/c", create="dir")) == st(root / "a" / "b" / "c")
    assert _ino(rootfs.open_in_root(rootfd, "/a/file", create="file")) == st(root / "a" / "file")
    with pytest.raises(OSError) as e:
        rootfs.open_in_root(rootfd, "/abs", nofollow_last=True)
    assert e.value.errno == errno.ELOOP
    with pytest.raises(NotADirectoryError):
        rootfs.open_in_root(rootfd, "/etc/f/x")
    assert not (outside / "sub" / "x").exists() and sorted(os.listdir(outside)) == ["sub"]
