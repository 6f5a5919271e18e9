"""Container specs: a /containers/create body -> a checked, image-merged Config and an OCI
runtime spec.  Pure functions (no engine state); the container manager calls them.

API (docs/contracts.md, engine section):

    check_create_body(body) -> None
        api.BadRequest naming the field ("HostConfig.Runtime: not supported by pystack")
        for a field pystack does not implement when it has a non-default value, and for
        bad values (Docker's wording where Docker has one).  Fields Docker does not know
        are ignored, as dockerd ignores them.
    merge_image_config(config, image_config) -> dict
        moby's ``merge`` + ``mergeAndVerifyConfig``: the Config ``docker inspect`` shows.
    build_spec(container_id, config, host_config, *, mounts, netns, files, cgroup_parent,
               rootfs=None) -> dict
        the OCI runtime spec (config.json) for the merged Config and HostConfig.
    (The body checks live in specgen_check.py.)
        ``rootfs``: where user/group names are looked up (/etc/passwd, /etc/group): a
        directory, or a list of layer directories topmost first (the container's upper
        dir, then the image's lowerdirs); the first layer that has the file wins.
"""
from __future__ import annotations

import copy
import json
import os
from typing import Any, Iterable

from pystack.engine.api import BadRequest
from pystack.engine.specgen_check import (  # noqa: F401 - check_create_body/parse_signal: public API
    _bad, _host_device_numbers, _list, _parse_device_rule, _parse_security_opt, _read, _strslice,
    check_create_body, parse_signal)
from pystack.errors import UserError

__all__ = ["check_create_body", "merge_image_config", "build_spec", "parse_signal",
           "STOP_SIGNAL_ANNOTATION", "INIT_ANNOTATION"]

# --------------------------------------------------------------------------------------
# constants

STOP_SIGNAL_ANNOTATION = "org.opencontainers.image.stopSignal"
INIT_ANNOTATION = "org.pystack.init"

# Config keys in the order `docker inspect` shows them, with dockerd's value when unset
CONFIG_DEFAULTS: dict[str, Any] = {
    "Hostname": "", "Domainname": "", "User": "", "AttachStdin": False, "AttachStdout": False,
    "AttachStderr": False, "Tty": False, "OpenStdin": False, "StdinOnce": False,
    "Env": None, "Cmd": None, "Image": "", "Volumes": None, "WorkingDir": "", "Entrypoint": None,
    "OnBuild": None, "Labels": {},
}
# shown only when set (omitempty in moby's Config)
CONFIG_OPTIONAL = ("ExposedPorts", "Healthcheck", "ArgsEscaped", "NetworkDisabled", "MacAddress",
                   "StopSignal", "StopTimeout", "Shell")


# --------------------------------------------------------------------------------------
# merge_image_config

