"""A container's storage from create to remove, in two calls, for the engine.

``prepare`` takes what a container-create request and its image carry (``HostConfig``,
the image config, the secret/config files to place) and returns everything the OCI
bundle needs; ``release`` undoes it when the container is removed. In between, the
engine keeps ``ContainerStorage.points`` in its container record (``docker inspect``'s
``Mounts``, and what another container's ``VolumesFrom`` needs)::

    st = prepare(cid, body["HostConfig"], image.config["config"], store, secret_files,
                 files=[...], image_rootfs=layer_dirs, mounts_of=lambda name: record(name).mounts)
    spec["mounts"] += st.oci_mounts
    try:
        runtime.create(cid, bundle, ...)
    finally:
        st.close()                     # staging pins no longer needed
    ...
    release(cid, store, secret_files, remove_anonymous=v)   # DELETE /containers/{id}?v=1
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from pystack.volumes.copyup import ImageRootfs
from pystack.volumes.planner import MountPlan, parse_volumes_from, plan_mounts
from pystack.volumes.secrets import SecretFile, SecretFiles
from pystack.volumes.store import VolumeStore


@dataclass
class ContainerStorage:
    """The planned mounts plus the secret/config file mounts of one container."""

    plan: MountPlan
    secret_mounts: list[dict] = field(default_factory=list)

    @property
    def oci_mounts(self) -> list[dict]:
        """Everything to append to the spec's ``mounts``, parents before children (a secret
        under a volume's path is mounted after the volume)."""
        both = [*self.plan, *self.secret_mounts]
        return sorted(both, key=lambda m: m["destination"].rstrip("/").count("/"))

    @property
    def points(self) -> list[dict[str, Any]]:
        return self.plan.points

    def close(self) -> None:
        self.plan.close()

    def __enter__(self) -> "ContainerStorage":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def prepare(container_id: str, host_config: Mapping[str, Any] | None, image_config: Mapping[str, Any] | None,
            store: VolumeStore, secret_files: SecretFiles | None = None, files: Sequence[SecretFile] = (),
            image_rootfs: ImageRootfs = None, mounts_of: Callable[[str], list[dict]] | None = None, *,
            pin: bool = True, pin_root: Path | None = None) -> ContainerStorage:
    """Plan a container's storage from Engine API shapes; nothing is left behind on error.

    ``mounts_of(container)`` returns another container's recorded ``points`` (for
    ``HostConfig.VolumesFrom``); it raises the engine's NotFound for an unknown container.
    """
    hc = host_config or {}
    volumes_from = []
    for spec in hc.get("VolumesFrom") or []:
        name, mode = parse_volumes_from(spec)
        if mounts_of is None:
            from pystack.errors import UserError

            raise UserError(f"VolumesFrom {spec!r}: the engine gave no way to find container {name}")
        volumes_from.append((mounts_of(name), mode))
    image_volumes = list(((image_config or {}).get("Volumes") or {}).keys())
    plan = plan_mounts(container_id, binds=hc.get("Binds"), mounts=hc.get("Mounts"), tmpfs=hc.get("Tmpfs"),
                       volumes_from=volumes_from, image_volumes=image_volumes, store=store,
                       image_rootfs=image_rootfs, pin=pin, pin_root=pin_root)
    storage = ContainerStorage(plan)
    if files:
        try:
            storage.secret_mounts = (secret_files or SecretFiles()).materialize(container_id, list(files))
        except BaseException:
            plan.close()
            for name in plan.new_users:
                store.release(name, container_id)
            for name in plan.created_volumes:
                store.remove(name, force=True)
            raise
    return storage


def release(container_id: str, store: VolumeStore, secret_files: SecretFiles | None = None,
            remove_anonymous: bool = False) -> list[str]:
    """The container is removed: forget its volume uses (removing its anonymous volumes with
    ``remove_anonymous``, i.e. ``rm -v``) and delete its secret/config files."""
    used = store.release_container(container_id, remove_anonymous=remove_anonymous)
    (secret_files or SecretFiles()).remove(container_id)
    return used
