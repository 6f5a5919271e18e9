"""Real containers (runc, the OCI oracle) mounting what the planner produced.

Every test ends with nothing left mounted (``no_leaks``).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from pystack.volumes import safepath
from pystack.volumes.planner import plan_mounts
from pystack.volumes.secrets import SecretFile, SecretFiles
from pystack.volumes.store import VolumeStore

pytestmark = pytest.mark.oracle


def run_with(runc, store: VolumeStore, tmp_path: Path, cid: str, script: str, *, image=None,
             check: bool = True, **mounts):
    """Plan, run one container, close the plan (as the engine does around `runc create`)."""
    with plan_mounts(cid, store=store, pin_root=tmp_path / "pins", image_rootfs=image, **mounts) as plan:
        return runc.run(list(plan), script, image=image, check=check)


def test_two_containers_share_a_named_volume(runc, store, tmp_path, no_leaks) -> None:
    payload = os.urandom(4096)
    (tmp_path / "payload").write_bytes(payload)
    run_with(runc, store, tmp_path, "writer", "cp /in/payload /data/blob && echo from-a > /data/a.txt",
             binds=[f"{tmp_path}/payload:/in/payload:ro", "shared:/data"])
    out = run_with(runc, store, tmp_path, "reader", "cat /data/a.txt; echo from-b > /data/b.txt; md5sum /data/blob",
                   binds=["shared:/data"]).stdout
    import hashlib
    assert out.splitlines() == ["from-a", f"{hashlib.md5(payload).hexdigest()}  /data/blob"]
    assert Path(store.get("shared").mountpoint, "b.txt").read_text() == "from-b\n"
    assert Path(store.get("shared").mountpoint, "blob").read_bytes() == payload
    assert store.users("shared") == ["reader", "writer"]  # records stay until the containers are removed
    store.release_container("writer")
    store.release_container("reader")
    no_leaks()


def test_data_survives_recreate(runc, store, tmp_path, no_leaks) -> None:
    run_with(runc, store, tmp_path, "gen1", "seq 1 1000 > /data/numbers", binds=["db:/data"])
    store.release_container("gen1")  # container removed, volume kept (as `down` without -v)
    out = run_with(runc, store, tmp_path, "gen2", "md5sum < /data/numbers", binds=["db:/data"]).stdout
    expected = "\n".join(str(i) for i in range(1, 1001)) + "\n"
    import hashlib
    assert out.split()[0] == hashlib.md5(expected.encode()).hexdigest()
    no_leaks()


def test_one_container_cannot_see_another_volume(runc, store, tmp_path, no_leaks) -> None:
    run_with(runc, store, tmp_path, "alpha", "echo secret-of-a > /data/mine", binds=["vola:/data"])
    out = run_with(runc, store, tmp_path, "beta",
                   "find / -path /proc -prune -o -path /sys -prune -o -path /dev -prune -o -type f -print"
                   " | xargs grep -l secret-of-a; echo done",
                   binds=["volb:/data"]).stdout
    assert out.strip() == "done"
    no_leaks()


def test_copy_up_fills_new_volume_with_image_content(runc, store, tmp_path, image_with_content,
                                                     no_leaks) -> None:
    image = image_with_content({"/srv/app/config.ini": "[app]\nport=80\n", "/srv/app/sub/x": "x\n"})
    os.chown(image / "srv/app", 1000, 1000)
    os.chmod(image / "srv/app", 0o750)
    out = run_with(runc, store, tmp_path, "c1", "cat /srv/app/config.ini /srv/app/sub/x; stat -c '%u %g %a' /srv/app",
                   image=image, binds=["appdata:/srv/app"]).stdout
    assert out.splitlines() == ["[app]", "port=80", "x", "1000 1000 750"]
    # not empty any more: a second container (even from an image with other content) keeps the data
    Path(store.get("appdata").mountpoint, "config.ini").write_text("changed\n")
    image2 = image_with_content({"/srv/app/config.ini": "other image\n"})
    out = run_with(runc, store, tmp_path, "c2", "cat /srv/app/config.ini", image=image2,
                   binds=["appdata:/srv/app"]).stdout
    assert out == "changed\n"
    no_leaks()


def test_nocopy_and_image_volume(runc, store, tmp_path, image_with_content, no_leaks) -> None:
    image = image_with_content({"/cache/seed": "seed\n", "/data/z": "z\n"})
    with plan_mounts("c1", store=store, pin_root=tmp_path / "pins", image_rootfs=image,
                     mounts=[{"Type": "volume", "Source": "nc", "Target": "/cache", "VolumeOptions": {"NoCopy": True}}],
                     image_volumes=["/data"]) as plan:
        out = runc.run(list(plan), "ls -A /cache | wc -l; cat /data/z", image=image).stdout
        anon = [p for p in plan.points if p["Destination"] == "/data"][0]["Name"]
    assert out.split() == ["0", "z"]
    assert store.get(anon).anonymous
    no_leaks()


def test_copy_up_through_image_layers(store, tmp_path, no_leaks) -> None:
    """Layers (topmost first) are merged by a read-only overlay: upper files win, whiteouts hide."""
    lower, upper = tmp_path / "l0", tmp_path / "l1"
    (lower / "etc/app").mkdir(parents=True)
    (upper / "etc/app").mkdir(parents=True)
    (lower / "etc/app/a").write_text("lower a\n")
    (lower / "etc/app/gone").write_text("deleted above\n")
    (upper / "etc/app/a").write_text("upper a\n")
    os.mknod(upper / "etc/app/gone", 0o600 | 0o020000, os.makedev(0, 0))  # overlay whiteout
    with plan_mounts("c1", binds=["layered:/etc/app"], store=store, pin_root=tmp_path / "pins",
                     image_rootfs=[upper, lower]):
        pass
    data = Path(store.get("layered").mountpoint)
    assert sorted(os.listdir(data)) == ["a"] and (data / "a").read_text() == "upper a\n"
    no_leaks()


def test_bind_read_only_single_file_and_tmpfs(runc, store, tmp_path, no_leaks) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src/in.txt").write_text("input\n")
    (tmp_path / "nginx.conf").write_text("worker_processes 1;\n")
    out = run_with(runc, store, tmp_path, "c1",
                   "cat /ro/in.txt; touch /ro/x 2>/dev/null || echo ro-refused; cat /etc/nginx.conf;"
                   "stat -c %a /scratch; grep ' /scratch ' /proc/mounts;"
                   "cp /bin/busybox /scratch/bb && /scratch/bb true 2>/dev/null || echo noexec",
                   binds=[f"{tmp_path}/src:/ro:ro", f"{tmp_path}/nginx.conf:/etc/nginx.conf:ro"],
                   tmpfs={"/scratch": "size=8m,mode=1777"}).stdout.splitlines()
    assert out[:4] == ["input", "ro-refused", "worker_processes 1;", "1777"]
    mount_line = out[4].split()
    assert mount_line[2] == "tmpfs" and {"nosuid", "nodev", "noexec", "size=8192k"} <= set(mount_line[3].split(","))
    assert out[5] == "noexec"
    assert not (tmp_path / "src/x").exists()
    no_leaks()


def test_volumes_from_read_only(runc, store, tmp_path, no_leaks) -> None:
    with plan_mounts("src", binds=["logs:/logs"], store=store, pin_root=tmp_path / "pins") as plan:
        runc.run(list(plan), "echo line > /logs/app.log")
        points = plan.points
    out = run_with(runc, store, tmp_path, "sidecar", "cat /logs/app.log; echo x >> /logs/app.log || echo ro",
                   volumes_from=[(points, "ro")], check=False).stdout
    assert out.splitlines()[0] == "line" and out.splitlines()[-1] == "ro"
    assert store.users("logs") == ["sidecar", "src"]
    no_leaks()


def test_symlink_swapped_under_bind_source_after_check(runc, store, tmp_path, no_leaks) -> None:
    """The source is pinned when planned: swapping in a symlink to a secret afterwards, before
    the container starts, mounts the checked directory, never the link's target."""
    secret = tmp_path / "host-secret"
    secret.mkdir()
    (secret / "key").write_text("TOP SECRET\n")
    src = tmp_path / "share"
    src.mkdir()
    (src / "ok").write_text("expected\n")
    with plan_mounts("c1", binds=[f"{src}:/share"], store=store, pin_root=tmp_path / "pins") as plan:
        os.rename(src, tmp_path / "share.moved")
        os.symlink(secret, src)  # the attacker's swap, between check and mount
        out = runc.run(list(plan), "ls /share; cat /share/* ").stdout
    assert out.splitlines() == ["ok", "expected"]
    no_leaks()


