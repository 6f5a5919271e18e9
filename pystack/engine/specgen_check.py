"""Checks of a /containers/create body for pystack.engine.specgen (see there), and the
small parsers build_spec shares: security options, device rules, host device numbers,
signals. Errors are api.BadRequest naming the field, in dockerd's words where it has some."""
from __future__ import annotations

import json
import math
import os
import re
import stat as _stat
from typing import Any

from pystack.engine.api import BadRequest

MIN_MEMORY = 6 * 1024 * 1024           # moby linuxMinMemory
MIN_DURATION_NS = 1_000_000            # moby containertypes.MinimumDuration (1ms)

_SIGNALS = {
    "HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "TRAP": 5, "ABRT": 6, "IOT": 6, "BUS": 7, "FPE": 8,
    "KILL": 9, "USR1": 10, "SEGV": 11, "USR2": 12, "PIPE": 13, "ALRM": 14, "TERM": 15,
    "STKFLT": 16, "CHLD": 17, "CONT": 18, "STOP": 19, "TSTP": 20, "TTIN": 21, "TTOU": 22,
    "URG": 23, "XCPU": 24, "XFSZ": 25, "VTALRM": 26, "PROF": 27, "WINCH": 28, "IO": 29,
    "POLL": 29, "PWR": 30, "SYS": 31,
}

ULIMIT_NAMES = ("as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice",
                "nofile", "nproc", "rss", "rtprio", "rttime", "sigpending", "stack")

RESTART_POLICIES = ("", "no", "always", "on-failure", "unless-stopped")
MOUNT_TYPES = ("bind", "volume", "tmpfs")

# HostConfig fields pystack does NOT implement: each is accepted only with one of these
# (empty/default) values.  Everything else in HostConfig is implemented (here, by the
# manager, by networking or by volumes).
_UNSUPPORTED_HOST: dict[str, tuple] = {
    "Runtime": ("", None, "runc", "pystack"),
    "Isolation": ("", None, "default"),
    "StorageOpt": (None, {}),
    "VolumeDriver": ("", None, "local"),
    "Cgroup": ("", None),
    "UsernsMode": ("", None, "host"),
    "CpuCount": (0, None),
    "CpuPercent": (0, None),
    "IOMaximumIOps": (0, None),
    "IOMaximumBandwidth": (0, None),
    "CpuRealtimePeriod": (0, None),
    "CpuRealtimeRuntime": (0, None),
    "KernelMemory": (0, None),
    "KernelMemoryTCP": (0, None),
    "DeviceRequests": (None, []),
    "ContainerIDFile": None,      # client-side only: any value accepted
    "ConsoleSize": None,          # any value (the TTY size; resize does the rest)
}
_UNSUPPORTED_CONFIG: dict[str, tuple] = {
    "NetworkDisabled": (False, None),
    "OnBuild": (None, []),
}


# --------------------------------------------------------------------------------------
# small helpers

def _bad(field: str, message: str) -> BadRequest:
    return BadRequest(f"{field}: {message}" if field else message)


def _int(value: Any, field: str, *, allow_none: bool = True) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or (isinstance(value, float) and not math.isfinite(value)) or value != int(value):
        raise _bad(field, f"must be an integer, not {value!r}")
    return int(value)


def _list(obj: dict, key: str, field: str) -> list:
    """obj[key] as a list ([] when absent or null); BadRequest when it is not one."""
    v = obj.get(key)
    if v is None:
        return []
    if not isinstance(v, list):
        raise _bad(f"{field}.{key}", "must be a list")
    return v


def _strslice(value: Any, field: str) -> list[str] | None:
    """Docker's StrSlice: null, a string (one element) or a list of strings."""
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise _bad(field, "must be a string or a list of strings")


