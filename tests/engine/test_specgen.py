"""Unit tests of pystack.engine.specgen: check_create_body, merge_image_config, build_spec."""
from __future__ import annotations

import pytest

from pystack.engine import specgen
from pystack.engine.api import BadRequest

CID = "0123456789ab" + "c" * 52


def merged(**config):
    return specgen.merge_image_config({"Image": "busybox", **config}, {"Cmd": ["sh"], "Env": ["PATH=/bin"]})


def build(config=None, hc=None, **kw):
    cfg = specgen.merge_image_config({"Image": "busybox", **(config or {})},
                                     {"Cmd": ["sh"], "Env": ["PATH=/usr/bin:/bin"]})
    kw.setdefault("mounts", [])
    kw.setdefault("netns", "/run/netns/x")
    kw.setdefault("files", {})
    kw.setdefault("cgroup_parent", "pystack")
    return specgen.build_spec(CID, cfg, hc or {}, **kw)


def bad(body, *fragments):
    with pytest.raises(BadRequest) as exc:
        specgen.check_create_body(body)
    for f in fragments:
        assert f in str(exc.value), str(exc.value)
    return str(exc.value)


# -- merge -----------------------------------------------------------------------------

def test_merge_env_by_key_container_wins():
    out = specgen.merge_image_config({"Env": ["A=1", "PATH=/x"]}, {"Env": ["PATH=/bin", "B=2"]})
    assert out["Env"] == ["A=1", "PATH=/x", "B=2"]


def test_merge_cmd_entrypoint_rules():
    img = {"Entrypoint": ["/ep"], "Cmd": ["default"]}
    assert specgen.merge_image_config({}, img)["Entrypoint"] == ["/ep"]
    assert specgen.merge_image_config({}, img)["Cmd"] == ["default"]
    out = specgen.merge_image_config({"Cmd": ["x"]}, img)
    assert (out["Entrypoint"], out["Cmd"]) == (["/ep"], ["x"])
    out = specgen.merge_image_config({"Entrypoint": ["/other"]}, img)
    assert (out["Entrypoint"], out["Cmd"]) == (["/other"], None)
    out = specgen.merge_image_config({"Entrypoint": [""], "Cmd": ["echo"]}, img)
    assert (out["Entrypoint"], out["Cmd"]) == (None, ["echo"])
    out = specgen.merge_image_config({"Entrypoint": [""]}, img)
    assert (out["Entrypoint"], out["Cmd"]) == (None, None)
    out = specgen.merge_image_config({"Cmd": "echo hi"}, {})
    assert out["Cmd"] == ["echo hi"]


def test_merge_scalars_labels_ports_volumes():
    img = {"WorkingDir": "/w", "User": "app", "Labels": {"a": "img", "b": "img"},
           "ExposedPorts": {"80/tcp": {}}, "Volumes": {"/data": {}}, "StopSignal": "SIGQUIT"}
    out = specgen.merge_image_config({}, img)
    assert (out["WorkingDir"], out["User"], out["StopSignal"]) == ("/w", "app", "SIGQUIT")
    out = specgen.merge_image_config({"WorkingDir": "/c", "User": "1:1", "Labels": {"a": "c"},
                                      "ExposedPorts": {"90/udp": {}}, "Volumes": {"/v": {}},
                                      "StopSignal": "SIGINT"}, img)
    assert (out["WorkingDir"], out["User"], out["StopSignal"]) == ("/c", "1:1", "SIGINT")
    assert out["Labels"] == {"a": "c", "b": "img"}
    assert out["ExposedPorts"] == {"80/tcp": {}, "90/udp": {}}
    assert out["Volumes"] == {"/data": {}, "/v": {}}
    out = specgen.merge_image_config({}, {})
    assert "StopSignal" not in out and "ExposedPorts" not in out
    assert out["Labels"] == {} and out["Volumes"] is None and out["WorkingDir"] == ""