def test_symlink_swapped_between_resolve_and_open_is_refused(tmp_path, monkeypatch) -> None:
    """The narrower window (after realpath, before open) fails closed with a clear error."""
    src = tmp_path / "share"
    src.mkdir()
    real_realpath = os.path.realpath

    def racing_realpath(p):
        resolved = real_realpath(p)
        os.rename(src, tmp_path / "moved")
        os.symlink("/etc", src)
        return resolved

    monkeypatch.setattr(safepath.os.path, "realpath", racing_realpath)
    with pytest.raises(safepath.UnsafePath, match="changed into a symbolic link"):
        safepath.open_host_path(str(src), what="bind source")


def test_subpath_symlink_inside_volume_cannot_escape(runc, store, tmp_path, no_leaks) -> None:
    """A container plants a symlink in a shared volume; a later subpath mount through it is refused."""
    run_with(runc, store, tmp_path, "evil", "mkdir -p /data/good && echo g > /data/good/f && ln -s / /data/evil",
             binds=["vol:/data"])
    out = run_with(runc, store, tmp_path, "c2", "cat /sub/f",
                   mounts=[{"Type": "volume", "Source": "vol", "Target": "/sub", "VolumeOptions": {"Subpath": "good"}}]).stdout
    assert out == "g\n"
    with pytest.raises(safepath.UnsafePath, match="escapes"):
        plan_mounts("c3", store=store, pin_root=tmp_path / "pins",
                    mounts=[{"Type": "volume", "Source": "vol", "Target": "/sub", "VolumeOptions": {"Subpath": "evil/etc"}}])
    assert "c3" not in store.users("vol")
    no_leaks()