def merge_image_config(config: dict, image_config: dict | None) -> dict:
    """moby daemon ``merge(userConf, imageConf)`` then ``mergeAndVerifyConfig``'s reset of
    an ``Entrypoint`` of ``[""]``: the Config ``docker inspect`` shows (keys in dockerd's
    order; no ``Hostname`` key unless the body set one: the manager's default).  Raises nothing: "No command specified" is
    the manager's check after the merge."""
    user = copy.deepcopy({k: v for k, v in (config or {}).items() if k not in ("HostConfig", "NetworkingConfig")})
    img = image_config or {}
    for key in ("Cmd", "Entrypoint", "Shell"):
        if key in user:
            user[key] = _strslice(user[key], f"Config.{key}")

    if not user.get("User"):
        user["User"] = img.get("User") or ""
    exposed = dict(user.get("ExposedPorts") or {})
    for port in img.get("ExposedPorts") or {}:
        exposed.setdefault(port, {})
    if exposed:
        user["ExposedPorts"] = exposed
    else:
        user.pop("ExposedPorts", None)
    env = list(user.get("Env") or [])
    if not env:
        env = list(img.get("Env") or [])
    else:
        keys = {e.split("=", 1)[0] for e in env}
        env += [e for e in img.get("Env") or [] if e.split("=", 1)[0] not in keys]
    user["Env"] = env or None
    labels = dict(user.get("Labels") or {})
    for k, v in (img.get("Labels") or {}).items():
        labels.setdefault(k, v)
    user["Labels"] = labels
    if not user.get("Entrypoint"):
        if not user.get("Cmd"):
            user["Cmd"] = copy.deepcopy(img.get("Cmd"))
            if img.get("ArgsEscaped"):
                user["ArgsEscaped"] = True
        if user.get("Entrypoint") is None:
            user["Entrypoint"] = copy.deepcopy(img.get("Entrypoint"))
    ihc = img.get("Healthcheck")
    if ihc:
        uhc = user.get("Healthcheck")
        if uhc is None:
            user["Healthcheck"] = copy.deepcopy(ihc)
        else:
            uhc = dict(uhc)
            if not uhc.get("Test"):
                uhc["Test"] = copy.deepcopy(ihc.get("Test"))
            for key in ("Interval", "Timeout", "StartPeriod", "StartInterval", "Retries"):
                if not uhc.get(key) and ihc.get(key):
                    uhc[key] = ihc[key]
            user["Healthcheck"] = uhc
    if not user.get("WorkingDir"):
        user["WorkingDir"] = img.get("WorkingDir") or ""
    vols = dict(user.get("Volumes") or {})
    for k, v in (img.get("Volumes") or {}).items():
        vols[k] = v if v is not None else {}
    user["Volumes"] = vols or None
    if not user.get("StopSignal"):
        if img.get("StopSignal"):
            user["StopSignal"] = img["StopSignal"]
        else:
            user.pop("StopSignal", None)
    if not user.get("OnBuild") and img.get("OnBuild"):
        user["OnBuild"] = None   # dockerd does not copy the image's ONBUILD into a container
    if not user.get("Shell"):
        user.pop("Shell", None)
    # mergeAndVerifyConfig: an Entrypoint of [""] means "no entrypoint"
    ep = user.get("Entrypoint")
    if ep is not None and len(ep) == 1 and ep[0] == "":
        user["Entrypoint"] = None
    if user.get("Entrypoint") == []:
        user["Entrypoint"] = None
    if user.get("Cmd") == []:
        user["Cmd"] = None

    out: dict[str, Any] = {}
    for key, default in CONFIG_DEFAULTS.items():
        out[key] = user[key] if user.get(key) is not None else copy.deepcopy(default)
    for key in ("Cmd", "Entrypoint", "Env", "Volumes", "OnBuild"):
        out[key] = user.get(key) if user.get(key) is not None else None
    if not out["Hostname"]:
        del out["Hostname"]      # the manager's default (the short id, or the host's name)
    for key in CONFIG_OPTIONAL:
        if user.get(key) not in (None, "", False, {}, []):
            out[key] = user[key]
    for key, value in user.items():       # anything else the client sent, kept as given
        if key not in out and key not in CONFIG_OPTIONAL:
            out[key] = value
    return out


# --------------------------------------------------------------------------------------
# build_spec

def build_spec(container_id: str, config: dict, host_config: dict | None, *,
               mounts: Iterable[dict] = (), netns: str | None = None,
               files: dict[str, str] | None = None, cgroup_parent: str = "pystack",
               rootfs: str | os.PathLike | list | tuple | None = None) -> dict:
    """The OCI runtime spec for a container (see the module docstring)."""
    try:
        return _build_spec(container_id, config, host_config, mounts=mounts, netns=netns, files=files,
                           cgroup_parent=cgroup_parent, rootfs=rootfs)
    except (TypeError, ValueError, AttributeError, KeyError, OverflowError) as exc:
        # a stored config of a shape no check expected: one clear 400, never a 500
        raise BadRequest(f"invalid container config: {exc}") from None