def parse_signal(value: str | int) -> int:
    """'SIGTERM', 'TERM', '15', 'RTMIN+3' -> number; ValueError when unknown."""
    text = str(value).strip().upper()
    if text.isdigit():
        n = int(text)
        if 0 < n <= 64:
            return n
        raise ValueError(value)
    if text.startswith("SIG"):
        text = text[3:]
    if text in _SIGNALS:
        return _SIGNALS[text]
    m = re.fullmatch(r"RTMIN(?:\+(\d+))?|RTMAX(?:-(\d+))?", text)
    if m:
        n = 34 + int(m.group(1) or 0) if text.startswith("RTMIN") else 64 - int(m.group(2) or 0)
        if 34 <= n <= 64:
            return n
    raise ValueError(value)


# --------------------------------------------------------------------------------------
# check_create_body

def check_create_body(body: Any) -> None:
    """Validate a /containers/create body; api.BadRequest naming the field."""
    if not isinstance(body, dict):
        raise BadRequest("container config must be a JSON object")
    try:
        _check_body(body)
    except (TypeError, ValueError, AttributeError, KeyError, OverflowError) as exc:
        # a shape no specific check expected: still one clear 400, never a 500
        raise BadRequest(f"invalid container config: {exc}") from None


def _check_body(body: dict) -> None:
    for key, allowed in _UNSUPPORTED_CONFIG.items():
        if key in body and body[key] not in allowed:
            raise _bad(f"Config.{key}", "not supported by pystack")
    _check_config(body)
    hc = body.get("HostConfig")
    if hc is None:
        hc = {}
    if not isinstance(hc, dict):
        raise _bad("HostConfig", "must be a JSON object")
    _check_host_config(hc, body)
    nc = body.get("NetworkingConfig")
    if nc is not None:
        if not isinstance(nc, dict):
            raise _bad("NetworkingConfig", "must be a JSON object")
        eps = nc.get("EndpointsConfig")
        if eps is not None and not isinstance(eps, dict):
            raise _bad("NetworkingConfig.EndpointsConfig", "must be a JSON object")
        for net, ep in (eps or {}).items():
            if ep is not None and not isinstance(ep, dict):
                raise _bad(f"NetworkingConfig.EndpointsConfig.{net}", "must be a JSON object")


