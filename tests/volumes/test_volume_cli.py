"""`pystack volume ...` end to end, as a user runs it (a real process, PYSTACK_ROOT under tmp):
the commands go through the engine, which the CLI starts on first use; stopped by PID after."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting for its (sub)reaper."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _stop_engine(run_dir: Path) -> None:
    """Stop the pystackd the CLI started for this test (by the PID it wrote)."""
    import signal
    import time
    try:
        pid = int((run_dir / "pystackd.pid").read_text())
        if b"pystack" not in Path(f"/proc/{pid}/cmdline").read_bytes():
            return
    except (OSError, ValueError):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _running(pid):
        os.kill(pid, signal.SIGKILL)


@pytest.fixture
def pystack(tmp_path: Path):
    env = dict(os.environ, PYSTACK_ROOT=str(tmp_path / "state"), PYSTACK_RUN=str(tmp_path / "run"))
    env.pop("PYSTACK_HOST", None)

    def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
        p = subprocess.run([sys.executable, "-c", "from pystack.cli import main; main()", *args],
                           capture_output=True, text=True, env=env, timeout=60)
        if ok:
            assert p.returncode == 0, p.stderr
        return p
    yield run
    _stop_engine(tmp_path / "run")


def test_volume_lifecycle(pystack, tmp_path: Path) -> None:
    assert pystack("volume", "create", "--label", "team=a", "data1").stdout == "data1\n"
    anon = pystack("volume", "create").stdout.strip()
    assert len(anon) == 64
    ls = pystack("volume", "ls").stdout.splitlines()
    assert ls[0].split() == ["DRIVER", "VOLUME", "NAME"] and ["local", "data1"] in [line.split() for line in ls]
    assert pystack("volume", "ls", "-q", "--filter", "label=team=a").stdout == "data1\n"
    info = json.loads(pystack("volume", "inspect", "data1").stdout)
    assert info[0]["Labels"] == {"team": "a"}
    assert info[0]["Mountpoint"] == str(tmp_path / "state/volumes/data1/_data")
    out = pystack("volume", "prune", "-f").stdout
    assert anon in out and "data1" not in out
    assert pystack("volume", "rm", "data1").stdout == "data1\n"
    assert pystack("volume", "ls", "-q").stdout == ""


def test_volume_snapshot_restore(pystack, tmp_path: Path) -> None:
    pystack("volume", "create", "db")
    data = tmp_path / "state/volumes/db/_data"
    (data / "table").write_bytes(b"v1" * 1000)
    p = pystack("volume", "snapshot", "db", "v1")
    assert p.stdout == "db:v1\n"
    (data / "table").write_bytes(b"broken")
    assert pystack("volume", "restore", "db", "v1").stdout == "db:v1\n"
    assert (data / "table").read_bytes() == b"v1" * 1000
    listing = pystack("volume", "snapshot", "--list", "db").stdout.splitlines()
    assert listing[1].split()[:2] == ["db", "v1"]


@pytest.mark.parametrize("args,message", [
    (("volume", "create", "../etc"), "invalid characters for a local volume name"),
    (("volume", "create", "-o", "type=nfs", "nfsvol"), "type 'nfs' is not supported"),
    (("volume", "create", "-d", "rexray", "x1"), "driver 'rexray' is not supported"),
    (("volume", "inspect", "ghost"), "no such volume: ghost"),
    (("volume", "rm", "ghost"), "no such volume: ghost"),
    (("volume", "restore", "ghost", "t1"), "no snapshot t1 of volume ghost"),
])
def test_errors_are_one_line(pystack, args, message) -> None:
    p = pystack(*args, ok=False)
    assert p.returncode != 0
    assert p.stderr.strip().splitlines() == [p.stderr.strip()] and message in p.stderr
    assert "Traceback" not in p.stderr


def test_permission_problem_is_one_line(tmp_path: Path) -> None:
    """A non-root user on a root-owned store gets one line, not a traceback."""
    import shutil as sh

    if sh.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) missing")
    root = tmp_path / "state"
    root.mkdir(mode=0o700)
    env = dict(os.environ, PYSTACK_ROOT=str(root), PYSTACK_RUN=str(tmp_path / "run"))
    env.pop("PYSTACK_HOST", None)
    p = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c",
                        "from pystack.cli import main; main()", "volume", "create", "data1"],
                       capture_output=True, text=True, env=env, timeout=60)
    # the CLI goes through the engine: a non-root user cannot start one (nor use root's socket)
    assert p.returncode == 1 and "needs root" in p.stderr and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and not (tmp_path / "run" / "pystackd.pid").exists()


def test_inspect_prints_found_then_fails_for_missing(pystack) -> None:
    pystack("volume", "create", "here")
    p = pystack("volume", "inspect", "here", "ghost", ok=False)
    assert p.returncode == 1 and [v["Name"] for v in json.loads(p.stdout)] == ["here"]
    assert "no such volume: ghost" in p.stderr
