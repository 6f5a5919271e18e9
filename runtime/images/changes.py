"""``--change`` instructions of ``image import`` applied to an image config.

The Dockerfile subset ``docker import --change`` accepts: CMD, ENTRYPOINT, ENV, EXPOSE,
LABEL, USER, WORKDIR, VOLUME, STOPSIGNAL, ONBUILD, HEALTHCHECK. Both JSON (exec) and
shell forms, as in a Dockerfile.
"""
from __future__ import annotations

import json
import shlex
from typing import Any

from pystack.errors import UserError

_DURATION_UNITS = {"ns": 1, "us": 1000, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}


def _exec_or_shell(rest: str) -> list[str]:
    text = rest.strip()
    if text.startswith("["):
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    return ["/bin/sh", "-c", text]


def _pairs(rest: str, what: str) -> dict[str, str]:
    """``k=v k2="v 2"`` or the legacy single ``k v`` form."""
    words = shlex.split(rest)
    if not words:
        raise UserError(f"{what} needs at least one argument")
    if "=" not in words[0]:
        key, _, value = rest.strip().partition(" ")
        return {key: value.strip()}
    out = {}
    for word in words:
        if "=" not in word:
            raise UserError(f"{what}: {word!r} is not KEY=VALUE")
        k, v = word.split("=", 1)
        out[k] = v
    return out


def _duration(text: str) -> int:
    import re
    total, pos = 0, 0
    for m in re.finditer(r"(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)", text):
        if m.start() != pos:
            break
        total += int(float(m.group(1)) * _DURATION_UNITS[m.group(2)])
        pos = m.end()
    if pos != len(text) or not text:
        raise UserError(f"HEALTHCHECK: invalid duration {text!r}")
    return total


def apply_changes(config: dict[str, Any], changes: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Apply each instruction to ``config`` (the ``config`` section of an image config)."""
    for change in changes:
        instr, _, rest = change.strip().partition(" ")
        instr = instr.upper()
        rest = rest.strip()
        if instr == "CMD":
            config["Cmd"] = _exec_or_shell(rest)
        elif instr == "ENTRYPOINT":
            config["Entrypoint"] = _exec_or_shell(rest)
        elif instr == "ENV":
            env = {e.split("=", 1)[0]: e.split("=", 1)[1] for e in config.get("Env") or [] if "=" in e}
            env.update(_pairs(rest, "ENV"))
            config["Env"] = [f"{k}={v}" for k, v in env.items()]
        elif instr == "LABEL":
            config.setdefault("Labels", {}).update(_pairs(rest, "LABEL"))
        elif instr == "EXPOSE":
            for port in rest.split():
                if "/" not in port:
                    port += "/tcp"
                num, proto = port.split("/", 1)
                if not num.replace("-", "").isdigit() or proto not in ("tcp", "udp", "sctp"):
                    raise UserError(f"EXPOSE: invalid port {port!r}")
                config.setdefault("ExposedPorts", {})[port] = {}
        elif instr == "USER":
            config["User"] = rest
        elif instr == "WORKDIR":
            config["WorkingDir"] = rest
        elif instr == "VOLUME":
            vols = _exec_or_shell(rest) if rest.startswith("[") else rest.split()
            if vols[:2] == ["/bin/sh", "-c"]:
                vols = rest.split()
            for v in vols:
                config.setdefault("Volumes", {})[v] = {}
        elif instr == "STOPSIGNAL":
            config["StopSignal"] = rest
        elif instr == "ONBUILD":
            config.setdefault("OnBuild", []).append(rest)
        elif instr == "HEALTHCHECK":
            config["Healthcheck"] = _healthcheck(rest)
        else:
            raise UserError(f"--change: unsupported instruction {instr!r} "
                            "(CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, WORKDIR, VOLUME, STOPSIGNAL, ONBUILD, HEALTHCHECK)")
    return config


def _healthcheck(rest: str) -> dict[str, Any]:
    if rest.upper() == "NONE":
        return {"Test": ["NONE"]}
    hc: dict[str, Any] = {}
    words = rest.split(" ")
    while words and words[0].startswith("--"):
        opt, _, value = words.pop(0)[2:].partition("=")
        key = {"interval": "Interval", "timeout": "Timeout", "start-period": "StartPeriod",
               "start-interval": "StartInterval", "retries": "Retries"}.get(opt)
        if key is None:
            raise UserError(f"HEALTHCHECK: unknown option --{opt}")
        hc[key] = int(value) if key == "Retries" else _duration(value)
    rest = " ".join(words).strip()
    if not rest.upper().startswith("CMD"):
        raise UserError("HEALTHCHECK: expected CMD or NONE")
    cmd = rest[3:].strip()
    argv = _exec_or_shell(cmd)
    hc["Test"] = ["CMD", *argv] if argv[:2] != ["/bin/sh", "-c"] else ["CMD-SHELL", cmd]
    return hc
