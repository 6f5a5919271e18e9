"""``pystack-runtime`` as runc: the same commands, flags and ``state`` JSON, a pid file,
a console socket for ``terminal: true``, exec into a running container."""
from __future__ import annotations

import array
import json
import os
import shutil
import socket
import subprocess
import threading
import time

import pytest

from rtutil import new_id


def prt(root, *args, check=True, **kw) -> subprocess.CompletedProcess:
    """Run the command; ``create`` and ``run -d`` hand their stdio to the container (as
    runc does), so for those the output goes to files, not pipes we would wait on."""
    import tempfile
    if args and args[0] in ("create", "run"):
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            rc = subprocess.run(["pystack-runtime", "--root", str(root), *args], stdout=out,
                                stderr=err, timeout=30, stdin=subprocess.DEVNULL, **kw).returncode
            out.seek(0)
            err.seek(0)
            p = subprocess.CompletedProcess(args, rc, out.read(), err.read())
    else:
        p = subprocess.run(["pystack-runtime", "--root", str(root), *args], capture_output=True,
                           text=True, timeout=30, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"pystack-runtime {args}: {p.returncode} {p.stderr}")
    return p


def test_lifecycle_commands(make_bundle, tmp_path):
    b = make_bundle(["sleep", "30"], copy=True)
    root = tmp_path / "root"
    cid = new_id()
    pidfile = tmp_path / "pid"
    prt(root, "create", "--bundle", str(b), "--pid-file", str(pidfile), cid)
    st = json.loads(prt(root, "state", cid).stdout)
    assert st["status"] == "created" and st["pid"] == int(pidfile.read_text())
    # runc's state keys are all there
    assert {"ociVersion", "id", "pid", "status", "bundle", "rootfs", "created", "owner"} <= set(st)
    prt(root, "start", cid)
    assert json.loads(prt(root, "state", cid).stdout)["status"] == "running"
    listing = prt(root, "list").stdout
    assert cid in listing and "running" in listing
    assert [c["id"] for c in json.loads(prt(root, "list", "--format", "json").stdout)] == [cid]
    assert json.loads(prt(root, "ps", "--format", "json", cid).stdout) == [st["pid"]]
    ex = prt(root, "exec", cid, "sh", "-c", "echo in-$(hostname); exit 3", check=False)
    assert ex.returncode == 3 and ex.stdout.strip() == "in-ctest"
    assert prt(root, "delete", cid, check=False).returncode != 0  # running: refused
    prt(root, "kill", cid, "KILL")
    for _ in range(200):
        if json.loads(prt(root, "state", cid).stdout)["status"] == "stopped":
            break
        time.sleep(0.02)
    assert json.loads(prt(root, "state", cid).stdout)["status"] == "stopped"
    prt(root, "delete", cid)
    p = prt(root, "state", cid, check=False)
    assert p.returncode != 0 and "does not exist" in p.stderr and "Traceback" not in p.stderr


def test_state_json_matches_runc(make_bundle, tmp_path):
    if shutil.which("runc") is None:
        pytest.skip("runc not installed")
    b = make_bundle(["sleep", "30"], copy=True)
    cid = new_id()
    ours = tmp_path / "ours"
    theirs = tmp_path / "theirs"
    prt(ours, "create", "--bundle", str(b), cid)
    subprocess.run(["runc", "--root", str(theirs), "create", "--bundle", str(b), cid + "r"],
                   check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    try:
        a = json.loads(prt(ours, "state", cid).stdout)
        r = json.loads(subprocess.run(["runc", "--root", str(theirs), "state", cid + "r"],
                                      capture_output=True, text=True, check=True).stdout)
        for key in r:
            assert key in a
        assert (a["status"], a["bundle"], a["rootfs"]) == (r["status"], r["bundle"], r["rootfs"])
    finally:
        prt(ours, "delete", "--force", cid, check=False)
        subprocess.run(["runc", "--root", str(theirs), "delete", "--force", cid + "r"],
                       capture_output=True)


def test_run_foreground_exit_code_and_bad_input(make_bundle, tmp_path):
    b = make_bundle(["sh", "-c", "echo hi; exit 5"], copy=True)
    p = prt(tmp_path / "root", "run", new_id(), cwd=b, check=False)
    assert (p.returncode, p.stdout) == (5, "hi\n"), p.stderr
    assert [n for n in os.listdir(tmp_path / "root") if not n.startswith(".")] == []
    p = prt(tmp_path / "root", "run", "--bundle", str(tmp_path), new_id(), check=False)
    assert p.returncode != 0 and "config.json" in p.stderr and "Traceback" not in p.stderr
    bad = make_bundle(["nosuchprogram"], copy=True)
    log = tmp_path / "runtime.log"
    p = prt(tmp_path / "root", "--log", str(log), "--log-format", "json", "run", "--bundle",
            str(bad), new_id(), check=False)
    assert p.returncode == 127 and "nosuchprogram" in p.stderr
    assert json.loads(log.read_text().splitlines()[-1])["level"] == "error"
    # the cgroups are made while the init builds its mounts: a limit the kernel refuses
    # is still one clear line, and nothing is left (state, cgroups: the fixture checks)
    cpus = os.cpu_count() or 1
    refused = make_bundle(["true"], copy=True, edit=lambda s: s["linux"]["resources"].setdefault(
        "cpu", {}).update({"cpus": str(cpus + 7)}))
    p = prt(tmp_path / "root", "run", "--bundle", str(refused), new_id(), check=False)
    assert p.returncode == 1 and "linux.resources.cpu.cpus" in p.stderr, p.stderr
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert [n for n in os.listdir(tmp_path / "root") if not n.startswith(".")] == []


def _console_server(path: str, got: dict) -> threading.Thread:
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)

    def serve():
        conn, _ = srv.accept()
        fds = array.array("i")
        msg, anc, _, _ = conn.recvmsg(1024, socket.CMSG_LEN(fds.itemsize))
        for level, kind, data in anc:
            fds.frombytes(data[:fds.itemsize])
        got["name"], got["fd"] = msg, fds[0]
        conn.close()
        srv.close()
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return t


