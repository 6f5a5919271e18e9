"""Docker's copy-up: a new, empty volume mounted over a directory of the image gets that
directory's content (files, owners, modes) before the container starts.

Only when the volume is empty (so data written later is never overwritten), only for
volumes (never binds), and never with ``nocopy``. The image is given either as one
directory (a rootfs) or as its unpacked layer directories, topmost first (what the image
store's ``prepare`` returns); layers are then merged by the kernel through a short-lived
read-only overlay, so whiteouts and opaque directories mean what they mean at run time.
The path inside the image is resolved with ``RESOLVE_IN_ROOT``: an image whose ``/data``
is a symlink to ``/etc`` copies the image's own ``/etc``, never the host's.
"""
from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from pathlib import Path
from typing import Iterator, Sequence

from pystack.errors import UserError
from pystack.volumes import _sys
from pystack.volumes.copytree import CopyStats, copy_tree, dir_is_empty
from pystack.volumes.safepath import open_in_root

ImageRootfs = Path | str | Sequence[Path | str] | None


@contextlib.contextmanager
def image_view(image_rootfs: ImageRootfs, scratch: Path) -> Iterator[str | None]:
    """A directory showing the image's merged content (an overlay for several layers)."""
    if image_rootfs is None:
        yield None
        return
    if isinstance(image_rootfs, (str, Path)):
        yield str(image_rootfs)
        return
    layers = [str(p) for p in image_rootfs]
    if not layers:
        yield None
        return
    if len(layers) == 1:
        yield layers[0]
        return
    for layer in layers:
        if ":" in layer or "," in layer:
            raise UserError(f"image layer path {layer!r} cannot be used in an overlay (':' or ',')")
    scratch.mkdir(parents=True, exist_ok=True)
    mnt = scratch / f"copyup-{secrets.token_hex(6)}"
    mnt.mkdir(mode=0o700)
    try:
        _sys.mount("overlay", str(mnt), "overlay", _sys.MS_RDONLY | _sys.MS_NOSUID | _sys.MS_NODEV,
                   "lowerdir=" + ":".join(layers))
        try:
            yield str(mnt)
        finally:
            _sys.umount(str(mnt))
    finally:
        mnt.rmdir()


def copy_up(image_rootfs: ImageRootfs, target: str, dest: str, scratch: Path) -> CopyStats | None:
    """Fill the empty directory ``dest`` with the image's content at ``target``.

    Returns the copy's stats, or None when nothing was copied (``dest`` not empty, no image,
    or nothing — or no directory — at ``target`` in the image).
    """
    if not dir_is_empty(dest):
        return None
    with image_view(image_rootfs, scratch) as root:
        if root is None:
            return None
        root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            try:
                src_fd = open_in_root(root_fd, target, what=f"image path {target}")
            except OSError as exc:
                if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                    return None
                raise
        finally:
            os.close(root_fd)
        try:
            if not stat.S_ISDIR(os.fstat(src_fd).st_mode):
                return None
            return copy_tree(f"/proc/self/fd/{src_fd}", dest)
        finally:
            os.close(src_fd)