def test_merge_healthcheck():
    img = {"Healthcheck": {"Test": ["CMD", "true"], "Interval": 5_000_000_000, "Retries": 2}}
    assert specgen.merge_image_config({}, img)["Healthcheck"]["Test"] == ["CMD", "true"]
    out = specgen.merge_image_config({"Healthcheck": {"Test": ["NONE"]}}, img)
    assert out["Healthcheck"]["Test"] == ["NONE"]
    out = specgen.merge_image_config({"Healthcheck": {"Timeout": 3_000_000_000}}, img)
    assert out["Healthcheck"] == {"Test": ["CMD", "true"], "Interval": 5_000_000_000, "Retries": 2,
                                  "Timeout": 3_000_000_000}


# -- check -----------------------------------------------------------------------------

def test_check_accepts_docker_py_and_cli_defaults():
    specgen.check_create_body({
        "Hostname": "", "Domainname": "", "User": "", "AttachStdin": False, "AttachStdout": True,
        "AttachStderr": True, "Tty": False, "OpenStdin": False, "StdinOnce": False, "Env": [],
        "Cmd": ["echo"], "Image": "busybox", "Volumes": {}, "WorkingDir": "", "Entrypoint": None,
        "OnBuild": None, "Labels": {}, "NetworkDisabled": False, "MacAddress": "",
        "HostConfig": {"Binds": None, "ContainerIDFile": "", "LogConfig": {"Type": "", "Config": {}},
                       "NetworkMode": "default", "PortBindings": {}, "RestartPolicy": {"Name": "no",
                       "MaximumRetryCount": 0}, "AutoRemove": False, "VolumeDriver": "", "VolumesFrom": None,
                       "ConsoleSize": [24, 80], "CapAdd": None, "CapDrop": None, "CgroupnsMode": "",
                       "Dns": [], "DnsOptions": [], "DnsSearch": [], "ExtraHosts": None, "GroupAdd": None,
                       "IpcMode": "", "Cgroup": "", "Links": None, "OomScoreAdj": 0, "PidMode": "",
                       "Privileged": False, "PublishAllPorts": False, "ReadonlyRootfs": False,
                       "SecurityOpt": None, "UTSMode": "", "UsernsMode": "", "ShmSize": 0,
                       "Isolation": "", "CpuShares": 0, "Memory": 0, "NanoCpus": 0, "CgroupParent": "",
                       "BlkioWeight": 0, "BlkioWeightDevice": [], "BlkioDeviceReadBps": [],
                       "BlkioDeviceWriteBps": [], "BlkioDeviceReadIOps": [], "BlkioDeviceWriteIOps": [],
                       "CpuPeriod": 0, "CpuQuota": 0, "CpuRealtimePeriod": 0, "CpuRealtimeRuntime": 0,
                       "CpusetCpus": "", "CpusetMems": "", "Devices": [], "DeviceCgroupRules": None,
                       "DeviceRequests": None, "MemoryReservation": 0, "MemorySwap": 0,
                       "MemorySwappiness": None, "OomKillDisable": False, "PidsLimit": None,
                       "Ulimits": None, "CpuCount": 0, "CpuPercent": 0, "IOMaximumIOps": 0,
                       "IOMaximumBandwidth": 0, "MaskedPaths": None, "ReadonlyPaths": None},
        "NetworkingConfig": {"EndpointsConfig": {}},
    })