def _build_spec(container_id: str, config: dict, host_config: dict | None, *,
                mounts: Iterable[dict], netns: str | None, files: dict[str, str] | None,
                cgroup_parent: str, rootfs: Any) -> dict:
    from pystack.runtime.spec import default_spec, make_privileged, validate_spec

    hc = host_config or {}
    cfg = config or {}
    argv = list(cfg.get("Entrypoint") or []) + list(cfg.get("Cmd") or [])
    if not argv:
        raise BadRequest("No command specified")
    tty = bool(cfg.get("Tty"))
    net_mode = hc.get("NetworkMode") or "bridge"
    sec = dict(_parse_security_opt(o) for o in _list(hc, "SecurityOpt", "HostConfig"))

    spec = _default_spec(argv, tty)
    proc = spec["process"]
    linux = spec["linux"]

    # -- process
    hostname = cfg.get("Hostname") or (os.uname().nodename if net_mode == "host" else container_id[:12])
    env: dict[str, str] = {}
    base = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", f"HOSTNAME={hostname}"]
    if tty:
        base.append("TERM=xterm")
    for e in base + list(cfg.get("Env") or []):
        if "=" in e:
            env[e.split("=", 1)[0]] = e
        else:                   # moby ReplaceOrAppendEnvValues: "KEY" alone unsets KEY
            env.pop(e, None)
    proc["env"] = list(env.values())
    proc["cwd"] = cfg.get("WorkingDir") or "/"
    if rootfs is None:
        rootfs = _rootfs_from_record(container_id, files)
    proc["user"] = _resolve_user(cfg.get("User") or "", _list(hc, "GroupAdd", "HostConfig"), rootfs)
    if hc.get("OomScoreAdj"):
        proc["oomScoreAdj"] = int(hc["OomScoreAdj"])
    if hc.get("Ulimits"):
        proc["rlimits"] = [{"type": "RLIMIT_" + u["Name"].upper(), "hard": _rlim(u.get("Hard")),
                            "soft": _rlim(u.get("Soft"))} for u in hc["Ulimits"]]
    if sec.get("no-new-privileges") == "true":
        proc["noNewPrivileges"] = True

    # -- hostname / namespaces
    ns = {n["type"]: n for n in linux["namespaces"]}
    if netns:
        ns["network"] = {"type": "network", "path": netns}
    elif net_mode == "host":
        ns.pop("network", None)
    if (hc.get("UTSMode") or "") == "host":
        ns.pop("uts", None)
    else:
        spec["hostname"] = hostname
        if cfg.get("Domainname"):
            spec["domainname"] = cfg["Domainname"]
    if (hc.get("PidMode") or "") == "host":
        ns.pop("pid", None)
    ipc = hc.get("IpcMode") or "private"
    if ipc == "host":
        ns.pop("ipc", None)
    cgns = hc.get("CgroupnsMode") or ""
    if cgns == "host":
        ns.pop("cgroup", None)
    elif cgns == "private":
        ns["cgroup"] = {"type": "cgroup"}
    order = ("pid", "network", "ipc", "uts", "mount", "cgroup")
    linux["namespaces"] = [ns[t] for t in order if t in ns] + [v for k, v in ns.items() if k not in order]
    if "network" not in ns:   # host network: Docker sets no net.* sysctls
        linux["sysctl"] = {k: v for k, v in linux.get("sysctl", {}).items() if not k.startswith("net.")}
    if hc.get("Sysctls"):
        linux.setdefault("sysctl", {}).update({k: str(v) for k, v in hc["Sysctls"].items()})

    # -- privileges
    if hc.get("Privileged"):
        make_privileged(spec)
        _within_own_bounding_set(proc)
    elif hc.get("CapAdd") or hc.get("CapDrop"):
        from pystack.runtime.caps import tweak
        try:
            caps = tweak(proc["capabilities"]["bounding"], hc.get("CapAdd") or (), hc.get("CapDrop") or ())
        except UserError as exc:
            raise _bad("HostConfig.CapAdd", str(exc).split(": ", 1)[-1]) from None
        proc["capabilities"] = {"bounding": caps[:], "effective": caps[:], "permitted": caps[:]}
    if proc["user"]["uid"] != 0:
        # dockerd: a non-root process gets the bounding set only (setuid would drop the
        # effective and permitted sets anyway)
        proc["capabilities"] = {"bounding": proc["capabilities"]["bounding"]}
    if not hc.get("Privileged"):
        seccomp = sec.get("seccomp", "builtin")
        if seccomp != "unconfined":
            caps = proc["capabilities"]["bounding"]
            from pystack.runtime import seccomp as sc
            try:
                if seccomp == "builtin":
                    section = _default_seccomp(caps)
                elif seccomp.lstrip().startswith("{"):
                    section = sc.docker_to_oci(json.loads(seccomp), caps)
                    sc.validate(section, where="seccomp profile")
                else:
                    raise _bad("HostConfig.SecurityOpt", "seccomp: not a JSON profile")
            except UserError as exc:
                raise _bad("HostConfig.SecurityOpt", str(exc)) from None
            if section is not None:
                linux["seccomp"] = section
        if sec.get("systempaths") == "unconfined":
            linux["maskedPaths"] = []
            linux["readonlyPaths"] = []
        if hc.get("MaskedPaths") is not None:
            linux["maskedPaths"] = list(hc["MaskedPaths"])
        if hc.get("ReadonlyPaths") is not None:
            linux["readonlyPaths"] = list(hc["ReadonlyPaths"])
    if hc.get("ReadonlyRootfs"):
        spec["root"]["readonly"] = True

    # -- devices
    res = linux.setdefault("resources", {})
    rules = res.setdefault("devices", [])
    devices = []
    for i, d in enumerate(_list(hc, "Devices", "HostConfig")):
        typ, major, minor, mode, uid, gid = _host_device_numbers(d["PathOnHost"], f"HostConfig.Devices[{i}]")
        devices.append({"path": d.get("PathInContainer") or d["PathOnHost"], "type": typ, "major": major,
                        "minor": minor, "fileMode": mode, "uid": uid, "gid": gid})
        if not hc.get("Privileged"):
            rules.append({"allow": True, "type": typ, "major": major, "minor": minor,
                          "access": d.get("CgroupPermissions") or "rwm"})
    if devices:
        linux["devices"] = devices
    if not hc.get("Privileged"):
        for i, rule in enumerate(_list(hc, "DeviceCgroupRules", "HostConfig")):
            rules.append(_parse_device_rule(rule, f"HostConfig.DeviceCgroupRules[{i}]"))

    # -- resources
    _resources(res, hc)
    parent = (hc.get("CgroupParent") or cgroup_parent or "pystack").strip("/")
    linux["cgroupsPath"] = f"/{parent}/{container_id}"

    # -- mounts
    ro = bool(hc.get("ReadonlyRootfs"))
    user_mounts: list[dict] = []
    for path, opts in (hc.get("Tmpfs") or {}).items():
        user_mounts.append(_tmpfs_mount(path, opts or ""))
    user_mounts += [copy.deepcopy(m) for m in mounts or ()]
    for dst, src in (files or {}).items():
        user_mounts.append({"destination": dst, "type": "bind", "source": str(src),
                            "options": ["rbind", "ro", "rprivate"] if ro else ["rbind", "rprivate"]})
    shm = int(hc.get("ShmSize") or 0)
    defaults = []
    dests = {m["destination"].rstrip("/") or "/" for m in user_mounts}
    for m in spec["mounts"]:
        d = m["destination"]
        if d in dests or (d.startswith("/dev/") and "/dev" in dests):
            continue
        if d == "/dev/shm":
            if ipc == "none":
                continue
            if ipc == "host":
                m = {"destination": "/dev/shm", "type": "bind", "source": "/dev/shm", "options": ["rbind", "rprivate"]}
            else:   # dockerd writes the size in bytes (64 MiB by default)
                m["options"] = [o for o in m["options"] if not o.startswith("size=")] + [f"size={shm or 67108864}"]
        if d == "/dev/mqueue" and ipc == "host":
            m = {"destination": "/dev/mqueue", "type": "bind", "source": "/dev/mqueue", "options": ["rbind", "rprivate"]}
        defaults.append(m)
    spec["mounts"] = defaults + _sort_mounts(user_mounts)

    # -- annotations
    ann = dict(hc.get("Annotations") or {})
    if hc.get("Init"):
        ann[INIT_ANNOTATION] = "true"
    if cfg.get("StopSignal"):
        ann[STOP_SIGNAL_ANNOTATION] = str(cfg["StopSignal"])
    spec["annotations"] = ann

    section = linux.get("seccomp")
    shared = section is not None and is_shared_seccomp(section)
    if shared:  # validated once, when it was made: not again at every start
        del linux["seccomp"]
    try:
        validate_spec(spec)
    except UserError as exc:
        raise BadRequest(f"invalid container spec: {exc}") from None
    finally:
        if shared:
            linux["seccomp"] = section
    return spec


