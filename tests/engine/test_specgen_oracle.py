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
