"""A canonical Compose service -> the Engine API container-create body, as Docker Compose builds it.

Names: container ``<project>-<service>-<n>``, networks and volumes by their resolved
``name`` (``<project>_<key>`` unless set), labels ``com.docker.compose.*`` so that every
later command finds the container again by label. The body has the three parts of
``POST /containers/create``: the container Config at the top, ``HostConfig`` and
``NetworkingConfig`` (one network at create time; the others are connected before start,
as API 1.41 allows only one endpoint in the create call).
"""
from __future__ import annotations

import re
TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs every command ~4 ms to import: annotations only
    from typing import Any

from pystack.compose import labels as L
from pystack.compose.durations import nanos, seconds
from pystack.errors import UserError
from pystack.stack.fieldrecord import FieldRecord


class ContainerSpec(FieldRecord):
    """What the reconciler needs to create one container and attach it to its networks."""

    _fields = ("name", "body", "extra_networks", "files")

    def __init__(self, name: str, body: dict[str, Any],
                 extra_networks: list[tuple[str, dict[str, Any]]] | None = None,
                 files: list[tuple[str, bytes, int, int, int]] | None = None) -> None:
        self.name = name
        self.body = body
        self.extra_networks = extra_networks if extra_networks is not None else []
        # (absolute path, content, mode, uid, gid): secrets/configs written in before start
        self.files = files if files is not None else []


def _mode(value: Any, default: int) -> int:
    if value is None or value == "":
        return default
    if isinstance(value, int):
        return value
    return int(str(value), 8)


def secret_and_config_files(project: Any, svc: dict) -> tuple[list[dict], list[tuple[str, bytes, int, int, int]]]:
    """Compose's non-Swarm secrets and configs: ``file:`` ones as read-only bind mounts,
    ``environment:``/``content:`` ones as files copied into the container before it starts."""
    import os

    binds: list[dict] = []
    files: list[tuple[str, bytes, int, int, int]] = []
    for kind, default_dir in (("secrets", "/run/secrets/"), ("configs", "/")):
        top = project.config.get(kind) or {}
        for ref in svc.get(kind) or []:
            source = ref["source"]
            spec = top.get(source)
            if spec is None:
                raise UserError(f"{kind[:-1]} {source!r} is not defined at the top level")
            target = ref.get("target") or default_dir + source
            if not target.startswith("/"):
                target = default_dir + target
            if spec.get("external"):
                raise UserError(f"{kind[:-1]} {source!r}: external {kind} need Swarm; not supported")
            if spec.get("file"):
                binds.append({"Type": "bind", "Source": spec["file"], "Target": target, "ReadOnly": True})
                continue
            if "content" in spec:
                data = str(spec["content"]).encode()
            elif spec.get("environment"):
                env = getattr(project, "environment", None) or os.environ
                value = env.get(spec["environment"], os.environ.get(spec["environment"]))
                if value is None:
                    raise UserError(f"{kind[:-1]} {source!r}: environment variable "
                                    f"{spec['environment']} is not set")
                data = value.encode()
            else:
                raise UserError(f"{kind[:-1]} {source!r} has no file, environment or content")
            files.append((target, data, _mode(ref.get("mode"), 0o444),
                          int(ref.get("uid") or 0), int(ref.get("gid") or 0)))
    return binds, files


def container_name(project: str, service: str, number: int, svc: dict | None = None) -> str:
    if svc and svc.get("container_name"):
        return svc["container_name"]
    return f"{project}-{service}-{number}"


def _size(value: Any) -> int:
    """Bytes of ``"64m"``, ``"67108864"`` or an int (Compose has normalised most already)."""
    if value is None or value == "":
        return 0
    if isinstance(value, (int, float)):
        return int(value)
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgtb]?)b?\s*", str(value).lower())
    if not m:
        raise UserError(f"invalid size: {value!r}")
    mult = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}[m.group(2)]
    return int(float(m.group(1)) * mult)


def restart_policy(svc: dict) -> dict[str, Any]:
    """``restart`` (or ``deploy.restart_policy``) as the engine's RestartPolicy."""
    rp = (svc.get("deploy") or {}).get("restart_policy")
    if rp and not svc.get("restart"):
        cond = {"none": "no", "on-failure": "on-failure", "any": "always"}.get(rp.get("condition", "any"), "always")
        return {"Name": cond, "MaximumRetryCount": int(rp.get("max_attempts") or 0)}
    value = svc.get("restart") or "no"
    name, _, count = value.partition(":")
    return {"Name": "" if name == "no" else name, "MaximumRetryCount": int(count or 0)}