def test_secrets_and_configs_owner_mode_readonly(runc, store, tmp_path, no_leaks) -> None:
    files = SecretFiles(tmp_path / "secrets")
    mounts = files.materialize("c1", [
        SecretFile("db_password", "secret", None, b"hunter2", uid=1000, gid=1000, mode=0o400),
        SecretFile("app_cfg", "config", "/etc/app.cfg", b"debug=true\n", mode=0o440, gid=33),
        SecretFile("token", "secret", "api/token", b"tok"),
    ])
    out = runc.run(mounts, "stat -c '%n %u %g %a' /run/secrets/db_password /etc/app.cfg /run/secrets/api/token;"
                           "cat /run/secrets/db_password; echo; echo x > /etc/app.cfg 2>/dev/null || echo ro",
                   user=(0, 0)).stdout.splitlines()
    assert out == ["/run/secrets/db_password 1000 1000 400", "/etc/app.cfg 0 33 440",
                   "/run/secrets/api/token 0 0 444", "hunter2", "ro"]
    # the owner can read it; another user cannot
    assert runc.run(mounts, "cat /run/secrets/db_password", user=(1000, 1000)).stdout == "hunter2"
    assert runc.run(mounts, "cat /run/secrets/db_password", user=(33, 33), check=False).returncode != 0
    files.remove("c1")
    assert not (tmp_path / "secrets/c1").exists()
    no_leaks()


def test_tmpfs_volume_shared_while_used(runc, store, tmp_path, no_leaks) -> None:
    store.create("ram", driver_opts={"type": "tmpfs", "device": "tmpfs", "o": "size=2m"})
    run_with(runc, store, tmp_path, "c1", "echo in-ram > /r/f; grep ' /r ' /proc/mounts", binds=["ram:/r"])
    out = run_with(runc, store, tmp_path, "c2", "cat /r/f", binds=["ram:/r"]).stdout
    assert out == "in-ram\n"
    store.release_container("c1")
    store.release_container("c2")  # last user gone: the tmpfs (and its content) too
    no_leaks()


