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
