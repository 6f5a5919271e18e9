"""A private pystackd per test module: its own root, run dir and socket."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


class EngineProcess:
    """A running pystackd started by a test; stopped by PID in teardown."""

    def __init__(self, base: Path) -> None:
        self.root = base / "root"
        self.run = base / "run"
        self.socket = base / "pystack.sock"
        self.env = {**os.environ, "PYSTACK_ROOT": str(self.root), "PYSTACK_RUN": str(self.run),
                    "PYSTACK_HOST": f"unix://{self.socket}"}
        self.log = open(base / "pystackd.log", "w+")
        self.proc = subprocess.Popen([sys.executable, "-m", "pystack.engine.daemon"], env=self.env,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while not self.socket.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.log.seek(0)
                raise RuntimeError(f"pystackd did not start: {self.log.read()}")
            time.sleep(0.02)

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


@pytest.fixture
def engine(tmp_path_factory) -> EngineProcess:
    proc = EngineProcess(tmp_path_factory.mktemp("engine"))
    yield proc
    proc.stop()
