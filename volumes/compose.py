"""A service's Compose storage keys -> Engine API fields, as Docker Compose converts them.

Offered to the compose front (which talks to any engine through the Docker API): given a
service and the project in canonical form (the ``docker compose config --format json``
shape), returns ``HostConfig.Binds``, ``HostConfig.Mounts``, ``HostConfig.Tmpfs`` and the
secret/config files to write into the container. It mirrors Docker Compose's
``buildContainerVolumes`` (pkg/compose/create.go): binds that need no Mounts-only option
use the ``Binds`` strings (so that a missing host path is created, moby#43483), binds with
``create_host_path: false``, propagation or ``recursive`` and every volume and tmpfs use
``Mounts``; ``file:`` secrets and configs are read-only bind mounts;
``environment:``/``content:`` ones become :class:`SecretFile` objects.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Mapping

from pystack.errors import UserError
from pystack.volumes.secrets import SecretFile, content_from_definition, default_target


@dataclass
class ServiceStorage:
    """What a container-create body needs for one service's storage."""

    binds: list[str] = field(default_factory=list)
    mounts: list[dict[str, Any]] = field(default_factory=list)
    tmpfs: dict[str, str] = field(default_factory=dict)
    volumes_from: list[str] = field(default_factory=list)  # "service[:mode]" / "container:NAME[:mode]"
    files: list[SecretFile] = field(default_factory=list)  # environment:/content: secrets and configs


def _bind_requires_mount_api(bind: Mapping[str, Any] | None) -> bool:
    if bind is None:
        return False
    return (not bind.get("create_host_path", False)) or bool(bind.get("propagation")) or bool(bind.get("recursive"))


def _bind_string(source: str, v: Mapping[str, Any]) -> str:
    opts = ["ro" if v.get("read_only") else "rw"]
    bind = v.get("bind") or {}
    if bind.get("selinux"):
        opts.append(bind["selinux"])
    if bind.get("propagation"):
        opts.append(bind["propagation"])
    if (v.get("volume") or {}).get("nocopy"):
        opts.append("nocopy")
    return f"{source}:{v['target']}:{','.join(opts)}"


def _int(value: Any, what: str, base: int = 10) -> int:
    try:
        return int(value, base) if isinstance(value, str) else int(value)
    except (TypeError, ValueError):
        raise UserError(f"{what}: invalid number {value!r}") from None


def _mode(value: Any, what: str) -> int:
    """compose-go prints file modes as octal strings ("0400") and tmpfs modes as ints (values)."""
    return _int(value, what, 8) if isinstance(value, str) else _int(value, what)