_DEFAULT_SPEC_TEXT: dict[bool, str] = {}


def _default_spec(argv: list, tty: bool) -> dict:
    """``runtime.spec.default_spec(argv, terminal=tty, seccomp=False)``, its template
    made once per process (it deep-copies tables, globs /sys and stats /proc each
    time) and copied through JSON (a third of ``copy.deepcopy``'s time)."""
    text = _DEFAULT_SPEC_TEXT.get(tty)
    if text is None:
        from pystack.runtime.spec import default_spec
        text = _DEFAULT_SPEC_TEXT[tty] = json.dumps(default_spec(["sh"], terminal=tty, seccomp=False))
    spec = json.loads(text)
    spec["process"]["args"] = list(argv)
    return spec


def _within_own_bounding_set(proc: dict) -> None:
    """Privileged = every capability the engine itself holds (an engine run in a
    restricted sandbox would otherwise fail capset at every privileged start)."""
    from pystack.runtime.caps import from_mask, read_status
    try:
        own = set(from_mask(read_status()["CapBnd"]))
    except (OSError, KeyError, ValueError):
        return
    caps = proc["capabilities"]
    for key in list(caps):
        caps[key] = [c for c in caps[key] if c in own]


def _sort_mounts(mounts: list[dict]) -> list[dict]:
    """Docker's sortMounts: parents before children (stable by path depth)."""
    return sorted(mounts, key=lambda m: len([p for p in m["destination"].split("/") if p]))


