"""Archive (``docker cp``) through the Engine API: GET/HEAD/PUT on running and stopped
containers, docker-py's get_archive/put_archive, ``docker cp`` both ways, and escape
attempts (``..``, absolute and relative symlinks, hard links) that must stay inside."""
from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import tarfile

import pytest

from pystack.engine import archive
from pystack.errors import NotFound, UserError
from tests.engine.test_attach import DOCKER


def make_tar(entries) -> bytes:
    """entries: (name, kind, data_or_target[, mode])."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, kind, data, *rest in entries:
            ti = tarfile.TarInfo(name)
            ti.mode = rest[0] if rest else 0o644
            if kind == "file":
                ti.size = len(data)
                tar.addfile(ti, io.BytesIO(data))
            elif kind == "dir":
                ti.type = tarfile.DIRTYPE
                ti.mode = rest[0] if rest else 0o755
                tar.addfile(ti)
            elif kind == "sym":
                ti.type, ti.linkname = tarfile.SYMTYPE, data
                tar.addfile(ti)
            elif kind == "hard":
                ti.type, ti.linkname = tarfile.LNKTYPE, data
                tar.addfile(ti)
    return buf.getvalue()


@pytest.fixture
def jail(tmp_path):
    """A fake container root next to a 'host' directory that must never be touched."""
    root = tmp_path / "root"
    host = tmp_path / "host"
    (root / "etc").mkdir(parents=True)
    (root / "etc/hostname").write_text("inside\n")
    (root / "data").mkdir()
    host.mkdir()
    (host / "secret").write_text("host secret\n")
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY)
    yield root, host, fd
    os.close(fd)


def test_extract_refuses_or_confines_every_escape(jail) -> None:
    root, host, fd = jail
    (root / "data/abs").symlink_to(str(host))            # absolute link to the host dir
    (root / "data/rel").symlink_to("../../host")          # relative link climbing out
    (root / "data/hostfile").symlink_to(str(host / "secret"))
    with pytest.raises(UserError, match="outside"):
        archive.extract_tar(fd, "/data", io.BytesIO(make_tar([("../../host/x", "file", b"x")])))
    # through links: resolved inside the root (RESOLVE_IN_ROOT), never on the host; a link
    # whose in-root target does not exist is refused rather than created through
    with pytest.raises(UserError, match="cannot extract below abs"):
        archive.extract_tar(fd, "/data", io.BytesIO(make_tar([("abs/pwned", "file", b"1")])))
    (root / str(host).lstrip("/")).mkdir(parents=True)
    (root / "host").mkdir()
    archive.extract_tar(fd, "/data", io.BytesIO(make_tar([("abs/pwned", "file", b"1"),
                                                          ("rel/pwned2", "file", b"2")])))
    assert sorted(os.listdir(host)) == ["secret"]
    assert (root / str(host).lstrip("/") / "pwned").read_bytes() == b"1"
    assert (root / "host/pwned2").read_bytes() == b"2"
    # a file entry over an existing symlink replaces the link, never writes through it
    archive.extract_tar(fd, "/data", io.BytesIO(make_tar([("hostfile", "file", b"overwritten")])))
    assert (host / "secret").read_text() == "host secret\n"
    assert (root / "data/hostfile").read_bytes() == b"overwritten" and not (root / "data/hostfile").is_symlink()
    # a symlink planted by the archive itself, then a file through it
    archive.extract_tar(fd, "/data", io.BytesIO(make_tar([("planted", "sym", str(host)),
                                                          ("planted/evil", "file", b"e")])))
    assert sorted(os.listdir(host)) == ["secret"]
    # hard links: to a name outside refused, to a file inside fine
    with pytest.raises(UserError):
        archive.extract_tar(fd, "/data", io.BytesIO(make_tar([("h", "hard", "../../host/secret")])))
    archive.extract_tar(fd, "/data", io.BytesIO(make_tar([("orig", "file", b"o"), ("h2", "hard", "orig")])))
    assert os.stat(root / "data/h2").st_ino == os.stat(root / "data/orig").st_ino
    # the destination itself through a link still lands inside
    archive.extract_tar(fd, "/data/abs", io.BytesIO(make_tar([("d", "file", b"d")])))
    assert sorted(os.listdir(host)) == ["secret"]
    # devices are not created
    assert (host / "secret").read_text() == "host secret\n"


def test_extract_modes_overwrite_rules_and_missing_parents(jail) -> None:
    root, _, fd = jail
    tar = make_tar([("a/b/c.txt", "file", b"deep", 0o600), ("a/x", "dir", None, 0o700)])
    archive.extract_tar(fd, "/data", io.BytesIO(tar))
    assert (root / "data/a/b/c.txt").read_bytes() == b"deep"
    assert (root / "data/a/b/c.txt").stat().st_mode & 0o777 == 0o600
    assert (root / "data/a/x").stat().st_mode & 0o777 == 0o700
    with pytest.raises(UserError, match="cannot overwrite"):
        archive.extract_tar(fd, "/data", io.BytesIO(make_tar([("a", "file", b"f")])),
                            no_overwrite_dir_non_dir=True)
    archive.extract_tar(fd, "/data", io.BytesIO(make_tar([("a", "file", b"f")])))
    assert (root / "data/a").read_bytes() == b"f"
    with pytest.raises(NotFound):
        archive.extract_tar(fd, "/nope", io.BytesIO(tar))
    with pytest.raises(UserError, match="not a directory"):
        archive.extract_tar(fd, "/etc/hostname", io.BytesIO(tar))
    with pytest.raises(UserError, match="not a tar"):
        archive.extract_tar(fd, "/data", io.BytesIO(b"garbage" * 200))


def test_get_and_stat_stay_inside(jail) -> None:
    root, host, fd = jail
    (root / "etc/link").symlink_to(str(host / "secret"))
    (root / "etc/up").symlink_to("../../host")
    doc = archive.stat_doc(fd, "/../../etc/hostname")
    assert doc["name"] == "hostname" and doc["size"] == 7 and doc["mode"] == 0o644 & ~0o022 | (doc["mode"] & 0o777)
    doc = archive.stat_doc(fd, "/etc/link")
    assert doc["mode"] & archive.MODE_SYMLINK and doc["linkTarget"] == str(host / "secret")
    assert archive.stat_doc(fd, "/etc")["mode"] & archive.MODE_DIR
    with pytest.raises(NotFound):
        archive.stat_doc(fd, "/etc/link/")  # following the link stays in the root: nothing there
    with pytest.raises(NotFound):
        archive.stat_doc(fd, "/etc/up/secret")
    out = io.BytesIO()
    archive.write_tar(fd, "/etc", out)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        names = {m.name: m for m in tar.getmembers()}
        assert set(names) == {"etc", "etc/hostname", "etc/link", "etc/up"}
        assert names["etc/link"].issym() and tar.extractfile("etc/hostname").read() == b"inside\n"


def test_write_file_is_atomic_and_confined(jail) -> None:
    root, host, fd = jail
    (root / "etc/hostname").chmod(0o640)
    archive.write_file(fd, "/etc/hostname", [b"new\n"])
    assert (root / "etc/hostname").read_text() == "new\n"
    assert (root / "etc/hostname").stat().st_mode & 0o777 == 0o640
    assert sorted(os.listdir(root / "etc")) == ["hostname"]  # no temporary file left
    (root / "etc/out").symlink_to(str(host))
    with pytest.raises(UserError):
        archive.write_file(fd, "/etc/out/f", [b"x"], make_parents=True)
    with pytest.raises(NotFound):
        archive.write_file(fd, "/etc/out/f", [b"x"])
    assert sorted(os.listdir(host)) == ["secret"]
    (root / "etc/lnk").symlink_to(str(host / "secret"))
    with pytest.raises(UserError, match="not a regular file"):
        archive.write_file(fd, "/etc/lnk", [b"x"])
    with pytest.raises(NotFound):
        archive.write_file(fd, "/missing/dir/f", [b"x"])
    archive.write_file(fd, "/missing/dir/f", [b"x"], make_parents=True, mode=0o600)
    assert (root / "missing/dir/f").stat().st_mode & 0o777 == 0o600


# -- real containers -----------------------------------------------------------------------

def _tar_of(raw: bytes) -> dict[str, bytes | str]:
    out: dict[str, bytes | str] = {}
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        for m in tar.getmembers():
            if m.isfile():
                out[m.name] = tar.extractfile(m).read()
            elif m.issym():
                out[m.name] = "->" + m.linkname
            else:
                out[m.name] = "dir" if m.isdir() else m.type.decode()
    return out


def test_api_archive_running_and_stopped(api, busybox_engine, unique_name) -> None:
    cid = api.run(["sh", "-c", "mkdir -p /srv/d; echo made > /srv/d/f; ln -s / /srv/root; "
                   "trap 'exit 0' TERM; while true; do sleep 0.1; done"], name=unique_name)
    for _ in range(100):
        status, raw = api.get(f"/containers/{cid}/archive?path=/srv/d/f")
        if status == 200:
            break
    assert status == 200 and _tar_of(raw) == {"f": b"made\n"}
    status, _ = api.request("HEAD", f"/containers/{cid}/archive?path=/srv/d")
    assert status == 200
    conn = api._conn()
    conn.request("HEAD", f"/containers/{cid}/archive?path=/srv/d")
    resp = conn.getresponse()
    resp.read()
    stat = json.loads(base64.b64decode(resp.getheader("X-Docker-Container-Path-Stat")))
    conn.close()
    assert stat["name"] == "d" and stat["mode"] & archive.MODE_DIR and stat["mode"] & 0o777 == 0o755
    # PUT into the running container, then read it back through exec-free GET
    body = make_tar([("up.txt", "file", b"uploaded"), ("sub/inner", "file", b"i")])
    assert api.request("PUT", f"/containers/{cid}/archive?path=/srv", body,
                       {"Content-Type": "application/x-tar"})[0] == 200
    status, raw = api.get(f"/containers/{cid}/archive?path=/srv")
    tree = _tar_of(raw)
    assert tree["srv/up.txt"] == b"uploaded" and tree["srv/sub/inner"] == b"i" and tree["srv/root"] == "->/"
    # escapes: the in-container link to / and ../ stay in the container
    status, raw = api.get(f"/containers/{cid}/archive?path=/srv/root/etc/passwd")
    assert status == 200 and b"app:x:1000" in _tar_of(raw)["passwd"]
    status, raw = api.get(f"/containers/{cid}/archive?path=../../../../etc/hostname")
    assert status == 200 and _tar_of(raw)["hostname"] != open("/etc/hostname", "rb").read()
    assert _tar_of(raw)["hostname"].strip() == api.inspect(cid)["Config"]["Hostname"].encode()
    status, body404 = api.get(f"/containers/{cid}/archive?path=/no/such")
    assert status == 404 and "Could not find the file /no/such" in body404["message"]
    assert api.request("PUT", f"/containers/{cid}/archive?path=/srv",
                       make_tar([("../../escape", "file", b"x")]))[0] == 400
    assert api.request("PUT", f"/containers/{cid}/archive?path=/srv/d/f", body)[0] == 400
    assert api.request("PUT", f"/containers/{cid}/archive?path=/nowhere", body)[0] == 404
    assert api.get(f"/containers/{cid}/archive")[0] == 400
    # stopped: the overlay is mounted for the copy and unmounted after
    assert api.post(f"/containers/{cid}/stop?t=5")[0] == 204
    status, raw = api.get(f"/containers/{cid}/archive?path=/srv/up.txt")
    assert status == 200 and _tar_of(raw) == {"up.txt": b"uploaded"}
    assert api.request("PUT", f"/containers/{cid}/archive?path=/srv",
                       make_tar([("while-stopped", "file", b"s")]))[0] == 200
    mounts = open("/proc/self/mounts").read()
    assert str(busybox_engine.run / "archive") not in mounts
    assert api.post(f"/containers/{cid}/start")[0] == 204
    status, raw = api.get(f"/containers/{cid}/archive?path=/srv/while-stopped")
    assert status == 200 and _tar_of(raw) == {"while-stopped": b"s"}
    assert api.delete(f"/containers/{cid}?force=1")[0] == 204
    assert busybox_engine.leaks() == {}


def test_running_container_is_seen_with_its_mounts(api, busybox_engine, unique_name) -> None:
    """Through /proc/<pid>/root: a tmpfs mounted in the container is part of what cp sees."""
    cid = api.run(["sh", "-c", "echo in-tmpfs > /scratch/x; trap 'exit 0' TERM; while true; do sleep 0.1; done"],
                  name=unique_name, User="app", HostConfig={"Tmpfs": {"/scratch": "mode=1777"}})
    for _ in range(100):
        status, raw = api.get(f"/containers/{cid}/archive?path=/scratch/x")
        if status == 200:
            break
    assert status == 200 and _tar_of(raw) == {"x": b"in-tmpfs\n"}
    assert api.request("PUT", f"/containers/{cid}/archive?path=/scratch", make_tar([("y", "file", b"put")]))[0] == 200
    assert api.request("PUT", f"/containers/{cid}/archive?path=/scratch&copyUIDGID=1",
                       make_tar([("owned", "file", b"o")]))[0] == 200
    from tests.engine.test_exec import _exec
    from tests.engine.test_logs import joined
    raw, _ = _exec(busybox_engine, api, cid, ["cat", "/scratch/y"])
    assert joined(raw, 1) == b"put"
    raw, _ = _exec(busybox_engine, api, cid, ["stat", "-c", "%u:%g", "/scratch/owned"])
    assert joined(raw, 1) == b"1000:1000\n"  # the container's User (app)
    assert str(busybox_engine.run / "archive") not in open("/proc/self/mounts").read()
    api.post(f"/containers/{cid}/kill")


def test_docker_py_put_and_get_archive(busybox_engine, unique_name) -> None:
    client = busybox_engine.client()
    c = client.containers.create("busybox", ["cat", "/conf/app.conf"], name=unique_name)
    # into a created (never started) container, as Compose does for configs
    assert c.put_archive("/", make_tar([("conf/app.conf", "file", b"key=value\n")])) is True
    c.start()
    assert c.wait()["StatusCode"] == 0
    assert c.logs() == b"key=value\n"
    bits, stat = c.get_archive("/conf/app.conf")
    assert stat["name"] == "app.conf" and stat["size"] == 10
    assert _tar_of(b"".join(bits)) == {"app.conf": b"key=value\n"}
    c.remove()
    client.close()


@pytest.mark.skipif(DOCKER is None, reason="the docker CLI is not installed (.ci/run installs docker.io)")
def test_docker_cli_cp_both_ways(api, busybox_engine, unique_name, tmp_path) -> None:
    cid = api.run(["sh", "-c", "mkdir /out; echo from-container > /out/a; "
                   "trap 'exit 0' TERM; while true; do sleep 0.1; done"], name=unique_name)
    env = {**os.environ, "DOCKER_HOST": busybox_engine.url, "DOCKER_CONFIG": str(tmp_path / "dockercfg")}

    def docker(*args):
        return subprocess.run([DOCKER, *args], env=env, capture_output=True, timeout=60)
    src = tmp_path / "src"
    (src / "nested").mkdir(parents=True)
    (src / "nested/file.txt").write_text("from-host\n")
    for _ in range(50):
        if api.get(f"/containers/{cid}/archive?path=/out/a")[0] == 200:
            break
    r = docker("cp", str(src), f"{unique_name}:/in")
    assert r.returncode == 0, r.stderr
    status, raw = api.get(f"/containers/{cid}/archive?path=/in/nested/file.txt")
    assert status == 200 and _tar_of(raw) == {"file.txt": b"from-host\n"}
    dest = tmp_path / "dest"
    r = docker("cp", f"{unique_name}:/out", str(dest))
    assert r.returncode == 0, r.stderr
    assert (dest / "a").read_text() == "from-container\n"
    r = docker("cp", f"{unique_name}:/out/a", "-")
    assert r.returncode == 0 and _tar_of(r.stdout) == {"a": b"from-container\n"}
    r = docker("cp", f"{unique_name}:/does/not/exist", str(tmp_path / "x"))
    assert r.returncode != 0 and b"Could not find the file" in r.stderr
    # a file to a new name, a directory's contents, a file back to a new local name
    r = docker("cp", str(src / "nested/file.txt"), f"{unique_name}:/tmp/renamed.txt")
    assert r.returncode == 0, r.stderr
    assert _tar_of(api.get(f"/containers/{cid}/archive?path=/tmp/renamed.txt")[1]) == {"renamed.txt": b"from-host\n"}
    assert docker("exec", unique_name, "mkdir", "/contents").returncode == 0
    r = docker("cp", f"{src}/.", f"{unique_name}:/contents/")
    assert r.returncode == 0, r.stderr
    assert api.get(f"/containers/{cid}/archive?path=/contents/nested/file.txt")[0] == 200
    r = docker("cp", f"{unique_name}:/out/a", str(tmp_path / "local-name"))
    assert r.returncode == 0 and (tmp_path / "local-name").read_text() == "from-container\n"
    # a tar on stdin
    r = subprocess.run([DOCKER, "cp", "-", f"{unique_name}:/tmp"], env=env, capture_output=True, timeout=60,
                       input=make_tar([("from-stdin", "file", b"s")]))
    assert r.returncode == 0, r.stderr
    assert _tar_of(api.get(f"/containers/{cid}/archive?path=/tmp/from-stdin")[1]) == {"from-stdin": b"s"}
    # a user that does not exist: docker exec fails like Docker (126)
    r = docker("exec", "-u", "nosuchuser", unique_name, "true")
    assert r.returncode == 126
    api.post(f"/containers/{cid}/kill")