def _check_config(c: dict) -> None:
    for key in ("Hostname", "Domainname", "User", "WorkingDir", "Image", "StopSignal", "MacAddress"):
        if c.get(key) is not None and not isinstance(c[key], str):
            raise _bad(f"Config.{key}", "must be a string")
    for key in ("AttachStdin", "AttachStdout", "AttachStderr", "Tty", "OpenStdin", "StdinOnce",
                "ArgsEscaped"):
        if c.get(key) is not None and not isinstance(c[key], bool):
            raise _bad(f"Config.{key}", "must be true or false")
    for key in ("Cmd", "Entrypoint", "Shell"):
        _strslice(c.get(key), f"Config.{key}")
    env = c.get("Env")
    if env is not None:
        if not isinstance(env, list) or not all(isinstance(e, str) for e in env):
            raise _bad("Config.Env", "must be a list of strings")
        for e in env:
            if e.split("=", 1)[0] == "":
                raise _bad("Config.Env", f"invalid environment variable: {e}")
    for key in ("Labels",):
        v = c.get(key)
        if v is not None and (not isinstance(v, dict) or not all(isinstance(x, str) for x in v.values())):
            raise _bad(f"Config.{key}", "must be an object of strings")
    for key in ("ExposedPorts", "Volumes"):
        v = c.get(key)
        if v is not None and not isinstance(v, dict):
            raise _bad(f"Config.{key}", "must be a JSON object")
    for port in c.get("ExposedPorts") or {}:
        _check_port_key(port, "Config.ExposedPorts")
    for path in c.get("Volumes") or {}:
        if not isinstance(path, str) or not path.startswith("/"):
            raise _bad("Config.Volumes", f"invalid mount path: '{path}' mount path must be absolute")
    wd = c.get("WorkingDir") or ""
    if wd and not wd.startswith("/"):
        raise _bad("Config.WorkingDir", f"the working directory '{wd}' is invalid, it needs to be an absolute path")
    for key in ("Hostname", "Domainname"):   # the kernel's limit: 64 bytes
        hn = c.get(key) or ""
        if hn and (len(hn.encode()) > 64 or not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", hn)):
            raise _bad(f"Config.{key}", f"invalid hostname format: {hn}")
    sig = c.get("StopSignal")
    if sig:
        try:
            parse_signal(sig)
        except ValueError:
            raise _bad("Config.StopSignal", f"Invalid signal: {sig}") from None
    st = c.get("StopTimeout")
    if st is not None:
        _int(st, "Config.StopTimeout")
    _check_healthcheck(c.get("Healthcheck"))


def _check_healthcheck(hc: Any) -> None:
    if hc is None:
        return
    if not isinstance(hc, dict):
        raise _bad("Config.Healthcheck", "must be a JSON object")
    test = hc.get("Test")
    if test is not None:
        if not isinstance(test, list) or not all(isinstance(t, str) for t in test):
            raise _bad("Config.Healthcheck.Test", "must be a list of strings")
        if test and test[0] not in ("NONE", "CMD", "CMD-SHELL"):
            raise _bad("Config.Healthcheck.Test", f"unknown test type {test[0]!r} (CMD, CMD-SHELL or NONE)")
        if test and test[0] in ("CMD", "CMD-SHELL") and len(test) < 2:
            raise _bad("Config.Healthcheck.Test", f"{test[0]} needs a command")
    for key in ("Interval", "Timeout", "StartPeriod", "StartInterval"):
        v = _int(hc.get(key), f"Config.Healthcheck.{key}")
        if v is not None and v != 0 and v < MIN_DURATION_NS:
            raise _bad("", f"{key} in Healthcheck cannot be less than 1ms")
    r = _int(hc.get("Retries"), "Config.Healthcheck.Retries")
    if r is not None and r < 0:
        raise _bad("", "Retries in Healthcheck cannot be negative")


_PORT_RE = re.compile(r"(\d+)(?:-(\d+))?(?:/(.*))?")


def _check_port_key(key: Any, field: str) -> None:
    m = _PORT_RE.fullmatch(str(key))
    if not m:
        raise _bad(field, f"invalid port specification: {key!r}")
    lo, hi, proto = int(m.group(1)), int(m.group(2) or m.group(1)), m.group(3)
    if not (0 < lo <= 65535 and 0 < hi <= 65535) or hi < lo:
        raise _bad(field, f"invalid port specification: {key!r}")
    if proto is not None and proto.lower() not in ("tcp", "udp", "sctp"):
        raise _bad(field, f"invalid proto: {proto}")


def _check_host_config(hc: dict, body: dict) -> None:
    for key, allowed in _UNSUPPORTED_HOST.items():
        if allowed is not None and key in hc and hc[key] not in allowed:
            raise _bad(f"HostConfig.{key}", "not supported by pystack")
    for key in ("Privileged", "ReadonlyRootfs", "AutoRemove", "PublishAllPorts", "OomKillDisable"):
        if hc.get(key) is not None and not isinstance(hc[key], bool):
            raise _bad(f"HostConfig.{key}", "must be true or false")
    if hc.get("Init") is not None and not isinstance(hc["Init"], bool):
        raise _bad("HostConfig.Init", "must be true, false or null")

    # -- resources
    mem = _int(hc.get("Memory"), "HostConfig.Memory") or 0
    swap = _int(hc.get("MemorySwap"), "HostConfig.MemorySwap") or 0
    res = _int(hc.get("MemoryReservation"), "HostConfig.MemoryReservation") or 0
    if mem < 0:
        raise _bad("HostConfig.Memory", "must not be negative")
    if mem and mem < MIN_MEMORY:
        raise _bad("HostConfig.Memory", "Minimum memory limit allowed is 6MB")
    if swap < -1:
        raise _bad("HostConfig.MemorySwap", "must be -1 (unlimited), 0 or a size")
    if swap > 0 and mem == 0:
        raise _bad("HostConfig.MemorySwap", "You should always set the Memory limit when using Memoryswap limit, see usage")
    if mem > 0 and swap > 0 and swap < mem:
        raise _bad("HostConfig.MemorySwap", "Minimum memoryswap limit should be larger than memory limit, see usage")
    if res < 0:
        raise _bad("HostConfig.MemoryReservation", "must not be negative")
    if res and res < MIN_MEMORY:
        raise _bad("HostConfig.MemoryReservation", "Minimum memory reservation allowed is 6MB")
    if mem > 0 and res > 0 and mem < res:
        raise _bad("HostConfig.MemoryReservation", "Minimum memory limit can not be less than memory reservation limit, see usage")
    swp = _int(hc.get("MemorySwappiness"), "HostConfig.MemorySwappiness")
    if swp is not None and swp != -1 and not 0 <= swp <= 100:
        raise _bad("HostConfig.MemorySwappiness", f"Invalid value: {swp}, valid memory swappiness range is 0-100")
    nano = _int(hc.get("NanoCpus"), "HostConfig.NanoCpus") or 0
    quota = _int(hc.get("CpuQuota"), "HostConfig.CpuQuota") or 0
    period = _int(hc.get("CpuPeriod"), "HostConfig.CpuPeriod") or 0
    if nano < 0:
        raise _bad("HostConfig.NanoCpus", "must not be negative")
    if nano and period:
        raise _bad("HostConfig.NanoCpus", "Conflicting options: Nano CPUs and CPU Period cannot both be set")
    if nano and quota:
        raise _bad("HostConfig.NanoCpus", "Conflicting options: Nano CPUs and CPU Quota cannot both be set")
    ncpu = os.cpu_count() or 1
    if nano and (nano < 10_000_000 or nano > ncpu * 1_000_000_000):
        raise _bad("HostConfig.NanoCpus", f"Range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} CPUs available")
    if period and not 1000 <= period <= 1_000_000:
        raise _bad("HostConfig.CpuPeriod", "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)")
    if quota and quota != -1 and quota < 1000:
        raise _bad("HostConfig.CpuQuota", "CPU cfs quota can not be less than 1ms (i.e. 1000)")
    shares = _int(hc.get("CpuShares"), "HostConfig.CpuShares") or 0
    if shares < 0:
        raise _bad("HostConfig.CpuShares", "must not be negative")
    for key in ("CpusetCpus", "CpusetMems"):
        v = hc.get(key)
        if v:
            if not isinstance(v, str) or not re.fullmatch(r"\d+(-\d+)?(,\d+(-\d+)?)*", v):
                what = "cpus" if key == "CpusetCpus" else "mems"
                raise _bad(f"HostConfig.{key}", f"Invalid value {v} for cpuset {what}")
            if key == "CpusetCpus":
                avail = _cpulist(_read("/sys/devices/system/cpu/online") or f"0-{ncpu - 1}")
                if not _cpulist(v) <= avail:
                    raise _bad("HostConfig.CpusetCpus", f"Requested CPUs are not available - requested {v}, "
                               f"available: {(_read('/sys/devices/system/cpu/online') or '').strip()}")
    pl = _int(hc.get("PidsLimit"), "HostConfig.PidsLimit")
    if pl is not None and pl < -1:
        raise _bad("HostConfig.PidsLimit", "must be -1 (unlimited), 0 or a positive number")
    oom = _int(hc.get("OomScoreAdj"), "HostConfig.OomScoreAdj") or 0
    if not -1000 <= oom <= 1000:
        raise _bad("HostConfig.OomScoreAdj", f"Invalid value {oom}, range for oom score adj is [-1000, 1000]")
    shm = _int(hc.get("ShmSize"), "HostConfig.ShmSize") or 0
    if shm < 0:
        raise _bad("HostConfig.ShmSize", "SHM size can not be less than 0")
    bw = _int(hc.get("BlkioWeight"), "HostConfig.BlkioWeight") or 0
    if bw and not 10 <= bw <= 1000:
        raise _bad("HostConfig.BlkioWeight", "Range of blkio weight is from 10 to 1000")
    for key in ("BlkioWeightDevice", "BlkioDeviceReadBps", "BlkioDeviceWriteBps",
                "BlkioDeviceReadIOps", "BlkioDeviceWriteIOps"):
        for i, d in enumerate(_list(hc, key, "HostConfig")):
            if not isinstance(d, dict) or not isinstance(d.get("Path"), str):
                raise _bad(f"HostConfig.{key}[{i}]", "needs a Path")
            _host_device_numbers(d["Path"], f"HostConfig.{key}[{i}]")
    _check_restart(hc)

    # -- security and namespaces
    for key in ("CapAdd", "CapDrop"):
        v = hc.get(key)
        if v is not None:
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise _bad(f"HostConfig.{key}", "must be a list of strings")
            from pystack.runtime.caps import is_known, normalize
            for name in v:
                if normalize(name) != "CAP_ALL" and not is_known(name):
                    raise _bad(f"HostConfig.{key}", f"unknown capability: {name!r}")
    for opt in _list(hc, "SecurityOpt", "HostConfig"):
        _parse_security_opt(opt)
    _check_mode(hc, "IpcMode", ("", "private", "shareable", "none", "host"), "IPC")
    _check_mode(hc, "PidMode", ("", "host"), "PID")
    _check_mode(hc, "UTSMode", ("", "host"), "UTS")
    _check_mode(hc, "CgroupnsMode", ("", "host", "private"), "cgroup namespace")
    nm = hc.get("NetworkMode") or ""
    if not isinstance(nm, str):
        raise _bad("HostConfig.NetworkMode", "must be a string")
    if nm.startswith("container:") and not nm[len("container:"):]:
        raise _bad("HostConfig.NetworkMode", "container:<name|id> needs a container")
    # dockerd discards published ports with host networking (a warning), refuses them
    # when joining another container's network
    if nm.startswith("container:") and (hc.get("PortBindings") or hc.get("PublishAllPorts")):
        raise _bad("HostConfig.PortBindings", "conflicting options: port publishing and the container type network mode")
    if nm.startswith("container:"):   # moby validateNetContainerMode
        for key, words in (("Dns", "dns"), ("ExtraHosts", "custom host-to-IP mapping")):
            if hc.get(key):
                raise _bad(f"HostConfig.{key}", f"conflicting options: {words} and the network mode")
        if body.get("ExposedPorts"):
            raise _bad("Config.ExposedPorts", "conflicting options: port exposing and the container type network mode")
        if body.get("MacAddress"):
            raise _bad("Config.MacAddress", "conflicting options: mac-address and the network mode")
    if nm.startswith("container:") and (body.get("Hostname") or ""):
        raise _bad("Config.Hostname", "conflicting options: hostname and the network mode")
    if (hc.get("UTSMode") or "") == "host" and (body.get("Hostname") or ""):
        raise _bad("Config.Hostname", "conflicting options: hostname and the UTS mode")
    for i, g in enumerate(_list(hc, "GroupAdd", "HostConfig")):
        if not isinstance(g, (str, int)) or isinstance(g, bool) or str(g) == "":
            raise _bad(f"HostConfig.GroupAdd[{i}]", "must be a group name or number")
    for i, u in enumerate(_list(hc, "Ulimits", "HostConfig")):
        f = f"HostConfig.Ulimits[{i}]"
        if not isinstance(u, dict):
            raise _bad(f, "must be an object with Name, Soft and Hard")
        if u.get("Name") not in ULIMIT_NAMES:
            raise _bad(f, f"invalid ulimit type: {u.get('Name')}")
        soft, hard = _int(u.get("Soft"), f + ".Soft") or 0, _int(u.get("Hard"), f + ".Hard") or 0
        if soft > hard and hard != -1:
            raise _bad(f, f"ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}")
    sysctls = hc.get("Sysctls")
    if sysctls is not None:
        if not isinstance(sysctls, dict) or not all(isinstance(v, str) for v in sysctls.values()):
            raise _bad("HostConfig.Sysctls", "must be an object of strings")
        for k in sysctls:
            if nm == "host" and (k.startswith("net.")):
                raise _bad("HostConfig.Sysctls", f"sysctl '{k}' not allowed in host network namespace")
            if not _namespaced_sysctl(k):
                raise _bad("HostConfig.Sysctls", f"sysctl '{k}' is not allowed: not a namespaced sysctl")
    tmpfs = hc.get("Tmpfs")
    if tmpfs is not None:
        if not isinstance(tmpfs, dict):
            raise _bad("HostConfig.Tmpfs", "must be an object of path: options")
        for path, opts in tmpfs.items():
            if not path.startswith("/"):
                raise _bad("HostConfig.Tmpfs", f"invalid mount path: '{path}' mount path must be absolute")
            if opts is not None and not isinstance(opts, str):
                raise _bad("HostConfig.Tmpfs", f"{path}: options must be a string")
    for i, d in enumerate(_list(hc, "Devices", "HostConfig")):
        f = f"HostConfig.Devices[{i}]"
        if not isinstance(d, dict) or not d.get("PathOnHost"):
            raise _bad(f, "needs PathOnHost")
        perms = d.get("CgroupPermissions") or "rwm"
        if not re.fullmatch(r"[rwm]{1,3}", perms):
            raise _bad(f, f"invalid device cgroup permissions {perms!r}")
        cpath = d.get("PathInContainer") or d["PathOnHost"]
        if not cpath.startswith("/"):
            raise _bad(f, f"invalid device path in container: {cpath!r}")
        _host_device_numbers(d["PathOnHost"], f)
    for i, rule in enumerate(_list(hc, "DeviceCgroupRules", "HostConfig")):
        _parse_device_rule(rule, f"HostConfig.DeviceCgroupRules[{i}]")
    for key in ("MaskedPaths", "ReadonlyPaths"):
        v = hc.get(key)
        if v is not None and (not isinstance(v, list) or not all(isinstance(p, str) and p.startswith("/") for p in v)):
            raise _bad(f"HostConfig.{key}", "must be a list of absolute paths")
    ann = hc.get("Annotations")
    if ann is not None and (not isinstance(ann, dict) or not all(isinstance(v, str) for v in ann.values())):
        raise _bad("HostConfig.Annotations", "must be an object of strings")
    cp = hc.get("CgroupParent") or ""
    if cp and (not isinstance(cp, str) or any(p in (".", "..") for p in cp.split("/"))):
        raise _bad("HostConfig.CgroupParent", f"invalid cgroup parent {cp!r}")
    _check_mounts(hc.get("Mounts"))
    for i, b in enumerate(_list(hc, "Binds", "HostConfig")):
        if not isinstance(b, str) or not b:
            raise _bad(f"HostConfig.Binds[{i}]", "must be a non-empty string")
        parts = b.split(":")
        if len(parts) > 3 or (len(parts) >= 2 and not parts[1].startswith("/")):
            raise _bad(f"HostConfig.Binds[{i}]", f"invalid volume specification: '{b}'")
    pb = hc.get("PortBindings")
    if pb is not None:
        if not isinstance(pb, dict):
            raise _bad("HostConfig.PortBindings", "must be a JSON object")
        for key, binds in pb.items():
            _check_port_key(key, "HostConfig.PortBindings")
            for b in binds or []:
                if not isinstance(b, dict):
                    raise _bad("HostConfig.PortBindings", f"{key}: each binding must be an object")
                hp = str(b.get("HostPort") or "")
                if hp and not re.fullmatch(r"\d+(-\d+)?", hp):
                    raise _bad("HostConfig.PortBindings", f"invalid port specification: {hp!r}")
                if hp and any(not 0 <= int(x) <= 65535 for x in hp.split("-")):
                    raise _bad("HostConfig.PortBindings", f"invalid port specification: {hp!r}")
    lc = hc.get("LogConfig")
    if lc is not None and not isinstance(lc, dict):
        raise _bad("HostConfig.LogConfig", "must be a JSON object")
    lt = (lc or {}).get("Type") or ""
    if lt not in ("", "json-file", "local"):
        raise _bad("HostConfig.LogConfig.Type", f"log driver {lt!r} is not supported (json-file only)")


def _check_restart(hc: dict) -> None:
    pol = hc.get("RestartPolicy")
    if pol is None:
        return
    if not isinstance(pol, dict):
        raise _bad("HostConfig.RestartPolicy", "must be a JSON object")
    name = pol.get("Name") or ""
    if name not in RESTART_POLICIES:
        raise _bad("HostConfig.RestartPolicy.Name", f"invalid restart policy '{name}'")
    count = _int(pol.get("MaximumRetryCount"), "HostConfig.RestartPolicy.MaximumRetryCount") or 0
    if count < 0:
        raise _bad("HostConfig.RestartPolicy.MaximumRetryCount", "maximum retry count cannot be negative")
    if count and name != "on-failure":
        raise _bad("HostConfig.RestartPolicy.MaximumRetryCount",
                   f"maximum retry count cannot be used with restart policy '{name}'")
    if hc.get("AutoRemove") and name not in ("", "no"):
        raise _bad("HostConfig.AutoRemove", "can't create 'AutoRemove' container with restart policy")


def _check_mode(hc: dict, key: str, allowed: tuple, what: str) -> None:
    v = hc.get(key) or ""
    if not isinstance(v, str):
        raise _bad(f"HostConfig.{key}", "must be a string")
    if v.startswith("container:") and key in ("IpcMode", "PidMode"):
        raise _bad(f"HostConfig.{key}", "container:<name|id> is not supported by pystack")
    if v not in allowed:
        raise _bad(f"HostConfig.{key}", f"invalid {what} mode: {v}")


def _check_mounts(mounts: Any) -> None:
    if mounts is None:
        return
    if not isinstance(mounts, list):
        raise _bad("HostConfig.Mounts", "must be a list")
    for i, m in enumerate(mounts):
        f = f"HostConfig.Mounts[{i}]"
        if not isinstance(m, dict):
            raise _bad(f, "must be a JSON object")
        typ = m.get("Type") or ""
        if typ not in MOUNT_TYPES:
            raise _bad(f, f"invalid mount config for type \"{typ}\": mount type unknown")
        target = m.get("Target") or ""
        if not target:
            raise _bad(f, f"invalid mount config for type \"{typ}\": field Target must not be empty")
        if not target.startswith("/"):
            raise _bad(f, f"invalid mount config for type \"{typ}\": invalid mount path: '{target}' mount path must be absolute")
        if typ == "bind" and not m.get("Source"):
            raise _bad(f, "invalid mount config for type \"bind\": field Source must not be empty")
        if typ == "tmpfs" and m.get("Source"):
            raise _bad(f, "invalid mount config for type \"tmpfs\": field Source must not be specified")
        if typ != "bind" and m.get("BindOptions"):
            raise _bad(f, f"invalid mount config for type \"{typ}\": field BindOptions must not be specified")
        if typ != "volume" and m.get("VolumeOptions"):
            raise _bad(f, f"invalid mount config for type \"{typ}\": field VolumeOptions must not be specified")
        if typ != "tmpfs" and m.get("TmpfsOptions"):
            raise _bad(f, f"invalid mount config for type \"{typ}\": field TmpfsOptions must not be specified")
        prop = (m.get("BindOptions") or {}).get("Propagation") or ""
        if prop not in ("", "private", "rprivate", "shared", "rshared", "slave", "rslave"):
            raise _bad(f, f"invalid propagation mode: {prop}")
        to = m.get("TmpfsOptions") or {}
        if _int(to.get("SizeBytes"), f + ".TmpfsOptions.SizeBytes") is not None and to["SizeBytes"] < 0:
            raise _bad(f, "invalid mount config for type \"tmpfs\": invalid tmpfs size")


# security_opt ------------------------------------------------------------------------

def _parse_security_opt(opt: Any) -> tuple[str, str]:
    """-> (key, value); moby's messages for malformed options."""
    if not isinstance(opt, str):
        raise _bad("HostConfig.SecurityOpt", f"invalid --security-opt: {opt!r}")
    if opt == "no-new-privileges":
        return "no-new-privileges", "true"
    if opt == "disable":   # label=disable, old form
        return "label", "disable"
    m = re.match(r"([a-z-]+)[=:](.*)\Z", opt, re.S)
    if not m:
        raise _bad("HostConfig.SecurityOpt", f"invalid --security-opt 1: {opt!r}")
    key, value = m.group(1), m.group(2)
    if key == "no-new-privileges":
        if value not in ("true", "false", "1", "0"):
            raise _bad("HostConfig.SecurityOpt", f"invalid --security-opt 2: {opt!r}")
        return key, "true" if value in ("true", "1") else "false"
    if key in ("label", "apparmor"):
        return key, value
    if key == "systempaths":
        if value != "unconfined":
            raise _bad("HostConfig.SecurityOpt", f"invalid --security-opt 2: {opt!r}")
        return key, value
    if key == "seccomp":
        if value in ("unconfined", "builtin", ""):
            return key, value or "builtin"
        if value.lstrip().startswith("{"):
            try:
                prof = json.loads(value)
            except ValueError as exc:
                raise _bad("HostConfig.SecurityOpt", f"seccomp: profile is not valid JSON ({exc})") from None
            if not isinstance(prof, dict) or "defaultAction" not in prof:
                raise _bad("HostConfig.SecurityOpt", "seccomp: a seccomp profile needs defaultAction")
            return key, value
        # the API carries the profile itself (the docker CLI reads the file); a path
        # would let a client make the engine read host files
        raise _bad("HostConfig.SecurityOpt", "seccomp: give the profile's JSON (as the docker CLI sends it), "
                                             "'unconfined' or 'builtin', not a file path")
    raise _bad("HostConfig.SecurityOpt", f"invalid --security-opt 2: {opt!r}")


def _namespaced_sysctl(key: str) -> bool:
    """moby's list of namespaced sysctls (opts.ValidateSysctl)."""
    if key in ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
               "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced", "kernel.domainname",
               "kernel.hostname"):
        return True
    return key.startswith("fs.mqueue.") or key.startswith("net.")