def _tmpfs_mount(path: str, opts: str) -> dict:
    """Docker's --tmpfs: noexec,nosuid,nodev unless the options say exec/suid/dev."""
    flags = {"noexec": True, "nosuid": True, "nodev": True}
    extra: list[str] = []
    for o in [o.strip() for o in opts.split(",") if o.strip()]:
        if o in ("exec", "suid", "dev"):
            flags["no" + o] = False
        elif o in flags:
            flags[o] = True
        else:
            extra.append(o)
    return {"destination": path, "type": "tmpfs", "source": "tmpfs",
            "options": [k for k, v in flags.items() if v] + ["rprivate"] + extra}


def _rlim(v: Any) -> int:
    v = int(v or 0)
    return 2 ** 64 - 1 if v < 0 else v


def _resources(res: dict, hc: dict) -> None:
    mem = int(hc.get("Memory") or 0)
    swap = int(hc.get("MemorySwap") or 0)
    memory: dict[str, Any] = {}
    if mem > 0:
        memory["limit"] = mem
        if swap == 0:
            swap = 2 * mem           # dockerd's default: as much swap as memory
    if swap > 0 and _swap_accounting():     # -1 (unlimited): left out, as dockerd does
        memory["swap"] = swap
    if hc.get("MemoryReservation"):
        memory["reservation"] = int(hc["MemoryReservation"])
    swp = hc.get("MemorySwappiness")
    if swp is not None and swp != -1:
        memory["swappiness"] = int(swp)
    if hc.get("OomKillDisable"):
        memory["disableOOMKiller"] = True
    if memory:
        res["memory"] = memory
    cpu: dict[str, Any] = {}
    nano = int(hc.get("NanoCpus") or 0)
    if nano:
        cpu["period"] = 100000
        cpu["quota"] = nano * 100000 // 1_000_000_000
    if hc.get("CpuPeriod"):
        cpu["period"] = int(hc["CpuPeriod"])
    if hc.get("CpuQuota"):
        cpu["quota"] = int(hc["CpuQuota"])
    if hc.get("CpuShares"):
        cpu["shares"] = max(2, min(262144, int(hc["CpuShares"])))
    if hc.get("CpusetCpus"):
        cpu["cpus"] = hc["CpusetCpus"]
    if hc.get("CpusetMems"):
        cpu["mems"] = hc["CpusetMems"]
    if cpu:
        res["cpu"] = cpu
    pl = hc.get("PidsLimit")
    if pl is not None and int(pl) > 0:
        res["pids"] = {"limit": int(pl)}
    blkio: dict[str, Any] = {}
    if hc.get("BlkioWeight"):
        blkio["weight"] = int(hc["BlkioWeight"])
    for key, oci, val in (("BlkioWeightDevice", "weightDevice", "Weight"),
                          ("BlkioDeviceReadBps", "throttleReadBpsDevice", "Rate"),
                          ("BlkioDeviceWriteBps", "throttleWriteBpsDevice", "Rate"),
                          ("BlkioDeviceReadIOps", "throttleReadIOPSDevice", "Rate"),
                          ("BlkioDeviceWriteIOps", "throttleWriteIOPSDevice", "Rate")):
        for i, d in enumerate(hc.get(key) or []):
            _t, major, minor, *_ = _host_device_numbers(d["Path"], f"HostConfig.{key}[{i}]")
            entry = {"major": major, "minor": minor}
            entry["weight" if val == "Weight" else "rate"] = int(d.get(val) or 0)
            blkio.setdefault(oci, []).append(entry)
    if blkio:
        res["blockIO"] = blkio


def _swap_accounting() -> bool:
    """Whether this host can limit swap (cgroup v1 memsw, or v2 memory.swap.max)."""
    if os.path.exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"):
        return True
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        return "memory" in (_read("/sys/fs/cgroup/cgroup.controllers") or "")
    return False


