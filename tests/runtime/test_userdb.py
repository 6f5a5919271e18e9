"""User resolution against an image's /etc/passwd and /etc/group, incl. hostile rootfs."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from pystack.errors import UserError
from pystack.runtime import userdb
from pystack.runtime.userdb import ExecUser, resolve_user
from pystack.testimage import GROUP, PASSWD

BOTH = pytest.mark.parametrize("openat2", [True, False], ids=["openat2", "walk"])


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text(PASSWD)
    (root / "etc/group").write_text(GROUP + "audio:x:29:app,root\n")
    return root


@BOTH
@pytest.mark.parametrize("user, want", [
    ("", ExecUser(0, 0, [29], "/root", "root")),
    ("root", ExecUser(0, 0, [29], "/root", "root")),
    ("app", ExecUser(1000, 1000, [100, 29], "/home/app", "app")),
    ("1000", ExecUser(1000, 1000, [100, 29], "/home/app", "app")),
    ("app:www-data", ExecUser(1000, 33, [], "/home/app", "app")),
    ("1000:33", ExecUser(1000, 33, [], "/home/app", "app")),
    ("www-data", ExecUser(33, 33, [], "/var/www", "www-data")),
    ("4242", ExecUser(4242, 0, [], "/", None)),
    ("4242:4343", ExecUser(4242, 4343, [], "/", None)),
    ("4242:users", ExecUser(4242, 100, [], "/", None)),
])
def test_resolution(rootfs: Path, user: str, want: ExecUser, openat2: bool) -> None:
    assert resolve_user(rootfs, user, use_openat2=openat2) == want


def test_group_add_and_oci(rootfs: Path) -> None:
    u = resolve_user(rootfs, "www-data", group_add=["daemon", "777", 33])
    assert u.additional_gids == [1, 777, 33]
    assert u.to_oci() == {"uid": 33, "gid": 33, "additionalGids": [1, 777, 33]}
    with pytest.raises(UserError, match="unable to find group video"):
        resolve_user(rootfs, "app", group_add=["video"])


@pytest.mark.parametrize("user, message", [
    ("nosuch", "unable to find user nosuch: no matching entries in passwd file"),
    ("app:nogrp", "unable to find group nogrp: no matching entries in group file"),
    ("99999999999", "uid 99999999999 is out of range"),
    (":", "invalid user"),
])
def test_errors(rootfs: Path, user: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        resolve_user(rootfs, user)


def test_no_etc_files(tmp_path: Path) -> None:
    root = tmp_path / "empty"
    root.mkdir()
    assert resolve_user(root, "") == ExecUser(0, 0, [], "/", None)
    assert resolve_user(root, "123:456") == ExecUser(123, 456, [], "/", None)
    with pytest.raises(UserError):
        resolve_user(root, "app")


@BOTH
@pytest.mark.parametrize("target", ["/../../../../../../{host}", "../../../../../../{host}",
                                    "{host}"])
def test_hostile_symlink_stays_in_root(tmp_path: Path, rootfs: Path, target: str,
                                       openat2: bool) -> None:
    """/etc/passwd pointing at a host file must not be read from the host."""
    host = tmp_path / "host-passwd"
    host.write_text("evil:x:0:0:evil:/evil:/bin/sh\n")
    (rootfs / "etc/passwd").unlink()
    os.symlink(target.format(host=str(host).lstrip("/")) if not target.startswith("{")
               else str(host), rootfs / "etc/passwd")
    with pytest.raises(UserError, match="unable to find user evil"):
        resolve_user(rootfs, "evil", use_openat2=openat2)
    # and numeric users still work: the file is treated as absent
    assert resolve_user(rootfs, "0", use_openat2=openat2).home == "/"


@BOTH
def test_symlinks_inside_the_root_are_followed(rootfs: Path, openat2: bool) -> None:
    (rootfs / "usr/share").mkdir(parents=True)
    (rootfs / "etc/passwd").rename(rootfs / "usr/share/passwd")
    os.symlink("/usr/../usr/share/passwd", rootfs / "etc/passwd")
    os.symlink("../etc", rootfs / "usr/etc-link")
    assert resolve_user(rootfs, "app", use_openat2=openat2).uid == 1000
    fd = userdb.open_in_root(rootfs, "/usr/etc-link/group", use_openat2=openat2)
    assert fd is not None
    os.close(fd)


@BOTH
def test_fifo_and_loops_are_not_read(rootfs: Path, openat2: bool) -> None:
    (rootfs / "etc/group").unlink()
    os.mkfifo(rootfs / "etc/group")          # reading it would block forever
    assert resolve_user(rootfs, "app", use_openat2=openat2).additional_gids == []
    (rootfs / "etc/passwd").unlink()
    os.symlink("/etc/passwd", rootfs / "etc/passwd")   # loop
    assert userdb.open_in_root(rootfs, "/etc/passwd", use_openat2=openat2) is None
    with pytest.raises(UserError):
        resolve_user(rootfs, "app", use_openat2=openat2)


def test_with_home() -> None:
    assert userdb.with_home(["PATH=/bin"], "/root") == ["PATH=/bin", "HOME=/root"]
    assert userdb.with_home(["HOME=/x"], "/root") == ["HOME=/x"]