def test_bind_propagation_rslave_sees_later_host_mounts(runc, store, tmp_path, no_leaks) -> None:
    """`bind.propagation: rslave`: a mount made on the host under the source after the
    container started shows up inside; with the default (rprivate) it does not."""
    import json
    import shutil
    import subprocess
    import uuid

    from pystack.runtime.spec import default_spec

    src = tmp_path / "src"
    src.mkdir()
    subprocess.run(["mount", "--bind", str(src), str(src)], check=True)
    subprocess.run(["mount", "--make-shared", str(src)], check=True)
    procs = []
    try:
        for prop in ("rslave", "rprivate"):
            (src / prop).mkdir()
            with plan_mounts(f"p-{prop}", binds=[f"{src}:/p:{prop}"], store=store, pin_root=tmp_path / "pins") as plan:
                bundle = tmp_path / f"bundle-{prop}"
                bundle.mkdir()
                shutil.copytree(runc.rootfs, bundle / "rootfs", symlinks=True)
                script = ("echo started; i=0; while [ $i -lt 300 ]; do [ -e /p/go ] && break; usleep 100000;"
                          " i=$((i+1)); done; grep -c ' /p/" + prop + " ' /proc/mounts")
                spec = default_spec(["sh", "-c", script], seccomp=False)
                spec["mounts"].extend(plan)
                (bundle / "config.json").write_text(json.dumps(spec))
                cid = f"pstv-{uuid.uuid4().hex[:10]}"
                p = subprocess.Popen(["runc", "--root", str(runc.state), "run", "--bundle", str(bundle), cid],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
                procs.append((p, cid))
                assert p.stdout.readline().strip() == "started"  # created: the staging pin may go now
        for prop in ("rslave", "rprivate"):
            subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(src / prop)], check=True)
        (src / "go").touch()
        results = {}
        for (p, cid), prop in zip(procs, ("rslave", "rprivate")):
            out, err = p.communicate(timeout=60)
            results[prop] = out.strip()
        assert results == {"rslave": "1", "rprivate": "0"}
    finally:
        for p, cid in procs:
            if p.poll() is None:
                p.kill()
            subprocess.run(["runc", "--root", str(runc.state), "delete", "-f", cid], capture_output=True)
        subprocess.run(["umount", "-R", str(src)], capture_output=True)
    no_leaks()


def test_two_running_containers_see_each_others_writes(runc, store, tmp_path, no_leaks) -> None:
    """Both alive at once on one named volume: a ping-pong through files."""
    import json
    import shutil
    import subprocess
    import uuid

    from pystack.runtime.spec import default_spec

    wait = "i=0; while [ ! -e /shared/{f} ] && [ $i -lt 600 ]; do usleep 50000; i=$((i+1)); done; cat /shared/{f}"
    scripts = {"ping": "echo started; echo ping-$$ > /shared/ping; " + wait.format(f="pong"),
               "pong": "echo started; " + wait.format(f="ping") + " > /shared/pong.tmp && mv /shared/pong.tmp /shared/pong"}
    procs = []
    try:
        for name, script in scripts.items():
            with plan_mounts(name, binds=["pingpong:/shared"], store=store, pin_root=tmp_path / "pins") as plan:
                bundle = tmp_path / f"bundle-{name}"
                bundle.mkdir()
                shutil.copytree(runc.rootfs, bundle / "rootfs", symlinks=True)
                spec = default_spec(["sh", "-c", script], seccomp=False)
                spec["mounts"].extend(plan)
                (bundle / "config.json").write_text(json.dumps(spec))
                cid = f"pstv-{uuid.uuid4().hex[:10]}"
                p = subprocess.Popen(["runc", "--root", str(runc.state), "run", "--bundle", str(bundle), cid],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
                procs.append((p, cid))
                assert p.stdout.readline() == "started\n"  # created and running: the plan may close
        results = [p.communicate(timeout=60) for p, _ in procs]
        outs = [r[0] for r in results]
        assert all(p.returncode == 0 for p, _ in procs), results
    finally:
        for p, cid in procs:
            if p.poll() is None:
                p.kill()
            subprocess.run(["runc", "--root", str(runc.state), "delete", "-f", cid], capture_output=True)
    ping = Path(store.get("pingpong").mountpoint, "ping").read_text()
    assert ping.startswith("ping-") and outs[0] == ping  # pong copied ping's write back; ping read it
    no_leaks()


def test_volume_allows_exec_as_docker_does(runc, store, tmp_path, no_leaks) -> None:
    """Unlike tmpfs mounts, volumes and binds carry no noexec (Docker's defaults)."""
    import shutil

    rec = store.create("tools")
    shutil.copy(runc.rootfs / "bin/busybox", Path(rec.mountpoint) / "busybox")
    out = run_with(runc, store, tmp_path, "c1", "/opt/busybox echo exec-ok", binds=["tools:/opt"]).stdout
    assert out == "exec-ok\n"
    no_leaks()
