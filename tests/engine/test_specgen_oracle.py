"""Oracle: the Config that merge_image_config gives equals what a real dockerd shows in
`docker inspect` for the same create body over the same image (a private dockerd, Debian
docker.io, its own socket and data root; skipped when it cannot start). `docker import`
cannot set STOPSIGNAL, so an image StopSignal is covered by the unit tests only."""
from __future__ import annotations

import io
import tarfile
import urllib.parse

import pytest

from pystack.engine import specgen

pytestmark = [pytest.mark.oracle, pytest.mark.slow]

CHANGES = [
    'ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin A=image B=image',
    'ENTRYPOINT ["/bin/sh", "-c"]',
    'CMD ["echo image-cmd"]',
    'LABEL l1=image l2=image',
    'EXPOSE 80/tcp 53/udp',
    'VOLUME /data',
    'WORKDIR /srv',
    'USER nobody',
    'HEALTHCHECK --interval=5s --timeout=2s --retries=4 CMD true',
]

BODIES = [
    {},
    {"Cmd": ["echo", "mine"]},
    {"Entrypoint": ["/bin/echo"]},
    {"Entrypoint": ["/bin/echo"], "Cmd": ["a", "b"]},
    {"Entrypoint": [""], "Cmd": ["ls", "/"]},
    {"Env": ["A=mine", "NEW=1"], "Labels": {"l1": "mine", "l3": "x"}, "ExposedPorts": {"8080/tcp": {}},
     "Volumes": {"/more": {}}, "WorkingDir": "/tmp", "User": "app", "StopSignal": "SIGINT"},
    {"Healthcheck": {"Test": ["NONE"]}},
    {"Healthcheck": {"Interval": 2_000_000_000, "StartPeriod": 1_000_000_000}},
    {"Healthcheck": {"Test": ["CMD-SHELL", "exit 0"]}, "Tty": True, "OpenStdin": True},
]


@pytest.fixture(scope="module")
def dockerd(busybox_rootfs):
    from pystack.compose.dockerd import DockerdUnavailable, start_dockerd
    try:
        d = start_dockerd(pool="10.213.128.0/18", prefix="pystack-specgen-oracle")
    except DockerdUnavailable as exc:
        pytest.skip(f"no dockerd oracle: {exc}")
    try:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for entry in sorted(busybox_rootfs.iterdir()):
                if entry.name != ".complete":
                    tar.add(str(entry), arcname=entry.name)
        query = urllib.parse.urlencode([("fromSrc", "-"), ("repo", "specgen"), ("tag", "t")]
                                       + [("changes", c) for c in CHANGES])
        d.client().request("POST", "/images/create?" + query, headers={"Content-Type": "application/x-tar"},
                           raw_body=buf.getvalue())
        d.import_rootfs(busybox_rootfs, "busybox:latest")
        yield d
    finally:
        d.stop()


@pytest.mark.parametrize("extra", BODIES, ids=[str(i) for i in range(len(BODIES))])
def test_merged_config_matches_dockerd(dockerd, extra):
    client = dockerd.client()
    image_cfg = client.request("GET", "/images/specgen:t/json")["Config"]
    body = {"Image": "specgen:t", "AttachStdout": True, "AttachStderr": True, "Labels": {}, **extra,
            "HostConfig": {"NetworkMode": "none"}}
    specgen.check_create_body(body)
    cid = client.request("POST", "/containers/create", body=body)["Id"]
    try:
        want = client.request("GET", f"/containers/{cid}/json")["Config"]
    finally:
        client.request("DELETE", f"/containers/{cid}", params={"force": True})
    got = specgen.merge_image_config({k: v for k, v in body.items() if k != "HostConfig"}, image_cfg)
    for key in ("Hostname", "Image"):     # the manager's (short id; the name asked for)
        want.pop(key, None)
        got.pop(key, None)
    assert got == want


# -- the runtime spec: ours vs the config.json dockerd hands to runc ------------------------

SPEC_CASES = [
    ({}, {}),
    ({"User": "app", "Env": ["FOO=bar"], "WorkingDir": "/tmp", "Tty": True, "Hostname": "h-1"},
     {"GroupAdd": ["daemon", "50"]}),
    ({}, {"CapAdd": ["NET_ADMIN", "SYS_TIME"], "CapDrop": ["CHOWN", "MKNOD"], "SecurityOpt": ["no-new-privileges"],
          "OomScoreAdj": 100, "Ulimits": [{"Name": "nofile", "Soft": 1000, "Hard": 2000}]}),
    ({}, {"Memory": 64 << 20, "MemoryReservation": 32 << 20, "NanoCpus": 500_000_000, "CpuShares": 512,
          "PidsLimit": 77, "CpusetCpus": "0"}),
    ({}, {"Memory": 64 << 20, "MemorySwap": -1, "CpuQuota": 20000, "CpuPeriod": 50000}),
    ({}, {"ReadonlyRootfs": True, "Tmpfs": {"/run": "size=1m"}, "ShmSize": 2 << 20,
          "Sysctls": {"kernel.shmmax": "12345678"}}),
    ({}, {"IpcMode": "none", "PidMode": "host"}),
    ({}, {"Devices": [{"PathOnHost": "/dev/null", "PathInContainer": "/dev/mynull", "CgroupPermissions": "rw"}],
          "DeviceCgroupRules": ["c 42:* rmw"]}),
]


