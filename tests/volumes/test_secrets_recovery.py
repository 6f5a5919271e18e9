"""Secret/config helpers, and recovery after an engine killed with SIGKILL mid-flight."""
from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

from pystack.errors import UserError
from pystack.volumes.pins import cleanup_pins
from pystack.volumes.secrets import SecretFile, content_from_definition, default_target, tar_archive
from pystack.volumes.store import VolumeStore


@pytest.mark.parametrize("kind,name,target,expected", [
    ("secret", "db_pw", None, "/run/secrets/db_pw"),
    ("secret", "db_pw", "pw.txt", "/run/secrets/pw.txt"),
    ("secret", "db_pw", "/etc/pw", "/etc/pw"),
    ("config", "nginx", None, "/nginx"),
    ("config", "nginx", "/etc/nginx/nginx.conf", "/etc/nginx/nginx.conf"),
])
def test_default_targets(kind, name, target, expected) -> None:
    assert default_target(kind, name, target) == expected


def test_target_cannot_climb() -> None:
    with pytest.raises(UserError, match="invalid target"):
        default_target("secret", "x", "../../etc/shadow")


def test_sources() -> None:
    assert content_from_definition("secret", "s", {"environment": "TOKEN"}, {"TOKEN": "abc"}) == b"abc"
    assert content_from_definition("config", "c", {"content": "port=1"}, {}) == b"port=1"
    assert content_from_definition("secret", "s", {"file": "./s.txt"}, {}) is None
    with pytest.raises(UserError, match="environment variable MISSING is not set"):
        content_from_definition("secret", "s", {"environment": "MISSING"}, {})
    with pytest.raises(UserError, match="content is only allowed for configs"):
        content_from_definition("secret", "s", {"content": "x"}, {})


def test_content_never_in_repr_or_errors() -> None:
    f = SecretFile("pw", "secret", None, b"hunter2-very-secret", mode=0o400)
    assert "hunter2" not in repr(f) and "hunter2" not in str(f)
    with pytest.raises(UserError) as exc:
        SecretFile("pw", "secret", None, b"hunter2-very-secret", mode=0o17777)
    assert "hunter2" not in str(exc.value)


def test_tar_archive_for_the_engine_api() -> None:
    data = tar_archive([SecretFile("pw", "secret", None, b"s3cret", uid=1000, gid=1001, mode=0o400),
                        SecretFile("cfg", "config", "/etc/app.cfg", b"a=1\n", mode=0o444)])
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert set(members) == {"run/secrets/pw", "etc/app.cfg"}
        m = members["run/secrets/pw"]
        assert (m.uid, m.gid, m.mode) == (1000, 1001, 0o400)
        assert tar.extractfile(m).read() == b"s3cret"


def test_engine_killed_mid_create_then_recovered(tmp_path: Path, no_leaks) -> None:
    """An engine that planned mounts (staging pins, use records) and died by SIGKILL: after
    restart the pins are swept, stale users dropped, and the data is intact byte for byte."""
    root, pins = tmp_path / "volumes", tmp_path / "run/volumes/pins"
    store = VolumeStore(root)
    payload = os.urandom(100_000)
    Path(store.create("precious").mountpoint, "blob").write_bytes(payload)
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from pystack.volumes.store import VolumeStore
        from pystack.volumes.planner import plan_mounts
        plan = plan_mounts("dead-container", binds=["precious:/data", "{tmp_path}/hostdir:/host"],
                           store=VolumeStore("{root}"), pin_root=Path("{pins}"))
        print("ready", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    try:
        with open("/proc/self/mountinfo") as f:
            # the dead engine's staging mounts: its per-plan tmpfs and the two pins in it
            assert sum(str(pins) in line for line in f) == 3
        restarted = VolumeStore(root)
        assert restarted.users("precious") == ["dead-container"]
    finally:
        swept = cleanup_pins(pins)
    assert swept == 3
    restarted.sync_users(live_container_ids=set())
    assert restarted.users("precious") == []
    assert Path(restarted.get("precious").mountpoint, "blob").read_bytes() == payload
    restarted.remove("precious")
    no_leaks()


def test_tmpfs_volume_of_dead_containers_unmounted_on_sync(tmp_path: Path, no_leaks) -> None:
    from pystack.volumes.local_driver import is_mounted

    store = VolumeStore(tmp_path / "volumes")
    rec = store.create("scratch", driver_opts={"type": "tmpfs", "device": "tmpfs", "o": "size=1m"})
    store.acquire("scratch", "dead1")
    assert is_mounted(rec.mountpoint)
    VolumeStore(tmp_path / "volumes").sync_users(live_container_ids=set())  # the restarted engine
    assert not is_mounted(rec.mountpoint)
    no_leaks()


def test_restore_killed_mid_swap_is_rolled_back(tmp_path: Path) -> None:
    """SIGKILL right after the old data was moved aside (the worst moment of a restore):
    recover() puts the volume back exactly as it was before the restore started."""
    root = tmp_path / "volumes"
    store = VolumeStore(root)
    data = Path(store.create("db").mountpoint)
    (data / "table").write_bytes(b"snapshot state")
    store.snapshot("db", "t1")
    current = os.urandom(50_000)
    (data / "table").write_bytes(current)
    (data / "new-file").write_text("written after the snapshot")
    child = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import os, signal
        from pystack.volumes.store import VolumeStore
        real_rename = os.rename
        def rename(src, dst, *a, **kw):
            real_rename(src, dst, *a, **kw)
            if "_data.old-" in str(dst):
                os.kill(os.getpid(), signal.SIGKILL)
        os.rename = rename
        VolumeStore("{root}").restore("db", "t1")
    """)])
    assert child.returncode == -signal.SIGKILL
    assert not data.exists()  # the volume is broken until recovered
    repairs = VolumeStore(root).recover()
    assert "volume db: interrupted restore rolled back" in repairs
    assert (data / "table").read_bytes() == current and (data / "new-file").exists()
    assert sorted(p.name for p in data.parent.iterdir()) == ["_data", "users", "volume.json"]
    # and a restore after recovery works
    VolumeStore(root).restore("db", "t1")
    assert (data / "table").read_bytes() == b"snapshot state" and not (data / "new-file").exists()


def test_recover_removes_unfinished_creates_and_removes(tmp_path: Path) -> None:
    store = VolumeStore(tmp_path / "volumes")
    store.create("keep")
    (store.root / ".new-half-abcd").mkdir()
    (store.root / ".rm-gone-abcd" / "_data").mkdir(parents=True)
    assert sorted(store.recover()) == ["removed unfinished .new-half-abcd", "removed unfinished .rm-gone-abcd"]
    assert sorted(p.name for p in store.root.iterdir()) == [".lock", "keep"]
    assert store.recover() == []


def test_recover_unmounts_an_unused_tmpfs_volume(tmp_path: Path, no_leaks) -> None:
    from pystack.volumes import local_driver

    store = VolumeStore(tmp_path / "volumes")
    rec = store.create("ram", driver_opts={"type": "tmpfs", "device": "tmpfs"})
    local_driver.mount_tmpfs(rec.options, rec.mountpoint)  # as if killed before the user record
    assert store.recover() == ["volume ram: unused tmpfs unmounted"]
    no_leaks()