@pytest.mark.parametrize("hc,fragment", [
    ({"Runtime": "nvidia"}, "HostConfig.Runtime: not supported by pystack"),
    ({"Isolation": "hyperv"}, "HostConfig.Isolation: not supported"),
    ({"DeviceRequests": [{"Count": -1}]}, "HostConfig.DeviceRequests: not supported"),
    ({"StorageOpt": {"size": "1G"}}, "HostConfig.StorageOpt: not supported"),
    ({"Memory": 1000}, "Minimum memory limit allowed is 6MB"),
    ({"Memory": -5}, "HostConfig.Memory"),
    ({"MemorySwap": 100 << 20}, "You should always set the Memory limit"),
    ({"Memory": 100 << 20, "MemorySwap": 50 << 20}, "Minimum memoryswap limit should be larger"),
    ({"MemorySwappiness": 101}, "valid memory swappiness range is 0-100"),
    ({"NanoCpus": 1_000_000_000, "CpuQuota": 50000}, "Nano CPUs and CPU Quota cannot both be set"),
    ({"NanoCpus": 1000 * 1_000_000_000}, "Range of CPUs is from 0.01"),
    ({"CpuPeriod": 10}, "CPU cfs period can not be less than 1ms"),
    ({"CpusetCpus": "abc"}, "Invalid value abc for cpuset cpus"),
    ({"CpusetCpus": "999"}, "Requested CPUs are not available"),
    ({"OomScoreAdj": 2000}, "range for oom score adj is [-1000, 1000]"),
    ({"ShmSize": -1}, "SHM size can not be less than 0"),
    ({"RestartPolicy": {"Name": "sometimes"}}, "invalid restart policy 'sometimes'"),
    ({"RestartPolicy": {"Name": "always", "MaximumRetryCount": 3}}, "cannot be used with restart policy"),
    ({"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": -1}}, "cannot be negative"),
    ({"AutoRemove": True, "RestartPolicy": {"Name": "always"}}, "AutoRemove"),
    ({"CapAdd": ["CAP_NOPE"]}, "unknown capability: 'CAP_NOPE'"),
    ({"SecurityOpt": ["bogus"]}, "invalid --security-opt 1"),
    ({"SecurityOpt": ["foo=bar"]}, "invalid --security-opt 2"),
    ({"SecurityOpt": ["seccomp={not json"]}, "not valid JSON"),
    ({"IpcMode": "weird"}, "invalid IPC mode: weird"),
    ({"PidMode": "container:abc"}, "HostConfig.PidMode"),
    ({"Mounts": [{"Type": "nfs", "Target": "/x"}]}, 'invalid mount config for type "nfs": mount type unknown'),
    ({"Mounts": [{"Type": "bind", "Target": "/x"}]}, "field Source must not be empty"),
    ({"Mounts": [{"Type": "volume", "Target": "rel"}]}, "mount path must be absolute"),
    ({"PortBindings": {"80/xyz": []}}, "invalid proto: xyz"),
    ({"PortBindings": {"99999/tcp": []}}, "invalid port specification"),
    ({"PortBindings": {"80/tcp": [{"HostPort": "abc"}]}}, "invalid port specification"),
    ({"Ulimits": [{"Name": "nofile", "Soft": 10, "Hard": 5}]}, "soft limit must be less than or equal"),
    ({"Ulimits": [{"Name": "bogus", "Soft": 1, "Hard": 1}]}, "invalid ulimit type: bogus"),
    ({"Sysctls": {"kernel.panic": "1"}}, "kernel.panic"),
    ({"NetworkMode": "host", "Sysctls": {"net.ipv4.ip_forward": "1"}}, "not allowed in host network namespace"),
    ({"Devices": [{"PathOnHost": "/dev/nonexistent-xyz"}]}, "error gathering device information"),
    ({"LogConfig": {"Type": "syslog"}}, "HostConfig.LogConfig.Type"),
    ({"PidsLimit": -7}, "HostConfig.PidsLimit"),
])
def test_check_rejects(hc, fragment):
    bad({"Image": "busybox", "HostConfig": hc}, fragment)


