"""End to end with a real container: runc (the OCI runtime oracle) runs busybox in a
sandbox made by the NetworkManager, joined by path as the runtime contract says, with
the resolv.conf and hosts the manager writes. Service names then resolve through the
container's own resolver configuration, not through an explicit server argument."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from pystack.networking import EndpointSpec, PortSpec
from nethelpers import serve_http

pytestmark = pytest.mark.skipif(shutil.which("runc") is None, reason="runc not installed")


def _bundle(tmp_path, rootfs, netns, files, args):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    subprocess.run(["runc", "spec", "--bundle", str(bundle)], check=True)
    spec = json.loads((bundle / "config.json").read_text())
    spec["process"]["terminal"] = False
    spec["process"]["args"] = args
    spec["root"] = {"path": str(rootfs), "readonly": True}
    spec["hostname"] = "client"
    spec["linux"]["namespaces"] = [ns for ns in spec["linux"]["namespaces"] if ns["type"] != "network"]
    spec["linux"]["namespaces"].append({"type": "network", "path": str(netns)})
    for target, path in files.items():
        spec["mounts"].append({"destination": target, "type": "bind", "source": str(path),
                               "options": ["rbind", "ro"]})
    (bundle / "config.json").write_text(json.dumps(spec))
    return bundle


def test_container_resolves_services_through_its_resolv_conf(nm, make_net, procs, tmp_path,
                                                             busybox_rootfs, unique_name):
    net = make_net()
    web, client = unique_name + "w", unique_name + "c"
    nm.create_sandbox(web)
    nm.connect(web, net.id, EndpointSpec(names=[f"{unique_name}-web-1", "web"]))
    serve_http(procs, nm.sandbox_path(web), tmp_path / "www", "served to a container")
    path = nm.create_sandbox(client)
    nm.connect(client, net.id, EndpointSpec(names=[f"{unique_name}-client-1", "client"]))
    files = {"/etc/resolv.conf": tmp_path / "resolv.conf", "/etc/hosts": tmp_path / "hosts"}
    files["/etc/resolv.conf"].write_text(nm.resolv_conf(client))
    files["/etc/hosts"].write_text(nm.hosts_file(client, "client", extra_hosts=["host.internal:host-gateway"]))
    # and back through the host: extra_hosts host-gateway + a published port of web
    [port] = nm.publish(web, [PortSpec(container_port=80)])
    bundle = _bundle(tmp_path, busybox_rootfs, path, files,
                     ["sh", "-c", "wget -q -O - http://web/ && echo &&"
                      f" wget -q -O - http://host.internal:{port.host_port}/"])
    root = tmp_path / "runc-root"
    cid = f"{unique_name}-runc"
    try:
        proc = subprocess.run(["runc", "--root", str(root), "run", "--bundle", str(bundle), cid],
                              capture_output=True, text=True, timeout=60)
    finally:
        subprocess.run(["runc", "--root", str(root), "delete", "--force", cid], capture_output=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["served to a container", "served to a container"]