def service_storage(service_name: str, service: Mapping[str, Any], project: Mapping[str, Any],
                    environ: Mapping[str, str] | None = None) -> ServiceStorage:
    """Convert one service (canonical form) of ``project`` (canonical form)."""
    environ = os.environ if environ is None else environ
    out = ServiceStorage()
    top_volumes = project.get("volumes") or {}
    for i, v in enumerate(service.get("volumes") or []):
        kind = v.get("type")
        where = f"services.{service_name}.volumes[{i}]"
        if kind == "bind":
            if not _bind_requires_mount_api(v.get("bind")):
                out.binds.append(_bind_string(v["source"], v))
                continue
            bind = v.get("bind") or {}
            m = {"Type": "bind", "Source": v["source"], "Target": v["target"], "ReadOnly": bool(v.get("read_only")),
                 "BindOptions": {"CreateMountpoint": bool(bind.get("create_host_path", False))}}
            if bind.get("propagation"):
                m["BindOptions"]["Propagation"] = bind["propagation"]
            if bind.get("recursive") == "disabled":
                m["BindOptions"]["NonRecursive"] = True
            out.mounts.append(m)
        elif kind == "volume":
            # Docker Compose always uses the Mounts API for volumes (buildMount); Binds are only
            # for binds that need no Mounts-only option
            source = v.get("source") or ""
            if source and source not in top_volumes:
                raise UserError(f"{where}: service \"{service_name}\" refers to undefined volume {source}: "
                                f"invalid compose project")
            m = {"Type": "volume", "Source": (top_volumes[source].get("name") or source) if source else "",
                 "Target": v["target"], "ReadOnly": bool(v.get("read_only"))}
            if v.get("consistency"):
                m["Consistency"] = v["consistency"]
            if v.get("volume") is not None:
                vol = v["volume"]
                m["VolumeOptions"] = {k: val for k, val in (("NoCopy", bool(vol.get("nocopy"))),
                                                             ("Subpath", vol.get("subpath") or "")) if val}
            out.mounts.append(m)
        elif kind == "tmpfs":
            t = v.get("tmpfs") or {}
            opts = {}
            if t.get("size"):
                opts["SizeBytes"] = _int(t["size"], f"{where}.tmpfs.size")
            if t.get("mode"):
                # an int is the value, as Docker Compose passes it (write 0o1777 in YAML: 1777 is decimal)
                opts["Mode"] = _mode(t["mode"], f"{where}.tmpfs.mode")
            out.mounts.append({"Type": "tmpfs", "Target": v["target"], "ReadOnly": bool(v.get("read_only")),
                               **({"TmpfsOptions": opts} if opts else {})})
        else:
            raise UserError(f"{where}: volume type {kind!r} is not supported by pystack (bind, volume, tmpfs)")
    tmpfs = service.get("tmpfs") or []
    for entry in [tmpfs] if isinstance(tmpfs, str) else tmpfs:
        path, _, opts = entry.partition(":")
        out.tmpfs[path] = opts
    out.volumes_from = list(service.get("volumes_from") or [])
    for kind, key in (("secret", "secrets"), ("config", "configs")):
        defs = project.get(key) or {}
        for i, ref in enumerate(service.get(key) or []):
            ref = {"source": ref} if isinstance(ref, str) else ref
            src = ref["source"]
            where = f"services.{service_name}.{key}[{i}]"
            if src not in defs:
                raise UserError(f"{where}: service \"{service_name}\" refers to undefined {kind} {src}: "
                                f"invalid compose project")
            definition = defs[src]
            target = default_target(kind, src, ref.get("target"))
            if definition.get("external"):
                raise UserError(f"{where}: external {kind}s need Swarm; pystack supports file, environment"
                                + (" and content" if kind == "config" else ""))
            content = content_from_definition(kind, src, definition, environ)
            if content is None:
                out.mounts.append({"Type": "bind", "Source": definition["file"], "Target": target, "ReadOnly": True,
                                   "BindOptions": {"CreateMountpoint": False}})
                continue
            if service.get("read_only"):
                raise UserError(f"{where}: {kind} {src} from {'environment' if definition.get('environment') else 'content'}"
                                f" cannot be written into a read_only service")
            out.files.append(SecretFile(src, kind, target, content,
                                        uid=_int(ref.get("uid", 0), f"{where}.uid"),
                                        gid=_int(ref.get("gid", 0), f"{where}.gid"),
                                        mode=_mode(ref.get("mode", "0444"), f"{where}.mode")))
    return out


def volume_create_bodies(project: Mapping[str, Any], compose_version: str = "2.40.3") -> list[dict[str, Any]]:
    """``POST /volumes/create`` bodies for the project's own (non-external) volumes, labelled as
    Docker Compose labels them, so that ``down -v`` and ``config --volumes`` find them."""
    out = []
    project_name = project.get("name", "")
    for key, vol in (project.get("volumes") or {}).items():
        vol = vol or {}
        if vol.get("external"):
            continue
        labels = dict(vol.get("labels") or {})
        labels.update({"com.docker.compose.project": project_name, "com.docker.compose.volume": key,
                       "com.docker.compose.version": compose_version})
        out.append({"Name": vol.get("name") or f"{project_name}_{key}", "Driver": vol.get("driver") or "local",
                    "DriverOpts": dict(vol.get("driver_opts") or {}), "Labels": labels})
    return out


def check_external_volumes(project: Mapping[str, Any], exists) -> None:
    """Docker Compose's error when an ``external`` volume is missing (``exists(name) -> bool``)."""
    for key, vol in (project.get("volumes") or {}).items():
        vol = vol or {}
        if vol.get("external"):
            name = vol.get("name") or key
            if not exists(name):
                raise UserError(f'external volume "{name}" not found')