@pytest.mark.parametrize("body,fragment", [
    ({"Healthcheck": {"Test": ["CMD", "true"], "Interval": 5}}, "Interval in Healthcheck cannot be less than 1ms"),
    ({"Healthcheck": {"Test": ["CMD"], "Timeout": -1}}, "Config.Healthcheck.Test"),
    ({"Healthcheck": {"Test": ["CMD", "x"], "Retries": -1}}, "Retries in Healthcheck cannot be negative"),
    ({"Healthcheck": {"Test": ["WHAT", "x"]}}, "unknown test type"),
    ({"StopSignal": "SIGBOGUS"}, "Invalid signal: SIGBOGUS"),
    ({"Env": ["=x"]}, "Config.Env"),
    ({"Cmd": [1, 2]}, "Config.Cmd"),
    ({"WorkingDir": "rel"}, "needs to be an absolute path"),
    ({"ExposedPorts": {"abc/tcp": {}}}, "invalid port specification"),
    ({"NetworkDisabled": True}, "Config.NetworkDisabled: not supported"),
])
def test_check_rejects_config(body, fragment):
    bad({"Image": "busybox", **body}, fragment)


def test_check_body_not_object():
    with pytest.raises(BadRequest):
        specgen.check_create_body([1])
    bad({"HostConfig": []}, "HostConfig")


# -- build -----------------------------------------------------------------------------

def test_build_process_basics():
    sp = build({"Cmd": ["echo", "hi"], "Entrypoint": ["/bin/env"], "Env": ["A=1"], "WorkingDir": "/tmp",
                "Tty": True, "Hostname": "h1", "Domainname": "example.org", "User": "7:8"})
    p = sp["process"]
    assert p["args"] == ["/bin/env", "echo", "hi"]
    assert p["env"] == ["PATH=/usr/bin:/bin", "HOSTNAME=h1", "TERM=xterm", "A=1"]
    assert (p["cwd"], p["terminal"], p["user"]) == ("/tmp", True, {"uid": 7, "gid": 8, "additionalGids": [8]})
    assert (sp["hostname"], sp["domainname"]) == ("h1", "example.org")
    assert sp["root"] == {"path": "rootfs", "readonly": False}
    assert sp["linux"]["cgroupsPath"] == f"/pystack/{CID}"
    assert "seccomp" in sp["linux"]


def test_build_default_hostname_is_short_id():
    sp = build()
    assert sp["hostname"] == CID[:12] and f"HOSTNAME={CID[:12]}" in sp["process"]["env"]


