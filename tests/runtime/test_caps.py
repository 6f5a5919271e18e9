"""Capabilities applied for real in a child process, read back from /proc/<pid>/status."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pystack.runtime import caps

CHILD = r"""
import json, os, sys
from pystack.runtime import caps
spec = json.loads(sys.argv[1])
uid = spec.pop("uid", None)
execv = spec.pop("exec", False)
sets = caps.CapSets.from_spec(spec)
def change_user():
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
caps.apply_all(sets, change_user if uid is not None else None)
if execv:
    os.execv("/bin/cat", ["cat", "/proc/self/status"])
print(json.dumps(caps.read_status()))
"""


def run_child(spec: dict) -> dict[str, int]:
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(spec)],
                         capture_output=True, text=True, check=True).stdout
    if spec.get("exec"):
        return {line.split(":")[0]: int(line.split(":")[1], 16)
                for line in out.splitlines() if line.startswith("Cap")}
    return json.loads(out)


def test_names_and_masks() -> None:
    assert caps.CAPABILITIES[40] == "CAP_CHECKPOINT_RESTORE"
    assert caps.number("net_admin") == 12 == caps.number("CAP_NET_ADMIN")
    assert caps.normalize("sys_admin") == "CAP_SYS_ADMIN"
    assert not caps.is_known("CAP_FLY")
    assert len(caps.DOCKER_DEFAULT) == 14
    m = caps.to_mask(["CAP_KILL", "chown"])
    assert m == (1 << 5) | 1
    assert caps.from_mask(m) == ["CAP_CHOWN", "CAP_KILL"]
    assert len(caps.all_caps()) == caps.last_cap() + 1


def test_docker_default_applied_in_child() -> None:
    d = list(caps.DOCKER_DEFAULT)
    st = run_child({"bounding": d, "effective": d, "permitted": d})
    want = caps.to_mask(d)
    assert st["CapBnd"] == want
    assert st["CapEff"] == want
    assert st["CapPrm"] == want
    assert st["CapInh"] == 0 and st["CapAmb"] == 0
    assert caps.number("CAP_SYS_ADMIN") not in [i for i in range(41) if want >> i & 1]


def test_caps_kept_across_setuid() -> None:
    d = ["CAP_NET_BIND_SERVICE", "CAP_KILL"]
    st = run_child({"bounding": d, "effective": d, "permitted": d, "uid": 1000})
    assert st["CapEff"] == caps.to_mask(d)
    assert st["CapBnd"] == caps.to_mask(d)


def test_ambient_survives_exec_as_non_root() -> None:
    d = ["CAP_NET_BIND_SERVICE"]
    st = run_child({"bounding": d, "effective": d, "permitted": d, "inheritable": d,
                    "ambient": d, "uid": 1000, "exec": True})
    assert st["CapAmb"] == caps.to_mask(d)
    assert st["CapEff"] == caps.to_mask(d)


def test_without_ambient_non_root_exec_has_no_caps() -> None:
    d = ["CAP_NET_BIND_SERVICE"]
    st = run_child({"bounding": d, "effective": d, "permitted": d, "uid": 1000, "exec": True})
    assert st["CapEff"] == 0
    assert st["CapBnd"] == caps.to_mask(d)


def test_empty_sets_drop_everything() -> None:
    st = run_child({})
    assert st == {"CapInh": 0, "CapPrm": 0, "CapEff": 0, "CapBnd": 0, "CapAmb": 0}


def test_tweak_as_docker() -> None:
    from pystack.errors import UserError
    base = list(caps.DOCKER_DEFAULT)
    out = caps.tweak(base, add=["net_admin"], drop=["CAP_MKNOD", "kill"])
    assert "CAP_NET_ADMIN" in out and "CAP_MKNOD" not in out and "CAP_KILL" not in out
    assert len(out) == 13
    assert caps.tweak(base, drop=["ALL"], add=["NET_BIND_SERVICE"]) == ["CAP_NET_BIND_SERVICE"]
    every = caps.tweak(base, add=["ALL"], drop=["SYS_ADMIN"])
    assert len(every) == caps.last_cap() and "CAP_SYS_ADMIN" not in every
    with pytest.raises(UserError, match="cap_add: unknown capability: 'FLY'"):
        caps.tweak(base, add=["FLY"])