def _dockerd_spec(dockerd, cid: str) -> dict:
    import glob
    import json
    found = glob.glob(f"{dockerd.root}/exec/**/{cid}/config.json", recursive=True) \
        or glob.glob(f"/run/containerd/**/{cid}/config.json", recursive=True)
    if not found:
        pytest.skip("cannot find the bundle dockerd gave containerd")
    return json.loads(open(found[0]).read())


def _drop_zero(obj):
    """Resources without dockerd's zero/false placeholders ({"shares": 0}, disableOOMKiller false)."""
    if isinstance(obj, dict):
        out = {k: _drop_zero(v) for k, v in obj.items() if v not in (0, False, None, "", [], {})}
        return {k: v for k, v in out.items() if v not in ({}, [])}
    return obj


def _norm(spec: dict) -> dict:
    p, lx = spec["process"], spec["linux"]
    mounts = sorted((m["destination"], m["type"], tuple(m.get("options") or ()),
                     m["source"] if m["type"] != "bind" or not m["destination"].startswith("/etc/") else "")
                    for m in spec["mounts"])
    return {
        # dockerd's GroupAdd gids come out of a Go map: their order is random
        "user": {**p["user"], "additionalGids": sorted(p["user"].get("additionalGids") or [])}, "args": p["args"], "env": p["env"], "cwd": p["cwd"],
        "terminal": bool(p.get("terminal")), "caps": {k: sorted(v) for k, v in p["capabilities"].items()
                                                     if k in ("bounding", "effective", "permitted")},
        "rlimits": p.get("rlimits") or [], "nnp": bool(p.get("noNewPrivileges")), "oom": p.get("oomScoreAdj", 0),
        "hostname": spec.get("hostname"), "readonly": bool(spec["root"].get("readonly")), "mounts": mounts,
        "sysctl": lx.get("sysctl") or {},
        "resources": _drop_zero({k: v for k, v in (lx.get("resources") or {}).items() if k != "devices"}),
        "devices": lx.get("devices") or [],
        "device_rules": [{k: v for k, v in r.items() if v != -1} for r in (lx.get("resources") or {}).get("devices", [])],
        # pystack keeps the runtime's cgroup namespace (dockerd on cgroup v1: host's)
        "namespaces": sorted(n["type"] for n in lx["namespaces"] if n["type"] != "cgroup"),
        "readonlyPaths": sorted(lx.get("readonlyPaths") or []), "seccomp": "seccomp" in lx,
    }


@pytest.mark.parametrize("config,hc", SPEC_CASES, ids=[str(i) for i in range(len(SPEC_CASES))])
def test_spec_matches_dockerd(dockerd, busybox_rootfs, config, hc):
    client = dockerd.client()
    image_cfg = client.request("GET", "/images/busybox:latest/json")["Config"] or {}
    body = {"Image": "busybox:latest", "Cmd": ["sleep", "30"], **config,
            "HostConfig": {"NetworkMode": "none", **hc}}
    specgen.check_create_body(body)
    cid = client.request("POST", "/containers/create", body=body)["Id"]
    try:
        client.request("POST", f"/containers/{cid}/start")
        theirs = _dockerd_spec(dockerd, cid)
    finally:
        client.request("DELETE", f"/containers/{cid}", params={"force": True})
    merged = specgen.merge_image_config({k: v for k, v in body.items() if k != "HostConfig"}, image_cfg)
    files = {d: f"/x/{d.rsplit('/', 1)[1]}" for d in ("/etc/resolv.conf", "/etc/hostname", "/etc/hosts")}
    ours = specgen.build_spec(cid, merged, body["HostConfig"], mounts=[], netns=None, files=files,
                              cgroup_parent="pystack", rootfs=str(busybox_rootfs))
    a, b = _norm(ours), _norm(theirs)
    # dockerd's masked paths may be an older list; ours holds all of them
    assert set(theirs["linux"].get("maskedPaths") or []) <= set(ours["linux"].get("maskedPaths") or [])
    diff = {k: (a[k], b[k]) for k in a if a[k] != b[k]}
    assert not diff, "\n".join(f"{k}:\n  ours:    {x}\n  dockerd: {y}" for k, (x, y) in diff.items())