def test_terminal_through_console_socket(make_bundle, tmp_path):
    def tty(spec):
        spec["process"]["terminal"] = True
    b = make_bundle(["sh", "-c", "tty; stty size 2>/dev/null; ls -l /dev/console | cut -c1; exit 0"],
                    copy=True, edit=tty)
    sock = str(tmp_path / "console.sock")
    got: dict = {}
    t = _console_server(sock, got)
    root = tmp_path / "root"
    cid = new_id()
    prt(root, "create", "--bundle", str(b), "--console-socket", sock, cid)
    t.join(10)
    master = got["fd"]
    prt(root, "start", cid)
    out = b""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    prt(root, "delete", "--force", cid)
    text = out.decode()
    assert "/dev/pts/0" in text  # the container's own devpts instance
    assert "c" in text.split()  # /dev/console is a character device (the pty)


def test_run_with_terminal_in_the_foreground(make_bundle, tmp_path):
    """runc's behaviour: `run` of a terminal bundle without --console-socket proxies the
    container's pty to its own stdio."""
    def tty(spec):
        spec["process"]["terminal"] = True
    b = make_bundle(["sh", "-c", "tty; read line; echo got:$line; exit 4"], copy=True, edit=tty)
    p = subprocess.run(["pystack-runtime", "--root", str(tmp_path / "root"), "run", new_id()],
                       cwd=b, input="hello\n", capture_output=True, text=True, timeout=30)
    assert p.returncode == 4, p.stderr
    out = p.stdout.replace("\r", "")
    assert "/dev/pts/0" in out and "got:hello" in out


def test_preserve_fds(make_bundle, tmp_path):
    """--preserve-fds N: the caller's fds 3..3+N-1 reach the container (socket activation)."""
    b = make_bundle(["sh", "-c", "echo through-fd3 >&3; ls /proc/self/fd | wc -l"], copy=True)
    r, w = os.pipe()
    import sys
    launcher = ("import os, sys; os.dup2(int(sys.argv[1]), 3); os.close(int(sys.argv[1])); "
                "os.execvp('pystack-runtime', ['pystack-runtime', '--root', sys.argv[2], 'run', "
                "'--preserve-fds', '1', sys.argv[3]])")
    p = subprocess.run([sys.executable, "-c", launcher, str(w), str(tmp_path / "root"), new_id()],
                       cwd=b, pass_fds=(w,), capture_output=True, text=True, timeout=30,
                       stdin=subprocess.DEVNULL)
    os.close(w)
    assert p.returncode == 0, p.stderr
    assert os.read(r, 100) == b"through-fd3\n"
    os.close(r)
    # stdio, fd 3, and ls's own directory fd: nothing else leaked in
    assert p.stdout.strip() == "5"


