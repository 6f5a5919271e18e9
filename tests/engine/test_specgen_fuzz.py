"""Whatever a client sends, specgen answers with the spec or one BadRequest (never another
exception, which the engine would turn into a 500 with a traceback in its log)."""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pystack.engine import specgen
from pystack.engine.api import BadRequest

CONFIG_KEYS = ["Hostname", "Domainname", "User", "Tty", "OpenStdin", "Env", "Cmd", "Entrypoint", "WorkingDir",
               "Labels", "ExposedPorts", "Volumes", "StopSignal", "StopTimeout", "Healthcheck", "Shell"]
HOST_KEYS = ["Binds", "NetworkMode", "PortBindings", "RestartPolicy", "AutoRemove", "CapAdd", "CapDrop",
             "GroupAdd", "IpcMode", "PidMode", "UTSMode", "CgroupnsMode", "OomScoreAdj", "Privileged",
             "ReadonlyRootfs", "SecurityOpt", "Tmpfs", "ShmSize", "Sysctls", "Runtime", "CpuShares", "Memory",
             "MemorySwap", "MemoryReservation", "MemorySwappiness", "NanoCpus", "CpuQuota", "CpuPeriod",
             "CpusetCpus", "CpusetMems", "PidsLimit", "Ulimits", "Devices", "DeviceCgroupRules", "Mounts",
             "Init", "Annotations", "CgroupParent", "MaskedPaths", "ReadonlyPaths", "BlkioWeight",
             "BlkioDeviceReadBps", "LogConfig", "OomKillDisable"]

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), st.floats(allow_nan=False),
                    st.text(max_size=12), st.sampled_from(["", "host", "/tmp", "a=b", "ALL", "CAP_KILL",
                                                           "c 1:3 rwm", "1-2", "none", "private", "nofile",
                                                           "seccomp=unconfined", "SIGTERM"]))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3),
    st.dictionaries(st.sampled_from(["Name", "Soft", "Hard", "Type", "Target", "Source", "Test", "Interval",
                                     "PathOnHost", "Path", "Rate", "/x", "80/tcp", "HostPort", "k"]),
                    inner, max_size=3)), max_leaves=6)


