"""Many create/start/kill/delete cycles through the library leak nothing in the calling
process (file descriptors, memory, threads) nor on the host (state dirs, cgroups)."""
from __future__ import annotations

import os
import threading

import pytest

from rtutil import new_id

CYCLES = int(os.environ.get("PYSTACK_LEAK_CYCLES", "100"))


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@pytest.mark.slow
def test_cycles_leak_nothing(runtime, make_bundle, overlay, tmp_path, no_leaks):
    b = make_bundle(["sleep", "30"])
    kw = overlay()

    def cycle() -> None:
        cid = new_id()
        runtime.create(cid, b, **kw)
        runtime.start(cid)
        runtime.kill(cid, "KILL")
        assert runtime.wait(cid, timeout=10) == 137
        runtime.delete(cid)

    for _ in range(10):  # warm up: fork server, caches, first-use imports
        cycle()
    def fds_but_spares() -> int:
        # the sockets of the fork server's spares the runtime holds: 0..PYSTACK_RUNTIME_SPARES
        # depending on how far their replacement has got, not a leak
        return _fds() - len(runtime._fs._spares)

    fds, rss, threads = fds_but_spares(), _rss_kib(), threading.active_count()
    for _ in range(CYCLES):
        cycle()
    assert fds_but_spares() == fds
    assert threading.active_count() == threads
    assert _rss_kib() - rss < 4096, f"RSS grew by {_rss_kib() - rss} KiB over {CYCLES} cycles"
    assert runtime.list() == []
    assert os.listdir(tmp_path / "state") == []
    no_leaks()
