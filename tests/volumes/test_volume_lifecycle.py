"""prepare/release: Engine API HostConfig + image config in, a running container's storage out."""
from __future__ import annotations

from pathlib import Path

import pytest

from pystack.errors import NotFound, UserError
from pystack.volumes.lifecycle import prepare, release
from pystack.volumes.secrets import SecretFile, SecretFiles


def test_prepare_run_release(runc, store, tmp_path, image_with_content, no_leaks) -> None:
    image = image_with_content({"/var/lib/app/seed": "seed\n"})
    secrets = SecretFiles(tmp_path / "secrets")
    host = tmp_path / "host"
    host.mkdir()
    (host / "in").write_text("host\n")
    records: dict[str, list[dict]] = {}

    def mounts_of(name: str) -> list[dict]:
        if name not in records:
            raise NotFound(f"no such container: {name}")
        return records[name]

    hc = {"Binds": [f"{host}:/h:ro", "shared:/shared"], "Tmpfs": {"/run/tmp": "size=1m"},
          "Mounts": [{"Type": "volume", "Target": "/cache"}]}
    with prepare("c1", hc, {"Volumes": {"/var/lib/app": {}}}, store, secrets,
                 files=[SecretFile("pw", "secret", None, b"s3cret", mode=0o400)], image_rootfs=image,
                 mounts_of=mounts_of, pin_root=tmp_path / "pins") as st:
        out = runc.run(st.oci_mounts, "cat /h/in /var/lib/app/seed /run/secrets/pw; echo; echo a > /shared/f",
                       image=image).stdout
        records["c1"] = st.points
    assert out == "host\nseed\ns3cret\n"
    anon = {p["Destination"]: p["Name"] for p in records["c1"] if p["Type"] == "volume"}
    with prepare("c2", {"VolumesFrom": ["c1:ro"]}, None, store, secrets, mounts_of=mounts_of,
                 pin_root=tmp_path / "pins") as st:
        assert runc.run(st.oci_mounts, "cat /shared/f; touch /shared/g 2>/dev/null || echo ro",
                        image=image).stdout == "a\nro\n"
    with pytest.raises(NotFound, match="no such container: ghost"):
        prepare("c3", {"VolumesFrom": ["ghost"]}, None, store, secrets, mounts_of=mounts_of)
    release("c2", store, secrets)
    assert sorted(release("c1", store, secrets, remove_anonymous=True)) == sorted(anon.values())
    assert store.exists("shared")  # named volumes are kept by rm -v
    assert not any(store.exists(n) for n in (anon["/cache"], anon["/var/lib/app"]))
    assert not (tmp_path / "secrets" / "c1").exists()
    no_leaks()


def test_prepare_failure_leaves_nothing(store, tmp_path) -> None:
    secrets = SecretFiles(tmp_path / "secrets")
    dup = [SecretFile("a", "secret", "/x", b"1"), SecretFile("b", "secret", "/x", b"2")]
    with pytest.raises(UserError, match="duplicate secret/config target"):
        prepare("c1", {"Binds": ["newvol:/d"]}, None, store, secrets, files=dup, pin_root=tmp_path / "pins")
    assert not store.exists("newvol")
    assert list(Path(tmp_path / "pins").iterdir()) == []
