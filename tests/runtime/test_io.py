"""Container I/O through the shim: a tty copied into the json-file log, stdin kept open
through a FIFO, exec with a pty; and per-container files bind-mounted over /etc."""
from __future__ import annotations

import json
import os
import time

import pytest

from pystack.errors import UserError
from rtutil import new_id, run_container


def test_terminal_output_goes_to_the_log(runtime, make_bundle, overlay, tmp_path):
    def tty(spec):
        spec["process"]["terminal"] = True
    b = make_bundle(["sh", "-c", "tty; echo on-tty"], edit=tty)
    cid = new_id()
    log = tmp_path / "tty.log"
    runtime.create(cid, b, log_path=log, **overlay())
    runtime.start(cid)
    assert runtime.wait(cid, timeout=10) == 0
    runtime.delete(cid)
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    text = "".join(e["log"] for e in entries)
    assert "/dev/pts/0" in text and "on-tty" in text
    assert {e["stream"] for e in entries} == {"stdout"}  # a tty has one stream, as in Docker


def test_stdin_fifo_feeds_the_container(runtime, make_bundle, overlay, tmp_path):
    b = make_bundle(["sh", "-c", "read line; echo got:$line"])
    cid = new_id()
    log = tmp_path / "in.log"
    st = runtime.create(cid, b, log_path=log, stdin=True, **overlay())
    runtime.start(cid)
    fd = os.open(st["stdinPath"], os.O_WRONLY)
    os.write(fd, b"hello\n")
    os.close(fd)
    assert runtime.wait(cid, timeout=10) == 0
    runtime.delete(cid)
    assert json.loads(log.read_text().splitlines()[-1])["log"] == "got:hello\n"


def test_exec_with_a_pty(runtime, make_bundle, overlay):
    cid = new_id()
    runtime.create(cid, make_bundle(["sleep", "30"]), **overlay())
    runtime.start(cid)
    try:
        p = runtime.exec(cid, {"args": ["sh", "-c", "tty; echo done"]}, tty=True)
        assert p.pty is not None
        out = b""
        deadline = time.monotonic() + 10
        while b"done" not in out and time.monotonic() < deadline:
            try:
                out += os.read(p.pty, 1024)
            except OSError:
                break
        assert p.wait(10) == 0
        assert b"/dev/pts/" in out and b"done" in out
        p.close()
    finally:
        runtime.delete(cid, force=True)


def test_etc_files_bind_mounted(runtime, make_bundle, overlay, tmp_path):
    files = {"hostname": "web-1\n", "hosts": "127.0.0.1 localhost\n10.214.0.5 web-1\n",
             "resolv.conf": "nameserver 10.214.0.1\noptions ndots:0\n"}
    for name, text in files.items():
        (tmp_path / name).write_text(text)

    def binds(spec):
        spec["mounts"] += [{"destination": f"/etc/{n}", "type": "bind",
                            "source": str(tmp_path / n), "options": ["rbind", "ro"]}
                           for n in files]
    script = ("cat /etc/hostname /etc/hosts /etc/resolv.conf; "
              "(echo x >> /etc/hosts) 2>/dev/null && echo WRITABLE; true")
    code, out = run_container(runtime, make_bundle(["sh", "-c", script], edit=binds), overlay())
    assert code == 0
    assert out == "".join(files.values())
    assert (tmp_path / "hosts").read_text() == files["hosts"]


def test_user_namespace_refused_clearly(runtime, make_bundle, overlay):
    def userns(spec):
        spec["linux"]["namespaces"].append({"type": "user"})
        spec["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        spec["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    with pytest.raises(UserError, match="user namespaces"):
        runtime.create(new_id(), make_bundle(["true"], edit=userns), **overlay())
    assert runtime.list() == []
