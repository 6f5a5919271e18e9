"""Docker itself as the oracle: the same mounts made by a real dockerd (Debian's docker.io)
and by pystack's planner under runc must look the same inside the container.

The dockerd gets its own socket, data root, exec root, pid file and cgroup parent, no
bridge, no iptables and no ip_forward change, and is stopped in teardown.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from pystack.volumes.planner import plan_mounts

pytestmark = [pytest.mark.oracle, pytest.mark.slow]


class Dockerd:
    def __init__(self, base: Path, run: Path, tag: str) -> None:
        self.base, self.run, self.tag = base, run, tag
        self.sock = run / "docker.sock"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.run.mkdir(parents=True)
        log = open(self.base / "dockerd.log", "w")
        self.proc = subprocess.Popen(
            ["dockerd", "--host", f"unix://{self.sock}", "--data-root", str(self.base / "data"),
             "--exec-root", str(self.run / "exec"), "--pidfile", str(self.run / "pid"),
             "--iptables=false", "--ip6tables=false", "--ip-forward=false", "--ip-masq=false", "--bridge=none",
             "--exec-opt", "native.cgroupdriver=cgroupfs", "--cgroup-parent", self.tag,
             "--containerd-namespace", self.tag, "--containerd-plugins-namespace", f"{self.tag}-p"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dockerd exited: {(self.base / 'dockerd.log').read_text()[-2000:]}")
            if self.docker("version", check=False).returncode == 0:
                return
            time.sleep(0.2)
        raise RuntimeError("dockerd did not come up in 60 s")

    def docker(self, *args: str, check: bool = True, input: bytes | None = None) -> subprocess.CompletedProcess:
        p = subprocess.run(["docker", "-H", f"unix://{self.sock}", *args], capture_output=True, input=input,
                           timeout=120)
        if check and p.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)}: {p.stderr.decode()}")
        return p

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            for cid in self.docker("ps", "-aq", check=False).stdout.decode().split():
                self.docker("rm", "-f", "-v", cid, check=False)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for ctrl in Path("/sys/fs/cgroup").iterdir():
            d = ctrl / self.tag
            if d.is_dir():
                for sub in sorted(d.rglob("*"), reverse=True):
                    if sub.is_dir():
                        sub.rmdir()
                d.rmdir()
        shutil.rmtree(self.run, ignore_errors=True)


@pytest.fixture(scope="module")
def dockerd(tmp_path_factory, busybox_rootfs):
    if shutil.which("dockerd") is None or shutil.which("docker") is None:
        pytest.skip("docker.io not installed (scripts/install.sh installs it)")
    tag = f"pstv{uuid.uuid4().hex[:6]}"
    base = tmp_path_factory.mktemp("dockerd")
    d = Dockerd(base, Path("/run") / tag, tag)
    try:
        d.start()
        image = base / "image"
        shutil.copytree(busybox_rootfs, image, symlinks=True)
        (image / "srv/app/sub").mkdir(parents=True)
        (image / "srv/app/config.ini").write_text("[app]\n")
        (image / "srv/app/sub/x").write_text("x\n")
        os.chown(image / "srv/app", 1000, 1000)
        os.chmod(image / "srv/app", 0o750)
        tar = subprocess.run(["tar", "-C", str(image), "-c", "."], capture_output=True, check=True).stdout
        d.docker("import", "-", f"{tag}:latest", input=tar)
        d.image, d.image_dir = f"{tag}:latest", image
        yield d
    finally:
        d.stop()
        leaked = [line.split()[4] for line in open("/proc/self/mountinfo") if str(base) in line or tag in line]
        assert not leaked, f"dockerd left mounts: {leaked}"


def _mount_line(out: str, dest: str) -> tuple[str, set[str]]:
    for line in out.splitlines():
        f = line.split()
        if len(f) >= 4 and f[1] == dest:
            return f[2], set(f[3].split(","))
    raise AssertionError(f"{dest} not mounted in: {out}")


def docker_run(dockerd, *args: str, script: str) -> str:
    return dockerd.docker("run", "--rm", "--network", "none", *args, dockerd.image, "sh", "-c", script).stdout.decode()


def ours(runc, store, tmp_path, dockerd, script: str, cid: str, **kw) -> str:
    with plan_mounts(cid, store=store, pin_root=tmp_path / "pins", image_rootfs=dockerd.image_dir, **kw) as plan:
        return runc.run(list(plan), script, image=dockerd.image_dir).stdout


def test_tmpfs_options_match_docker(dockerd, runc, store, tmp_path, no_leaks) -> None:
    script = "grep -E ' /t[12] ' /proc/mounts; stat -c %a /t1 /t2"
    theirs = docker_run(dockerd, "--tmpfs", "/t1:size=1m,mode=1770",
                        "--mount", "type=tmpfs,dst=/t2,tmpfs-size=2097152,tmpfs-mode=1777", script=script)
    mine = ours(runc, store, tmp_path, dockerd, script, "c1", tmpfs={"/t1": "size=1m,mode=1770"},
                mounts=[{"Type": "tmpfs", "Target": "/t2", "TmpfsOptions": {"SizeBytes": 2097152, "Mode": 0o1777}}])
    for dest in ("/t1", "/t2"):
        assert _mount_line(mine, dest) == _mount_line(theirs, dest)
    assert mine.splitlines()[-2:] == theirs.splitlines()[-2:]
    no_leaks()


def test_copy_up_nocopy_and_bind_match_docker(dockerd, runc, store, tmp_path, no_leaks) -> None:
    host = tmp_path / "host"
    host.mkdir()
    (host / "f").write_text("host\n")
    script = ("stat -c '%u %g %a' /srv/app; ls -ln /srv/app | awk '{print $1, $3, $4, $5, $NF}';"
              "ls -A /empty | wc -l; grep ' /h ' /proc/mounts | cut -d' ' -f3; "
              "grep ' /h ' /proc/mounts | cut -d' ' -f4 | tr , '\\n' | grep -x ro")
    vol = f"cu{uuid.uuid4().hex[:6]}"
    theirs = docker_run(dockerd, "-v", f"{vol}:/srv/app", "-v", f"{vol}-nc:/empty:nocopy", "-v", f"{host}:/h:ro",
                        script="mkdir -p /empty; " + script)
    mine = ours(runc, store, tmp_path, dockerd, "mkdir -p /empty; " + script, "c1",
                binds=[f"{vol}:/srv/app", f"{vol}-nc:/empty:nocopy", f"{host}:/h:ro"])
    assert mine == theirs
    dockerd.docker("volume", "rm", vol, f"{vol}-nc")
    no_leaks()


def test_missing_bind_source_rules_match_docker(dockerd, tmp_path) -> None:
    missing = tmp_path / "missing-long"
    p = dockerd.docker("run", "--rm", "--network", "none", "--mount", f"type=bind,src={missing},dst=/x",
                       dockerd.image, "true", check=False)
    assert p.returncode != 0 and b"bind source path does not exist" in p.stderr
    with pytest.raises(Exception, match="bind source path does not exist"):
        plan_mounts("c1", mounts=[{"Type": "bind", "Source": str(missing), "Target": "/x"}], pin=False)
    created = tmp_path / "created-short"
    docker_run(dockerd, "-v", f"{created}:/x", script="true")
    assert created.is_dir()
    created.rmdir()
    with plan_mounts("c1", binds=[f"{created}:/x"], pin=False):
        assert created.is_dir()


def test_inspect_mount_points_match_docker(dockerd, store, tmp_path) -> None:
    import json

    host = tmp_path / "insp"
    host.mkdir()
    vol = f"in{uuid.uuid4().hex[:6]}"
    args = ["-v", f"{vol}:/data", "-v", f"{host}:/h:ro", "--mount", "type=tmpfs,dst=/t",
            "--mount", f"type=volume,src={vol}-2,dst=/v2,readonly"]
    cid = dockerd.docker("create", "--network", "none", *args, dockerd.image, "true").stdout.decode().strip()
    try:
        theirs = json.loads(dockerd.docker("inspect", cid).stdout)[0]["Mounts"]
    finally:
        dockerd.docker("rm", "-v", cid)
        dockerd.docker("volume", "rm", vol, f"{vol}-2", check=False)
    with plan_mounts("c1", binds=[f"{vol}:/data", f"{host}:/h:ro"], store=store, pin=False,
                     mounts=[{"Type": "tmpfs", "Target": "/t"},
                             {"Type": "volume", "Source": f"{vol}-2", "Target": "/v2", "ReadOnly": True}]) as plan:
        mine = plan.points

    def norm(points):
        out = {}
        for p in points:
            p = dict(p)
            if p["Type"] == "volume":
                p.pop("Source")  # under each engine's own data root
            out[p["Destination"]] = p
        return out
    for dest in sorted(set(norm(mine)) | set(norm(theirs))):
        assert norm(mine).get(dest) == norm(theirs).get(dest), (dest, norm(mine).get(dest), norm(theirs).get(dest))


def test_image_volume_and_volumes_from_match_docker(dockerd, runc, store, tmp_path) -> None:
    """An image VOLUME becomes an anonymous volume filled by copy-up; --volumes-from :ro
    gives the other container's volume read-only. Same records and content as dockerd."""
    import json

    tar = subprocess.run(["tar", "-C", str(dockerd.image_dir), "-c", "."], capture_output=True, check=True).stdout
    img = f"{dockerd.tag}-vol:latest"
    dockerd.docker("import", "--change", "VOLUME /srv/app", "-", img, input=tar)
    src = dockerd.docker("create", "--network", "none", img, "true").stdout.decode().strip()
    side = dockerd.docker("create", "--network", "none", "--volumes-from", f"{src}:ro", img, "true").stdout.decode().strip()
    try:
        theirs_src = json.loads(dockerd.docker("inspect", src).stdout)[0]["Mounts"]
        theirs_side = json.loads(dockerd.docker("inspect", side).stdout)[0]["Mounts"]
        listing = dockerd.docker("run", "--rm", "--network", "none", "--volumes-from", f"{src}:ro", img, "sh", "-c",
                                 "ls -ln /srv/app | awk '{print $1, $3, $4, $NF}'; touch /srv/app/x || echo ro"
                                 ).stdout.decode()
    finally:
        dockerd.docker("rm", "-v", side, src, check=False)
        dockerd.docker("rmi", img, check=False)
    with plan_mounts("src", store=store, pin_root=tmp_path / "pins", image_rootfs=dockerd.image_dir,
                     image_volumes=["/srv/app"]) as plan:
        mine_src = plan.points
    with plan_mounts("side", store=store, pin_root=tmp_path / "pins", volumes_from=[(mine_src, "ro")]) as plan:
        mine_side = plan.points
        out = runc.run(list(plan), "ls -ln /srv/app | awk '{print $1, $3, $4, $NF}'; touch /srv/app/x || echo ro",
                       image=dockerd.image_dir, check=False).stdout

    def norm(points):
        keep = ("Type", "Destination", "Driver", "Mode", "RW", "Propagation")
        return sorted([{k: p.get(k) for k in keep} | {"anon": len(p.get("Name", "")) == 64} for p in points],
                      key=lambda p: p["Destination"])
    assert norm(mine_src) == norm(theirs_src)
    assert norm(mine_side) == norm(theirs_side)
    assert mine_side[0]["Name"] == mine_src[0]["Name"]
    assert out == listing