def healthcheck(hc: dict | None) -> dict[str, Any] | None:
    if not hc:
        return None
    if hc.get("disable"):
        return {"Test": ["NONE"]}
    test = hc.get("test")
    if isinstance(test, str):
        test = ["CMD-SHELL", test]
    out: dict[str, Any] = {"Test": test} if test else {}
    for key, api in (("interval", "Interval"), ("timeout", "Timeout"),
                     ("start_period", "StartPeriod"), ("start_interval", "StartInterval")):
        if hc.get(key):
            out[api] = nanos(hc[key])
    if hc.get("retries") is not None:
        out["Retries"] = int(hc["retries"])
    return out


def ports(svc: dict, publish: bool = True) -> tuple[dict[str, dict], dict[str, list[dict]]]:
    """(ExposedPorts, PortBindings) from ``ports`` and ``expose``."""
    exposed: dict[str, dict] = {}
    bindings: dict[str, list[dict]] = {}
    for p in svc.get("ports") or []:
        key = f"{p['target']}/{p.get('protocol') or 'tcp'}"
        exposed[key] = {}
        if publish:
            bindings.setdefault(key, []).append(
                {"HostIp": p.get("host_ip") or "", "HostPort": str(p.get("published") or "")})
    for e in svc.get("expose") or []:
        port, _, proto = str(e).partition("/")
        exposed.setdefault(f"{port}/{proto or 'tcp'}", {})
    return exposed, bindings


def _volume_name(project: dict, key: str) -> str:
    spec = (project.get("volumes") or {}).get(key)
    if spec is None:
        return key  # not declared at top level: the engine treats it as a named volume as-is
    return spec.get("name") or f"{project['name']}_{key}"


def network_name(project: dict, key: str) -> str:
    spec = (project.get("networks") or {}).get(key) or {}
    return spec.get("name") or f"{project['name']}_{key}"


def mounts(project: dict, svc: dict, containers: dict[str, str]) -> tuple[list[str], list[dict], dict[str, str]]:
    """(Binds, Mounts, Tmpfs) for the service's volumes and tmpfs."""
    binds: list[str] = []
    mount_list: list[dict] = []
    tmpfs: dict[str, str] = {}
    for v in svc.get("volumes") or []:
        kind = v.get("type")
        ro = bool(v.get("read_only"))
        if kind == "bind":
            opts = v.get("bind") or {}
            if opts.get("create_host_path", True) and not opts.get("propagation"):
                binds.append(f"{v['source']}:{v['target']}:{'ro' if ro else 'rw'}")
            else:
                m = {"Type": "bind", "Source": v["source"], "Target": v["target"], "ReadOnly": ro}
                if opts.get("propagation"):
                    m["BindOptions"] = {"Propagation": opts["propagation"]}
                mount_list.append(m)
        elif kind == "volume":
            m = {"Type": "volume", "Target": v["target"], "ReadOnly": ro}
            if v.get("source"):
                m["Source"] = _volume_name(project, v["source"])
            vopts = v.get("volume") or {}
            if vopts.get("nocopy") or vopts.get("subpath"):
                m["VolumeOptions"] = {"NoCopy": bool(vopts.get("nocopy"))}
                if vopts.get("subpath"):
                    m["VolumeOptions"]["Subpath"] = vopts["subpath"]
            mount_list.append(m)
        elif kind == "tmpfs":
            opts = v.get("tmpfs") or {}
            m = {"Type": "tmpfs", "Target": v["target"], "ReadOnly": ro}
            t: dict[str, Any] = {}
            if opts.get("size"):
                t["SizeBytes"] = _size(opts["size"])
            if opts.get("mode"):
                t["Mode"] = int(str(opts["mode"]), 8) if isinstance(opts["mode"], str) else int(opts["mode"])
            if t:
                m["TmpfsOptions"] = t
            mount_list.append(m)
        else:
            raise UserError(f"volume type {kind!r} is not supported (target {v.get('target')})")
    for entry in svc.get("tmpfs") or []:
        path, _, opts = str(entry).partition(":")
        tmpfs[path] = opts
    return binds, mount_list, tmpfs


def _namespace_mode(value: str | None, containers: dict[str, str]) -> str:
    if not value:
        return ""
    if value.startswith("service:"):
        target = value.split(":", 1)[1]
        if target not in containers:
            raise UserError(f"service {target!r} has no container to share a namespace with")
        return "container:" + containers[target]
    return value