_SECCOMP_CACHE: dict[frozenset, dict] = {}


def _default_seccomp(caps: Iterable[str]) -> dict:
    """Docker's default profile resolved for these capabilities, once per set of them
    (reading and resolving the profile costs ~2 ms a container). The section is shared
    between specs: nothing changes it after this point (the spec is written out as is)."""
    from pystack.runtime import seccomp as sc

    key = frozenset(caps)
    section = _SECCOMP_CACHE.get(key)
    if section is None:
        section = sc.default_oci(key)
        sc.validate(section)
        if len(_SECCOMP_CACHE) < 64:
            _SECCOMP_CACHE[key] = section
    return section


def _resolve_user(user: str, group_add: list, rootfs: Any) -> dict:
    """Config.User + HostConfig.GroupAdd -> OCI process.user, as moby's getUser: the
    additional gids are the primary gid, the user's supplementary groups, then GroupAdd."""
    from pystack.runtime.userdb import resolve_user

    u, _, g = user.partition(":")
    numeric = (u.isdigit() or not u) and (not g or g.isdigit()) and all(str(x).isdigit() for x in group_add)
    root = _etc_root(rootfs)
    if root is None:
        if not numeric:
            raise _bad("Config.User", f"unable to find user {user}: no /etc/passwd in the image")
        uid, gid, extra = int(u or 0), int(g or 0), [int(x) for x in group_add]
    else:
        uid, gid, extra = _user_in(root, user, group_add)
    gids: list[int] = []
    for x in [gid, *extra]:
        if x not in gids:
            gids.append(x)
    return {"uid": uid, "gid": gid, "additionalGids": gids}


_USER_CACHE: dict[tuple, tuple[tuple, tuple[int, int, list[int]]]] = {}


def is_shared_seccomp(section: Any) -> bool:
    """Whether ``section`` is one of the cached default sections (never changed)."""
    return any(section is v for v in _SECCOMP_CACHE.values())


def _user_in(root: str, user: str, group_add: list) -> tuple[int, int, list[int]]:
    """uid, gid, additional gids of ``user`` by ``root``'s /etc/passwd and /etc/group,
    remembered while both files stay the same (image layers never change: a start
    then costs two stats, not two opens and parses)."""
    from pystack.runtime.userdb import resolve_user

    def stamp() -> tuple:
        out = []
        for name in ("etc/passwd", "etc/group"):
            try:
                st = os.lstat(os.path.join(root, name))
                out.append((st.st_ino, st.st_dev, st.st_mtime_ns, st.st_ctime_ns, st.st_size))
            except OSError:
                out.append(None)
        return tuple(out)

    key = (root, user, tuple(str(x) for x in group_add))
    before = stamp()
    hit = _USER_CACHE.get(key)
    if hit is not None and hit[0] == before:
        uid, gid, extra = hit[1]
        return uid, gid, list(extra)
    try:
        eu = resolve_user(root, user, list(key[2]))
    except UserError as exc:
        raise _bad("Config.User", str(exc)) from None
    found = (eu.uid, eu.gid, list(eu.additional_gids))
    if stamp() == before:  # unchanged while read
        if len(_USER_CACHE) > 256:
            _USER_CACHE.clear()
        _USER_CACHE[key] = (before, found)
    return found[0], found[1], list(found[2])


def _rootfs_from_record(container_id: str, files: dict | None) -> list[str] | None:
    """Stopgap while a caller does not pass ``rootfs``: the engine keeps a container's
    files (hosts, resolv.conf) next to its record.json, whose ``extra`` names the
    overlay's upper dir and the image's lowerdirs."""
    import pathlib
    for path in (files or {}).values():
        d = pathlib.Path(path).parent
        if d.name != container_id:
            continue
        try:
            rec = json.loads((d / "record.json").read_text())
        except (OSError, ValueError):
            return None
        extra = rec.get("extra") or {}
        layers = [extra.get("upper") or ""] + list(extra.get("lowerdirs") or [])
        return [p for p in layers if p] or None
    return None


def _etc_root(rootfs: Any) -> str | None:
    """The directory whose /etc/passwd and /etc/group describe the container."""
    if rootfs is None:
        return None
    if isinstance(rootfs, (str, os.PathLike)):
        return str(rootfs)
    for layer in rootfs:
        if layer and (os.path.lexists(os.path.join(layer, "etc/passwd"))
                      or os.path.lexists(os.path.join(layer, "etc/group"))):
            return str(layer)
    return None