def _api(sock: Path, method: str, path: str, body: dict | None = None):
    import http.client
    import json
    import socket

    class Conn(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.connect(str(sock))

    conn = Conn("localhost")
    data = json.dumps(body).encode() if body is not None else None
    conn.request(method, f"/v1.41{path}", body=data, headers={"Content-Type": "application/json"} if data else {})
    resp = conn.getresponse()
    raw = resp.read()
    conn.close()
    return resp.status, (json.loads(raw) if raw.strip() else None)


def test_volume_api_shapes_match_docker(dockerd, store) -> None:
    """The same requests to dockerd's /volumes and to volumes.api give the same JSON (modulo
    paths, times and random names)."""
    from pystack.errors import NotFound
    from pystack.volumes import api

    name = f"api{uuid.uuid4().hex[:6]}"

    def norm(vol: dict) -> dict:
        vol = dict(vol, CreatedAt="T", Mountpoint="M")
        if len(vol["Name"]) == 64:
            vol["Name"] = "ANON"
            # Docker 23+ labels anonymous volumes (as pystack does); this dockerd is 20.10
            labels = {k: v for k, v in (vol["Labels"] or {}).items() if k != "com.docker.volume.anonymous"}
            vol["Labels"] = labels or None
        return vol

    status, theirs = _api(dockerd.sock, "POST", "/volumes/create", {"Name": name, "Labels": {"a": "b"}})
    assert status == 201 and norm(theirs) == norm(api.create_volume(store, {"Name": name, "Labels": {"a": "b"}}))
    status, theirs = _api(dockerd.sock, "POST", "/volumes/create", {})
    anon = theirs["Name"]
    assert norm(theirs) == norm(api.create_volume(store, {}))
    status, theirs = _api(dockerd.sock, "GET", f"/volumes/{name}")
    assert norm(theirs) == norm(api.inspect_volume(store, name))
    status, theirs = _api(dockerd.sock, "GET", "/volumes")
    mine = api.list_volumes(store)
    assert set(theirs) == set(mine) and theirs["Warnings"] == mine["Warnings"]
    assert sorted(map(str, map(norm, theirs["Volumes"]))) == sorted(map(str, map(norm, mine["Volumes"])))
    status, theirs = _api(dockerd.sock, "GET", "/volumes/nope-x")
    assert status == 404
    with pytest.raises(NotFound):
        api.inspect_volume(store, "nope-x")
    _api(dockerd.sock, "DELETE", f"/volumes/{name}")
    _api(dockerd.sock, "DELETE", f"/volumes/{anon}")