def sorted_networks(svc: dict) -> list[tuple[str, dict]]:
    """The service's networks, highest ``priority`` first, then by key (Compose's order)."""
    nets = svc.get("networks")
    if nets is None:
        nets = {"default": None} if not svc.get("network_mode") else {}
    items = [(k, v or {}) for k, v in nets.items()]
    return sorted(items, key=lambda kv: (-(kv[1].get("priority") or 0), kv[0]))


def _endpoint(name: str, service: str, cfg: dict, use_aliases: bool) -> dict[str, Any]:
    aliases = [name]
    if use_aliases:
        aliases += [service] + list(cfg.get("aliases") or [])
    ep: dict[str, Any] = {"Aliases": aliases}
    ipam = {}
    if cfg.get("ipv4_address"):
        ipam["IPv4Address"] = cfg["ipv4_address"]
    if cfg.get("ipv6_address"):
        ipam["IPv6Address"] = cfg["ipv6_address"]
    if ipam:
        ep["IPAMConfig"] = ipam
    if cfg.get("mac_address"):
        ep["MacAddress"] = cfg["mac_address"]
    return ep


def compose_labels(project: Any, service: str, number: int | None, config_hash: str,
                   image_id: str, svc: dict, oneoff: bool = False, slug: str | None = None) -> dict[str, str]:
    out = dict(svc.get("labels") or {})
    deps = svc.get("depends_on") or {}
    out.update({
        L.PROJECT: project.name,
        L.SERVICE: service,
        L.ONEOFF: "True" if oneoff else "False",
        L.CONFIG_HASH: config_hash,
        L.IMAGE: image_id,
        L.DEPENDS_ON: ",".join(f"{d}:{c.get('condition', 'service_started')}:{str(bool(c.get('restart'))).lower()}"
                               for d, c in deps.items()),
        L.WORKING_DIR: project.working_dir,
        L.CONFIG_FILES: ",".join(project.config_files),
        L.VERSION: L.COMPOSE_VERSION,
    })
    if number is not None:
        out[L.NUMBER] = str(number)
    if slug:
        out[L.SLUG] = slug
    if project.env_files:
        out[L.ENV_FILE] = ",".join(project.env_files)
    return out