# plausible values per field (so that many bodies pass the checks and reach build_spec)
GOOD = {
    "Env": st.lists(st.sampled_from(["A=1", "PATH=/x", "B", "C="]), max_size=3),
    "Cmd": st.lists(st.sampled_from(["sh", "-c", "true"]), min_size=1, max_size=3),
    "Entrypoint": st.sampled_from([None, [""], ["/bin/sh"], "sh"]),
    "User": st.sampled_from(["", "0", "1000:100", "65534"]),
    "WorkingDir": st.sampled_from(["", "/", "/tmp"]),
    "Healthcheck": st.sampled_from([{"Test": ["NONE"]}, {"Test": ["CMD", "true"], "Interval": 10**9}]),
    "StopSignal": st.sampled_from(["SIGTERM", "9", "RTMIN+2", "QUIT"]),
    "NetworkMode": st.sampled_from(["", "default", "bridge", "none", "host"]),
    "CapAdd": st.lists(st.sampled_from(["ALL", "NET_ADMIN", "CAP_SYS_TIME", "kill"]), max_size=2),
    "CapDrop": st.lists(st.sampled_from(["ALL", "CHOWN", "CAP_NET_RAW"]), max_size=2),
    "GroupAdd": st.lists(st.sampled_from(["10", "0", 5]), max_size=2),
    "IpcMode": st.sampled_from(["", "private", "shareable", "none", "host"]),
    "PidMode": st.sampled_from(["", "host"]),
    "UTSMode": st.sampled_from(["", "host"]),
    "CgroupnsMode": st.sampled_from(["", "host", "private"]),
    "OomScoreAdj": st.integers(-1000, 1000),
    "SecurityOpt": st.lists(st.sampled_from(["no-new-privileges", "seccomp=unconfined", "apparmor=unconfined",
                                             "label=disable", "systempaths=unconfined", "no-new-privileges:false"]),
                            max_size=3),
    "Tmpfs": st.dictionaries(st.sampled_from(["/run", "/tmp", "/dev/shm"]),
                             st.sampled_from(["", "size=1m", "exec,mode=1777"]), max_size=2),
    "ShmSize": st.sampled_from([0, 1 << 20]),
    "Sysctls": st.dictionaries(st.sampled_from(["kernel.shmmax", "net.ipv4.ip_forward", "fs.mqueue.msg_max"]),
                               st.sampled_from(["1", "100"]), max_size=2),
    "Memory": st.sampled_from([0, 6 << 20, 64 << 20]),
    "MemorySwap": st.sampled_from([0, -1, 256 << 20]),
    "MemoryReservation": st.sampled_from([0, 8 << 20]),
    "MemorySwappiness": st.sampled_from([None, -1, 0, 60]),
    "NanoCpus": st.sampled_from([0, 10**8, 10**9]),
    "CpuQuota": st.sampled_from([0, -1, 50000]),
    "CpuPeriod": st.sampled_from([0, 100000]),
    "CpuShares": st.sampled_from([0, 1, 1024, 10**6]),
    "CpusetCpus": st.sampled_from(["", "0"]),
    "PidsLimit": st.sampled_from([None, -1, 0, 10]),
    "Ulimits": st.lists(st.fixed_dictionaries({"Name": st.sampled_from(["nofile", "core"]),
                                               "Soft": st.integers(-1, 100), "Hard": st.sampled_from([-1, 100])}),
                        max_size=2),
    "Devices": st.lists(st.fixed_dictionaries({"PathOnHost": st.just("/dev/null"),
                                               "PathInContainer": st.sampled_from(["", "/dev/n2"])}), max_size=1),
    "DeviceCgroupRules": st.lists(st.sampled_from(["c 1:3 rwm", "a *:* r"]), max_size=2),
    "Init": st.sampled_from([None, True, False]),
    "Privileged": st.booleans(),
    "ReadonlyRootfs": st.booleans(),
    "Annotations": st.dictionaries(st.sampled_from(["a", "b"]), st.sampled_from(["x"]), max_size=1),
    "CgroupParent": st.sampled_from(["", "mine", "/a/b"]),
    "MaskedPaths": st.sampled_from([None, [], ["/proc/kcore"]]),
}


def body_part(keys):
    return st.lists(st.sampled_from(keys), max_size=6, unique=True).flatmap(
        lambda ks: st.fixed_dictionaries({k: st.one_of(GOOD[k], GOOD[k], GOOD[k], values) if k in GOOD else values
                                          for k in ks}))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=body_part(CONFIG_KEYS), hc=body_part(HOST_KEYS))
def test_any_body_is_a_spec_or_one_bad_request(cfg, hc):
    body = {"Image": "busybox", "Cmd": ["true"], **cfg, "HostConfig": hc}
    try:
        specgen.check_create_body(body)
        merged = specgen.merge_image_config({k: v for k, v in body.items() if k != "HostConfig"},
                                            {"Env": ["PATH=/bin"], "Cmd": ["sh"]})
        specgen.build_spec("f" * 64, merged, hc, mounts=[], netns=None, files={}, cgroup_parent="pystack")
    except BadRequest:
        pass


def good_part(keys):
    ks = [k for k in keys if k in GOOD]
    return st.lists(st.sampled_from(ks), max_size=8, unique=True).flatmap(
        lambda chosen: st.fixed_dictionaries({k: GOOD[k] for k in chosen}))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=good_part(CONFIG_KEYS), hc=good_part(HOST_KEYS))
def test_plausible_bodies_build_valid_specs(cfg, hc):
    test_any_body_is_a_spec_or_one_bad_request.hypothesis.inner_test(cfg, hc)