def _parse_device_rule(rule: Any, field: str) -> dict:
    m = re.fullmatch(r"([abc]) (\d+|\*):(\d+|\*) ([rwm]{1,3})", str(rule or "").strip())
    if not m:
        raise _bad(field, f"invalid device cgroup rule {rule!r} (want like 'c 1:3 rwm')")
    out: dict[str, Any] = {"allow": True, "type": m.group(1), "access": m.group(4)}
    if m.group(2) != "*":
        out["major"] = int(m.group(2))
    if m.group(3) != "*":
        out["minor"] = int(m.group(3))
    return out


def _host_device_numbers(path: str, field: str) -> tuple[str, int, int, int, int, int]:
    """(type, major, minor, mode, uid, gid) of a host device node."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise _bad(field, f"error gathering device information while adding custom device {path!r}: "
                          f"{(exc.strerror or str(exc)).lower()}") from None
    if _stat.S_ISCHR(st.st_mode):
        typ = "c"
    elif _stat.S_ISBLK(st.st_mode):
        typ = "b"
    else:
        raise _bad(field, f"{path} is not a device node")
    return typ, os.major(st.st_rdev), os.minor(st.st_rdev), _stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid


def _read(path: str) -> str | None:
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return None


def _cpulist(text: str) -> set[int]:
    out: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out