def build_spec(project: Any, service: str, svc: dict, *, name: str, labels: dict[str, str],
               containers: dict[str, str], image: str, use_aliases: bool = True,
               publish: bool = True, overrides: dict[str, Any] | None = None) -> ContainerSpec:
    """The create body for one container of ``service``.

    ``containers`` maps service names to a container id, for ``service:x`` references.
    ``overrides`` (from ``run``) replaces Cmd/Entrypoint/Env/User/WorkingDir/Tty/...
    """
    cfg = project.config
    exposed, bindings = ports(svc, publish)
    binds, mount_list, tmpfs = mounts(cfg, svc, containers)
    secret_binds, secret_files = secret_and_config_files(project, svc)
    mount_list += secret_binds
    env = [f"{k}={v}" for k, v in (svc.get("environment") or {}).items() if v is not None]
    deploy = svc.get("deploy") or {}
    limits = (deploy.get("resources") or {}).get("limits") or {}
    reservations = (deploy.get("resources") or {}).get("reservations") or {}
    cpus = svc.get("cpus") or limits.get("cpus")
    extra_hosts = []
    for h in svc.get("extra_hosts") or []:
        host, sep, ip = str(h).partition("=")
        extra_hosts.append(f"{host}:{ip}" if sep else str(h))
    if isinstance(svc.get("extra_hosts"), dict):
        extra_hosts = [f"{h}:{ip}" for h, ips in svc["extra_hosts"].items()
                       for ip in (ips if isinstance(ips, list) else [ips])]
    ulimits = []
    for uname, val in (svc.get("ulimits") or {}).items():
        if isinstance(val, dict):
            ulimits.append({"Name": uname, "Soft": int(val.get("soft", 0)), "Hard": int(val.get("hard", 0))})
        else:
            ulimits.append({"Name": uname, "Soft": int(val), "Hard": int(val)})
    logging = svc.get("logging") or {}
    host: dict[str, Any] = {
        "Binds": binds or None,
        "Mounts": mount_list or None,
        "Tmpfs": tmpfs or None,
        "PortBindings": bindings,
        "RestartPolicy": restart_policy(svc),
        "NetworkMode": "",
        "Privileged": bool(svc.get("privileged")),
        "ReadonlyRootfs": bool(svc.get("read_only")),
        "CapAdd": svc.get("cap_add"),
        "CapDrop": svc.get("cap_drop"),
        "SecurityOpt": svc.get("security_opt"),
        "ExtraHosts": extra_hosts or None,
        "Dns": [svc["dns"]] if isinstance(svc.get("dns"), str) else svc.get("dns"),
        "DnsSearch": svc.get("dns_search"),
        "DnsOptions": svc.get("dns_opt"),
        "GroupAdd": [str(g) for g in svc.get("group_add") or []] or None,
        "Init": svc.get("init"),
        "IpcMode": _namespace_mode(svc.get("ipc"), containers),
        "PidMode": _namespace_mode(svc.get("pid"), containers),
        "UTSMode": svc.get("uts") or "",
        "CgroupParent": svc.get("cgroup_parent") or "",
        "Sysctls": {k: str(v) for k, v in (svc.get("sysctls") or {}).items()} or None,
        "Ulimits": ulimits or None,
        "Memory": _size(svc.get("mem_limit") or limits.get("memory")),
        "MemoryReservation": _size(svc.get("mem_reservation") or reservations.get("memory")),
        "MemorySwap": -1 if svc.get("memswap_limit") in (-1, "-1") else _size(svc.get("memswap_limit")),
        "NanoCpus": int(float(cpus) * 1e9) if cpus else 0,
        "CpuShares": int(svc.get("cpu_shares") or 0),
        "CpusetCpus": svc.get("cpuset") or "",
        "PidsLimit": svc.get("pids_limit") or limits.get("pids") or None,
        "ShmSize": _size(svc.get("shm_size")) or None,
        "OomScoreAdj": int(svc.get("oom_score_adj") or 0),
        "Devices": [{"PathOnHost": d["source"], "PathInContainer": d.get("target") or d["source"],
                     "CgroupPermissions": d.get("permissions") or "rwm"}
                    for d in svc.get("devices") or [] if isinstance(d, dict)] or None,
        "VolumesFrom": [v.replace("service:", "") for v in _volumes_from(svc, containers)] or None,
        "LogConfig": {"Type": logging.get("driver") or "", "Config": logging.get("options") or {}},
    }
    if svc.get("runtime"):
        host["Runtime"] = svc["runtime"]
    body: dict[str, Any] = {
        "Image": image,
        "Cmd": svc.get("command"),
        "Entrypoint": svc.get("entrypoint"),
        "Env": env,
        "User": str(svc.get("user") or ""),
        "WorkingDir": svc.get("working_dir") or "",
        "Hostname": svc.get("hostname") or "",
        "Domainname": svc.get("domainname") or "",
        "Tty": bool(svc.get("tty")),
        "OpenStdin": bool(svc.get("stdin_open")),
        "AttachStdin": False,
        "AttachStdout": True,
        "AttachStderr": True,
        "ExposedPorts": exposed or None,
        "Labels": labels,
        "StopSignal": svc.get("stop_signal") or None,
        "StopTimeout": int(seconds(svc.get("stop_grace_period"))) if svc.get("stop_grace_period") else None,
        "Healthcheck": healthcheck(svc.get("healthcheck")),
        "HostConfig": host,
    }
    if svc.get("mac_address"):
        body["MacAddress"] = svc["mac_address"]
    if svc.get("platform"):
        body["Platform"] = svc["platform"]
    extra: list[tuple[str, dict]] = []
    if svc.get("network_mode"):
        host["NetworkMode"] = _namespace_mode(svc["network_mode"], containers)
        body["NetworkingConfig"] = {"EndpointsConfig": {}}
    else:
        nets = sorted_networks(svc)
        first = True
        for key, ncfg in nets:
            real = network_name(cfg, key)
            ep = _endpoint(name, service, ncfg, use_aliases)
            if first:
                host["NetworkMode"] = real
                body["NetworkingConfig"] = {"EndpointsConfig": {real: ep}}
                first = False
            else:
                extra.append((real, ep))
    if overrides:
        overrides = dict(overrides)
        host_over = dict(overrides.pop("HostConfig", {}))
        if host_over.get("Binds"):  # run -v adds to the service's mounts
            host_over["Binds"] = (host.get("Binds") or []) + host_over["Binds"]
        body.update(overrides)
        host.update(host_over)
    body["HostConfig"] = {k: v for k, v in host.items() if v is not None}
    return ContainerSpec(name=name, body={k: v for k, v in body.items() if v is not None},
                         extra_networks=extra, files=secret_files)


def _volumes_from(svc: dict, containers: dict[str, str]) -> list[str]:
    out = []
    for ref in svc.get("volumes_from") or []:
        name, _, mode = ref.partition(":")
        if name == "container":
            out.append(ref.split(":", 1)[1])
        elif name in containers:
            out.append(containers[name] + (":" + mode if mode else ""))
        else:
            raise UserError(f"volumes_from: service {name!r} has no container")
    return out
