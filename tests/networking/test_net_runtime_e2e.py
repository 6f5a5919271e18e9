"""End to end with the project's own runtime (pystack.runtime.Runtime): two real
containers in sandboxes made by the NetworkManager, joined by path as docs/contracts.md
says; the client reaches the server by its service name through the resolv.conf and
hosts files the manager writes, and through the server's published port on the host."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from pystack.networking import EndpointSpec, PortSpec

runtime_mod = pytest.importorskip("pystack.runtime")
spec_mod = pytest.importorskip("pystack.runtime.spec")


@pytest.fixture
def rt(tmp_path, monkeypatch, unique_name):
    """A Runtime with its own cgroup parent; containers deleted and the parent's (empty)
    cgroup directories removed afterwards, and checked gone."""
    parent = f"pystack-test-{unique_name}"
    monkeypatch.setenv("PYSTACK_CGROUP_PARENT", parent)
    runtime = runtime_mod.Runtime(tmp_path / "rt-state")
    yield runtime
    for st in runtime.list():
        try:
            runtime.delete(st["id"], force=True)
        except Exception:  # noqa: BLE001 - best-effort cleanup of what the test made
            pass
    runtime.close()
    root = Path("/sys/fs/cgroup")
    dirs = [root / parent] + [d / parent for d in root.iterdir() if d.is_dir()]
    for d in dirs:
        if d.is_dir():
            d.rmdir()  # fails (and so the test) if a container cgroup is still inside
    assert not [d for d in dirs if d.exists()]


def _bundle(tmp_path: Path, name: str, args: list[str], netns: Path, files: dict[str, Path]) -> Path:
    bundle = tmp_path / f"bundle-{name}"
    (bundle / "rootfs").mkdir(parents=True)
    spec = spec_mod.default_spec(args, hostname=name)
    spec["linux"]["namespaces"] = [ns for ns in spec["linux"]["namespaces"] if ns["type"] != "network"]
    spec["linux"]["namespaces"].append({"type": "network", "path": str(netns)})
    for target, src in files.items():
        spec["mounts"].append({"destination": target, "type": "bind", "source": str(src),
                               "options": ["rbind", "ro"]})
    (bundle / "config.json").write_text(json.dumps(spec))
    return bundle


def _overlay(tmp_path: Path, name: str, lower: Path) -> dict:
    up, work = tmp_path / f"up-{name}", tmp_path / f"work-{name}"
    up.mkdir()
    work.mkdir()
    return {"rootfs_lowerdirs": [lower], "rootfs_upper": up, "rootfs_work": work}


def _files(nm, tmp_path: Path, cid: str, hostname: str) -> dict[str, Path]:
    resolv, hosts = tmp_path / f"{hostname}.resolv", tmp_path / f"{hostname}.hosts"
    resolv.write_text(nm.resolv_conf(cid))
    hosts.write_text(nm.hosts_file(cid, hostname, extra_hosts=["host.internal:host-gateway"]))
    return {"/etc/resolv.conf": resolv, "/etc/hosts": hosts}


def test_runtime_containers_talk_by_service_name(nm, make_net, rt, tmp_path, busybox_rootfs, unique_name):
    net = make_net()
    web, client = f"{unique_name}-web", f"{unique_name}-client"
    wpath, _, _ = nm.attach_container(web, [(net.id, EndpointSpec(names=[f"{unique_name}-web-1", "web"]))])
    [port] = nm.publish(web, [PortSpec(container_port=80)])
    cpath, _, _ = nm.attach_container(client, [(net.id, EndpointSpec(names=["client"]))])
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "index.html").write_text("from a pystack container")
    wfiles = _files(nm, tmp_path, web, "web")
    wfiles["/www"] = tmp_path / "www"
    rt.create(web, _bundle(tmp_path, "web", ["httpd", "-f", "-p", "80", "-h", "/www"], wpath, wfiles),
              log_path=tmp_path / "web.log", **_overlay(tmp_path, "web", busybox_rootfs))
    rt.start(web)
    script = ("for i in $(seq 50); do wget -q -O - http://web/ 2>/dev/null && break; sleep 0.1; done; echo;"
              f" wget -q -O - http://host.internal:{port.host_port}/")
    rt.create(client, _bundle(tmp_path, "client", ["sh", "-c", script], cpath, _files(nm, tmp_path, client, "client")),
              log_path=tmp_path / "client.log", **_overlay(tmp_path, "client", busybox_rootfs))
    rt.start(client)
    assert rt.wait(client, timeout=60) == 0
    out = "".join(json.loads(line)["log"] for line in (tmp_path / "client.log").read_text().splitlines())
    assert out.splitlines() == ["from a pystack container", "from a pystack container"]
    rt.kill(web, "KILL")
    rt.wait(web, timeout=30)
    for cid in (web, client):
        rt.delete(cid, force=True)
        nm.remove_sandbox(cid)
