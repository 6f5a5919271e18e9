"""The README's quickstart (examples/quickstart) brought up, used and taken down for real."""
from __future__ import annotations

import json
import urllib.request
from pathlib import Path

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart" / "compose.yaml"


def test_quickstart(stack):
    # the example publishes 127.0.0.1:18080; the test takes any free port instead
    override = stack.write('services:\n  web:\n    ports: !override ["127.0.0.1::8080"]\n', "override.yaml")
    files = ["-f", str(QUICKSTART), "-f", str(override)]
    stack.run(*files, "up", "-d", "--wait", "--wait-timeout", "60")
    rows = [json.loads(line) for line in stack.run(*files, "ps", "-a", "--format", "json").stdout.splitlines()]
    state = {r["Service"]: (r["State"], r["Health"], r["ExitCode"]) for r in rows}
    assert state == {"init": ("exited", "", 0), "web": ("running", "healthy", 0),
                     "client": ("running", "", 0)}
    port = stack.run(*files, "port", "web", "8080").stdout.strip().rpartition(":")[2]
    page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10).read()
    assert page == b"hello from pystack\n"
    # the client reached the server by its service name
    assert stack.run(*files, "logs", "--no-log-prefix", "client").stdout == "hello from pystack\n"
    stack.run(*files, "down")
    assert stack.containers() == []
    label = f"com.docker.compose.project={stack.name}"
    assert [v["Name"] for v in stack.client().volumes(labels=[label])] == [f"{stack.name}_site"]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_quickstart_script(stack):
    """scripts/quickstart.sh as the README runs it (minus the install step), on the test engine."""
    import subprocess
    import sys

    script = QUICKSTART.parents[2] / "scripts" / "quickstart.sh"
    port = _free_port()
    env = dict(stack.env, PYSTACK_SKIP_INSTALL="1", QUICKSTART_PORT=str(port),
               PYSTACK_VENV=str(Path(sys.executable).parent.parent))
    proc = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=180,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"stdout: {proc.stdout}\nstderr: {proc.stderr}"
    out = proc.stdout
    # ps showed the three services, the page came through the published port, the client's log
    assert f"{stack.name}-web-1" in out and f"{stack.name}-client-1" in out and f"{stack.name}-init-1" in out
    assert f"127.0.0.1:{port}->8080/tcp" in out
    assert out.count("hello from pystack") >= 2
    assert f"client-1  | hello from pystack" in out
    # down -v removed everything, the named volume too
    label = f"com.docker.compose.project={stack.name}"
    assert stack.containers() == []
    assert stack.client().volumes(labels=[label]) == []
    assert stack.client().networks(labels=[label]) == []
