"""The create bodies pystack's compose front sends (pystack.compose.convert, Docker Compose's
conversions) pass check_create_body and build into a valid spec: the engine refuses nothing
a compose file can ask for that pystack implements."""
from __future__ import annotations

import pytest

from pystack.engine import specgen
from pystack.engine.api import BadRequest

convert = pytest.importorskip("pystack.compose.convert")
ComposeProject = pytest.importorskip("pystack.compose.project").ComposeProject

SERVICES = {
    "rich": {
        "image": "busybox", "command": ["sleep", "1"], "environment": {"A": "1"}, "user": "app",
        "working_dir": "/srv", "expose": ["3000"], "tmpfs": ["/run", "/cache:size=1m"],
        "healthcheck": {"test": ["CMD-SHELL", "true"], "interval": "1s", "timeout": "2s", "retries": 2,
                        "start_period": "1s"},
        "restart": "unless-stopped", "stop_signal": "SIGUSR1", "stop_grace_period": "3s",
        "mem_limit": "67108864", "mem_reservation": "33554432", "cpus": 0.5, "cpu_shares": 512,
        "cpuset": "0", "pids_limit": 50, "ulimits": {"nofile": {"soft": 100, "hard": 200}, "nproc": 50},
        "cap_add": ["NET_ADMIN"], "cap_drop": ["MKNOD"], "security_opt": ["no-new-privileges:true"],
        "sysctls": {"net.core.somaxconn": "1024"}, "read_only": True, "shm_size": "2m", "init": True,
        "group_add": ["daemon"], "oom_score_adj": 100, "hostname": "rich-host", "domainname": "example.org",
        "tty": True, "stdin_open": True, "labels": {"x": "y"}, "devices": ["/dev/null:/dev/n2:rw"],
    },
    "hostish": {"image": "busybox", "command": "true", "network_mode": "host", "pid": "host", "ipc": "host",
                "privileged": True},
    "plain": {"image": "busybox", "entrypoint": ["/bin/sh", "-c"], "command": "echo hi", "network_mode": "none",
              "healthcheck": {"disable": True}},
}


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_compose_bodies_pass_and_build(service, busybox_rootfs):
    svc = SERVICES[service]
    proj = ComposeProject(name="p", working_dir="/w", config_files=["/w/compose.yaml"],
                          config={"name": "p", "services": SERVICES})
    try:
        spec = convert.build_spec(proj, service, svc, name=f"p-{service}-1", labels={}, containers={},
                                  image="busybox")
    except Exception as exc:  # noqa: BLE001 - the converter's own limits are not ours to test
        pytest.skip(f"the compose converter does not take this service: {exc}")
    body = spec.body
    specgen.check_create_body(body)
    hc = body.get("HostConfig") or {}
    merged = specgen.merge_image_config({k: v for k, v in body.items() if k not in ("HostConfig", "NetworkingConfig")},
                                        {"Env": ["PATH=/bin"], "Cmd": ["sh"]})
    try:
        oci = specgen.build_spec("c" * 64, merged, hc, mounts=[], netns=None if hc.get("NetworkMode") == "host"
                                 else "/run/netns/x", files={}, cgroup_parent="pystack", rootfs=str(busybox_rootfs))
    except BadRequest as exc:
        pytest.fail(f"{service}: {exc}")
    if service == "rich":
        assert oci["root"]["readonly"] and oci["process"]["terminal"]
        assert oci["annotations"]["org.pystack.init"] == "true"
        assert oci["linux"]["resources"]["pids"] == {"limit": 50}
        assert oci["linux"]["sysctl"]["net.core.somaxconn"] == "1024"
        assert oci["process"]["noNewPrivileges"] is True
        assert oci["hostname"] == "rich-host" and oci["domainname"] == "example.org"
    if service == "hostish":
        types = {n["type"] for n in oci["linux"]["namespaces"]}
        assert not types & {"network", "pid", "ipc"}