def test_fast_launcher_is_the_same_command(make_bundle, tmp_path):
    """``python -m pystack.runtime.launcher DEST`` writes a ``python -S`` launcher: the same
    command (output, exit codes, error messages, state under --root), without ``site``."""
    from pystack.runtime import launcher
    fast = launcher.write(tmp_path / "pystack-runtime-fast")
    first = open(fast).readline()
    assert first.startswith("#!/") and first.rstrip().endswith(" -S")
    b = make_bundle(["sh", "-c", "echo hi; exit 5"], copy=True)
    root = tmp_path / "root"
    p = subprocess.run([fast, "--root", str(root), "run", new_id()], cwd=b, timeout=30,
                       stdin=subprocess.DEVNULL, capture_output=True, text=True)
    assert (p.returncode, p.stdout) == (5, "hi\n"), p.stderr
    # no site: the interpreter it runs has no site-packages on sys.path, and still works
    probe = subprocess.run([fast, "--version"], capture_output=True, text=True, timeout=30)
    assert probe.returncode == 0 and "pystack-runtime version" in probe.stdout
    bad = subprocess.run([fast, "--root", str(root), "run", "--bundle", str(tmp_path),
                          new_id()], capture_output=True, text=True, timeout=30)
    assert bad.returncode != 0 and "config.json" in bad.stderr and "Traceback" not in bad.stderr
    assert [n for n in os.listdir(root) if not n.startswith(".")] == []
    # a created container is visible to the console script, and the other way round
    b2 = make_bundle(["sleep", "30"], copy=True)
    cid = new_id()
    # (create hands its stdio to the container, as runc: no pipes to wait on)
    out = subprocess.run([fast, "--root", str(root), "create", "--bundle", str(b2), cid],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, timeout=30)
    try:
        assert out.returncode == 0
        assert json.loads(prt(root, "state", cid).stdout)["status"] == "created"
    finally:
        prt(root, "delete", "--force", cid)
    assert launcher.main(["-h"]) == 2


def test_start_path_stays_off_the_heavy_modules(make_bundle, tmp_path):
    """``run`` (and ``create``, ``state``, ``start``, ``delete``) import no re, enum,
    functools, collections, pathlib, json...: on a slow VM they cost the one-shot command
    ~20 ms of CPU per run, more than runc's whole start-up (see cli.py, minijson.py,
    cgroups.common.CgPath). Started as the launcher starts it (python -S)."""
    from pystack.runtime import launcher
    heavy = ("re", "enum", "functools", "collections", "pathlib", "json", "typing",
             "dataclasses", "inspect", "hashlib", "shutil", "threading", "selectors",
             "signal", "array", "urllib.parse", "subprocess", "argparse")
    text = launcher.script().replace("sys.exit(main())", (
        "rc = main(sys.argv[1:])\n"
        f"print(rc, [m for m in {heavy!r} if m in sys.modules], file=sys.stderr)\n"))
    probe = tmp_path / "probe"
    probe.write_text(text)
    b = make_bundle(["sh", "-c", "exit 3"], copy=True)
    root = tmp_path / "root"
    cid = new_id()
    for args in (["run", new_id()], ["create", cid], ["state", cid], ["start", cid],
                 ["delete", "--force", cid]):
        # (create hands its stdio to the container, as runc: files, not pipes)
        with open(tmp_path / "err", "w+") as err:
            rc = subprocess.run([launcher.sys.executable, "-S", str(probe), "--root",
                                 str(root), *args], cwd=b, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err, timeout=30).returncode
            err.seek(0)
            last = err.read().splitlines()[-1]
        assert last == f"{3 if args[0] == 'run' else 0} []", (args, rc, last)


@pytest.mark.parametrize("argv", [
    ["run", "x"], ["--root", "/r", "run", "-d", "--pid-file", "p", "x"],
    ["--root=/r", "--log", "l", "--log-format", "json", "create", "--bundle", "b",
     "--console-socket", "s", "--pid-file", "/p", "id1"],
    ["run", "--preserve-fds", "2", "-b", "bb", "--keep", "c"], ["start", "x"], ["state", "x"],
    ["delete", "-f", "x"], ["kill", "x"], ["kill", "-a", "x", "KILL"],
    ["--debug", "--systemd-cgroup", "delete", "x"], ["create", "--no-pivot", "x"],
    ["run", "--bundle=/b", "x"]])
def test_fast_parse_equals_argparse(argv):
    """The per-container commands skip argparse (~3 ms per call): same result."""
    from pystack.runtime import cli
    fast = cli._fast_parse(list(argv))
    assert fast is not None and vars(fast) == vars(cli._parser(argv).parse_args(argv))


@pytest.mark.parametrize("argv", [
    ["run"], ["run", "a", "b"], ["--rootless", "true", "run", "x"], ["run", "--bun", "b", "x"],
    ["list"], ["-v"], ["run", "-bx", "x"], ["kill", "x", "a", "b"],
    ["run", "--preserve-fds", "x", "y"], ["run", "--log", "l", "x"], ["run", "--", "x"],
    ["run", "-h"]])
def test_fast_parse_leaves_the_rest_to_argparse(argv):
    from pystack.runtime import cli
    assert cli._fast_parse(list(argv)) is None