def test_build_user_names_from_rootfs(busybox_rootfs, tmp_path):
    sp = build({"User": "app"}, {"GroupAdd": ["daemon", "50"]}, rootfs=str(busybox_rootfs))
    assert sp["process"]["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [1000, 100, 1, 50]}
    sp = build({"User": "nobody:users"}, rootfs=[str(tmp_path), str(busybox_rootfs)])
    assert sp["process"]["user"] == {"uid": 65534, "gid": 100, "additionalGids": [100]}
    assert build(rootfs=str(busybox_rootfs))["process"]["user"] == {"uid": 0, "gid": 0, "additionalGids": [0]}
    with pytest.raises(BadRequest, match="unable to find user ghost"):
        build({"User": "ghost"}, rootfs=str(busybox_rootfs))


def test_build_network_namespaces():
    ns = lambda sp: {n["type"]: n.get("path") for n in sp["linux"]["namespaces"]}  # noqa: E731
    assert ns(build(netns="/run/netns/abc"))["network"] == "/run/netns/abc"
    sp = build(hc={"NetworkMode": "host"}, netns=None)
    assert "network" not in ns(sp)
    assert not any(k.startswith("net.") for k in sp["linux"].get("sysctl", {}))
    sp = build(hc={"NetworkMode": "none"}, netns=None)
    assert ns(sp)["network"] is None and "network" in ns(sp)
    sp = build(hc={"PidMode": "host", "IpcMode": "host", "UTSMode": "host", "CgroupnsMode": "host"})
    assert set(ns(sp)) == {"network", "mount"}
    assert "hostname" not in sp
    shm = [m for m in sp["mounts"] if m["destination"] == "/dev/shm"][0]
    assert shm["type"] == "bind" and shm["source"] == "/dev/shm"


def test_build_privileged_and_caps():
    sp = build(hc={"Privileged": True})
    assert "CAP_SYS_ADMIN" in sp["process"]["capabilities"]["bounding"]
    assert "seccomp" not in sp["linux"] and sp["linux"]["maskedPaths"] == []
    sp = build(hc={"CapAdd": ["NET_ADMIN"], "CapDrop": ["CAP_CHOWN"]})
    caps = sp["process"]["capabilities"]
    assert "CAP_NET_ADMIN" in caps["bounding"] and "CAP_CHOWN" not in caps["effective"]
    sp = build(hc={"CapDrop": ["ALL"], "CapAdd": ["KILL"]})
    assert sp["process"]["capabilities"]["permitted"] == ["CAP_KILL"]


def test_build_security_opts():
    sp = build(hc={"SecurityOpt": ["no-new-privileges", "apparmor=unconfined", "label=disable",
                                   "seccomp=unconfined", "systempaths=unconfined"]})
    assert sp["process"]["noNewPrivileges"] is True
    assert "seccomp" not in sp["linux"]
    assert sp["linux"]["maskedPaths"] == [] and sp["linux"]["readonlyPaths"] == []
    prof = '{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}'
    sp = build(hc={"SecurityOpt": ["seccomp=" + prof]})
    assert sp["linux"]["seccomp"]["defaultAction"] == "SCMP_ACT_ALLOW"


def test_build_resources():
    sp = build(hc={"Memory": 64 << 20, "MemoryReservation": 32 << 20, "NanoCpus": 1_500_000_000,
                   "CpuShares": 512, "CpusetCpus": "0", "PidsLimit": 30, "MemorySwappiness": 10,
                   "OomKillDisable": True, "BlkioWeight": 300})
    r = sp["linux"]["resources"]
    assert r["memory"]["limit"] == 64 << 20 and r["memory"]["reservation"] == 32 << 20
    assert r["memory"]["swappiness"] == 10 and r["memory"]["disableOOMKiller"] is True
    assert r["cpu"] == {"period": 100000, "quota": 150000, "shares": 512, "cpus": "0"}
    assert r["pids"] == {"limit": 30}
    assert r["blockIO"] == {"weight": 300}
    r = build(hc={"CpuQuota": 20000, "CpuPeriod": 50000, "PidsLimit": -1})["linux"]["resources"]
    assert r["cpu"] == {"quota": 20000, "period": 50000} and "pids" not in r


def test_build_limits_sysctls_oom():
    sp = build(hc={"Ulimits": [{"Name": "nofile", "Soft": 100, "Hard": 200}], "OomScoreAdj": 300,
                   "Sysctls": {"net.ipv4.ip_forward": "1", "kernel.shmmax": "1000000"}})
    assert sp["process"]["rlimits"] == [{"type": "RLIMIT_NOFILE", "hard": 200, "soft": 100}]
    assert sp["process"]["oomScoreAdj"] == 300
    assert sp["linux"]["sysctl"]["net.ipv4.ip_forward"] == "1"
    assert sp["linux"]["sysctl"]["kernel.shmmax"] == "1000000"


def test_build_mounts_files_tmpfs_shm():
    vol = {"destination": "/data", "type": "bind", "source": "/tmp", "options": ["rbind"]}
    sp = build(hc={"Tmpfs": {"/run": "size=1m,exec", "/dev/shm": ""}, "ShmSize": 1 << 20, "ReadonlyRootfs": True},
               mounts=[vol], files={"/etc/hosts": "/x/hosts", "/etc/resolv.conf": "/x/resolv"})
    by = {m["destination"]: m for m in sp["mounts"]}
    assert sp["root"]["readonly"] is True
    assert by["/run"]["type"] == "tmpfs" and by["/run"]["options"] == ["nosuid", "nodev", "rprivate", "size=1m"]
    assert by["/data"] == vol
    assert by["/etc/hosts"]["source"] == "/x/hosts" and "ro" in by["/etc/hosts"]["options"]
    # the user's /dev/shm replaces the default one
    assert [m["destination"] for m in sp["mounts"]].count("/dev/shm") == 1
    assert by["/dev/shm"]["source"] == "tmpfs" and "noexec" in by["/dev/shm"]["options"]
    shm = [m for m in build(hc={"ShmSize": 1 << 20})["mounts"] if m["destination"] == "/dev/shm"][0]
    assert f"size={1 << 20}" in shm["options"]
    assert not [m for m in build(hc={"IpcMode": "none"})["mounts"] if m["destination"] == "/dev/shm"]


def test_build_annotations_devices():
    sp = build({"StopSignal": "SIGUSR1"}, {"Init": True, "Annotations": {"x": "y"},
                                            "Devices": [{"PathOnHost": "/dev/null", "PathInContainer": "/dev/mynull",
                                                         "CgroupPermissions": "rw"}],
                                            "DeviceCgroupRules": ["c 42:* rmw"]})
    assert sp["annotations"] == {"x": "y", "org.pystack.init": "true",
                                 "org.opencontainers.image.stopSignal": "SIGUSR1"}
    assert sp["linux"]["devices"][0]["path"] == "/dev/mynull"
    assert sp["linux"]["devices"][0]["major"] == 1 and sp["linux"]["devices"][0]["minor"] == 3
    rules = sp["linux"]["resources"]["devices"]
    assert {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"} in rules
    assert {"allow": True, "type": "c", "major": 42, "access": "rmw"} in rules


def test_build_cgroup_parent():
    assert build(cgroup_parent="pystack-x")["linux"]["cgroupsPath"] == f"/pystack-x/{CID}"
    assert build(hc={"CgroupParent": "/mine/sub"})["linux"]["cgroupsPath"] == f"/mine/sub/{CID}"


def test_build_no_command():
    with pytest.raises(BadRequest, match="No command specified"):
        specgen.build_spec(CID, {"Cmd": None}, {}, mounts=[], netns=None, files={}, cgroup_parent="p")


def test_check_hostname():
    specgen.check_create_body({"Image": "b", "Hostname": "my_host.example-1", "Domainname": "example.org"})
    bad({"Image": "b", "Hostname": "a" * 65}, "Config.Hostname: invalid hostname format")
    bad({"Image": "b", "Hostname": "bad host"}, "invalid hostname format")
    bad({"Image": "b", "Domainname": "x/y"}, "Config.Domainname")


def test_seccomp_profile_path_refused_and_env_unset():
    bad({"Image": "b", "HostConfig": {"SecurityOpt": ["seccomp=/etc/shadow"]}}, "not a file path")
    specgen.check_create_body({"Image": "b", "HostConfig": {"SecurityOpt": ["seccomp=builtin", "seccomp:unconfined"]}})
    sp = build({"Env": ["HOSTNAME", "X=1"]})
    assert sp["process"]["env"] == ["PATH=/usr/bin:/bin", "X=1"]


def test_ports_with_host_or_container_network():
    ports = {"PortBindings": {"80/tcp": [{"HostPort": "8080"}]}}
    specgen.check_create_body({"Image": "b", "HostConfig": {"NetworkMode": "host", **ports}})
    bad({"Image": "b", "HostConfig": {"NetworkMode": "container:abc", **ports}},
        "conflicting options: port publishing and the container type network mode")
    bad({"Image": "b", "Hostname": "x", "HostConfig": {"NetworkMode": "container:abc"}},
        "conflicting options: hostname and the network mode")
    bad({"Image": "b", "HostConfig": {"NetworkMode": "container:abc", "Dns": ["1.1.1.1"]}},
        "conflicting options: dns and the network mode")
    bad({"Image": "b", "ExposedPorts": {"80/tcp": {}}, "HostConfig": {"NetworkMode": "container:abc"}},
        "port exposing")
