"""The busybox test image: a root filesystem made from Debian's ``busybox-static``.

There is no Docker Hub here, so tests, examples and the README's set-up make their own
small real image: the one static busybox binary, a link per applet, and the few files in
/etc that a container expects. ``make_busybox_rootfs`` writes it into a folder; the image
store's ``pystack image import DIR busybox:latest`` turns that folder into an image, and
``docker import`` takes a tar of it for the dockerd oracle.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

BUSYBOX = Path("/bin/busybox")

PASSWD = """root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
app:x:1000:1000:app:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
"""
GROUP = """root:x:0:
daemon:x:1:
www-data:x:33:
users:x:100:app
app:x:1000:
nogroup:x:65534:
"""


def find_busybox() -> Path:
    """The static busybox of Debian's busybox-static; a clear error when it is missing."""
    for candidate in (BUSYBOX, Path("/usr/bin/busybox")):
        if candidate.exists():
            out = subprocess.run(["file", "-L", str(candidate)], capture_output=True, text=True).stdout \
                if shutil.which("file") else "statically linked"
            if "dynamically linked" in out:
                continue
            return candidate
    raise FileNotFoundError("static busybox not found: apt-get install busybox-static")


def make_busybox_rootfs(dest: Path) -> Path:
    """Write a busybox root filesystem into ``dest`` (created; must be empty or absent)."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    busybox = find_busybox()
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "tmp",
              "root", "var/www", "var/log", "home/app", "run", "data"):
        (dest / d).mkdir(parents=True, exist_ok=True)
    os.chmod(dest / "tmp", 0o1777)
    os.chmod(dest / "root", 0o700)
    os.chown(dest / "home/app", 1000, 1000)
    shutil.copy2(busybox, dest / "bin/busybox")
    os.chmod(dest / "bin/busybox", 0o755)
    applets = subprocess.run([str(busybox), "--list-full"], capture_output=True, text=True,
                             check=True).stdout.split()
    for applet in applets:
        link = dest / applet
        if applet == "bin/busybox" or link.exists() or link.is_symlink():
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink("/bin/busybox", link)
    (dest / "etc/passwd").write_text(PASSWD)
    (dest / "etc/group").write_text(GROUP)
    (dest / "etc/hostname").write_text("busybox\n")
    (dest / "etc/hosts").write_text("127.0.0.1\tlocalhost\n")
    (dest / "etc/resolv.conf").write_text("")
    (dest / "var/www/index.html").write_text("hello from busybox\n")
    return dest
