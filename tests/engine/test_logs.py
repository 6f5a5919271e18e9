"""Container logs through the Engine API: frames, since/until/tail/timestamps, follow,
rotation — unit tests of pystack.engine.logs plus real containers on a private engine."""
from __future__ import annotations

import json
import socket
import struct
import threading
import time

import pytest

from pystack.engine import logs
from pystack.engine.hijack import frame


def demux(raw: bytes) -> list[tuple[int, bytes]]:
    """Docker's multiplexed stream -> [(stream, payload)]; fails on a bad header."""
    out, i = [], 0
    while i < len(raw):
        assert len(raw) - i >= 8, f"cut header at {i}: {raw[i:]!r}"
        stream, size = raw[i], struct.unpack(">I", raw[i + 4:i + 8])[0]
        assert stream in (0, 1, 2) and raw[i + 1:i + 4] == b"\0\0\0"
        out.append((stream, raw[i + 8:i + 8 + size]))
        i += 8 + size
    return out


def joined(raw: bytes, stream: int | None = None) -> bytes:
    return b"".join(d for s, d in demux(raw) if stream is None or s == stream)


# -- units ---------------------------------------------------------------------------------

def test_frame_header() -> None:
    assert frame(1, b"hi\n") == b"\x01\x00\x00\x00\x00\x00\x00\x03hi\n"
    assert frame(2, b"x" * 300)[:8] == b"\x02\x00\x00\x00\x00\x00\x01\x2c"


def test_time_parsing() -> None:
    assert logs.rfc3339_to_ns("1970-01-01T00:00:01.5Z") == 1_500_000_000
    assert logs.rfc3339_to_ns("2026-11-28T12:00:00.000000001Z") == 1795867200_000000001
    assert logs.rfc3339_to_ns("1970-01-01T01:00:00+01:00") == 0
    assert logs.parse_api_time("1700000000") == 1700000000 * 10**9
    assert logs.parse_api_time("1700000000.25") == 1700000000_250000000
    assert logs.parse_api_time("1700000000.000000001") == 1700000000_000000001
    assert logs.parse_api_time("0") is None and logs.parse_api_time("") is None
    with pytest.raises(Exception, match="invalid time value"):
        logs.parse_api_time("yesterday")
    assert logs.parse_tail("all") is None and logs.parse_tail("-1") is None and logs.parse_tail("3") == 3
    with pytest.raises(Exception, match="invalid tail"):
        logs.parse_tail("lots")


def _write_log(path, entries) -> None:
    with open(path, "a") as fh:
        for stream, text, t in entries:
            fh.write(json.dumps({"log": text, "stream": stream, "time": t}) + "\n")


def test_history_across_rotated_files_tail_and_window(tmp_path) -> None:
    log = tmp_path / "c-json.log"
    _write_log(tmp_path / "c-json.log.2", [("stdout", "one\n", "2026-01-01T00:00:01.000000000Z")])
    _write_log(tmp_path / "c-json.log.1", [("stderr", "two\n", "2026-01-01T00:00:02.000000000Z")])
    _write_log(log, [("stdout", "three\n", "2026-01-01T00:00:03.000000000Z"),
                     ("stdout", "four\n", "2026-01-01T00:00:04.000000000Z")])
    entries, offset, inode = logs.read_history(log, None)
    assert [e["log"] for e in entries] == ["one\n", "two\n", "three\n", "four\n"]
    assert offset == log.stat().st_size and inode == log.stat().st_ino
    assert [e["log"] for e in logs.read_history(log, 3)[0]] == ["two\n", "three\n", "four\n"]
    assert logs.read_history(log, 0)[0] == []
    opts = logs.LogOptions(since=logs.rfc3339_to_ns("2026-01-01T00:00:02Z"),
                           until=logs.rfc3339_to_ns("2026-01-01T00:00:03Z"))
    assert [opts.in_window(e) for e in entries] == [False, True, True, None]
    ts = logs.LogOptions(timestamps=True, tty=True)
    assert ts.encode(entries[0]) == b"2026-01-01T00:00:01.000000000Z one\n"


def test_follower_survives_rotation_truncation_and_partial_lines(tmp_path) -> None:
    log = tmp_path / "c-json.log"
    log.write_text("")
    f = logs.LogFollower(log, 0, log.stat().st_ino)
    assert list(f.read()) == []
    line = json.dumps({"log": "a\n", "stream": "stdout", "time": "2026-01-01T00:00:00Z"}) + "\n"
    with open(log, "a") as fh:
        fh.write(line + line[:10])  # a half-written second line
    assert [e["log"] for e in f.read()] == ["a\n"]
    with open(log, "a") as fh:
        fh.write(line[10:])
    assert [e["log"] for e in f.read()] == ["a\n"]
    # rotation: log -> log.1, a new log
    with open(log, "a") as fh:
        fh.write(line.replace('"a', '"b'))
    log.rename(tmp_path / "c-json.log.1")
    log.write_text(line.replace('"a', '"c'))
    assert [e["log"] for e in f.read()] == ["b\n", "c\n"]
    # truncation (max-file 1): the file is shorter than where we were
    log.write_text(json.dumps({"log": "d\n", "stream": "stdout"}) + "\n")
    assert [e["log"] for e in f.read()] == ["d\n"]
    f.close()


# -- real containers -----------------------------------------------------------------------

def _logs(api, cid: str, query: str) -> tuple[int, bytes, str]:
    conn = api._conn()
    try:
        conn.request("GET", f"/containers/{cid}/logs?{query}")
        resp = conn.getresponse()
        return resp.status, resp.read(), resp.getheader("Content-Type", "")
    finally:
        conn.close()


def test_logs_options_on_a_finished_container(api, unique_name) -> None:
    cid = api.run(["sh", "-c", "echo out1; echo err1 >&2; sleep 1.2; echo out2; echo err2 >&2"],
                  name=unique_name)
    assert api.wait(cid)["StatusCode"] == 0
    status, raw, ctype = _logs(api, cid, "stdout=1&stderr=1")
    assert status == 200 and ctype == "application/vnd.docker.multiplexed-stream"
    frames = demux(raw)
    assert joined(raw, 1) == b"out1\nout2\n" and joined(raw, 2) == b"err1\nerr2\n"
    assert len(frames) == 4
    assert joined(_logs(api, cid, "stdout=1")[1]) == b"out1\nout2\n"
    assert joined(_logs(api, cid, "stderr=1")[1]) == b"err1\nerr2\n"
    assert joined(_logs(api, cid, "stdout=1&stderr=1&tail=1")[1]) in (b"out2\n", b"err2\n")
    assert _logs(api, cid, "stdout=1&stderr=1&tail=0")[1] == b""
    # timestamps: RFC 3339 nano prefix
    ts_lines = joined(_logs(api, cid, "stdout=1&timestamps=1")[1]).decode().splitlines()
    assert len(ts_lines) == 2
    stamps = [logs.rfc3339_to_ns(line.split(" ", 1)[0]) for line in ts_lines]
    assert [line.split(" ", 1)[1] for line in ts_lines] == ["out1", "out2"]
    # since/until split the two halves (1.2 s apart)
    mid = (stamps[0] + stamps[1]) / 2 / 1e9
    assert joined(_logs(api, cid, f"stdout=1&since={mid:.9f}")[1]) == b"out2\n"
    assert joined(_logs(api, cid, f"stdout=1&until={mid:.9f}")[1]) == b"out1\n"
    # user mistakes
    status, raw, _ = _logs(api, cid, "")
    assert status == 400 and b"at least one stream" in raw
    assert _logs(api, cid, "stdout=1&since=yesterday")[0] == 400
    assert _logs(api, "nosuchcontainer", "stdout=1")[0] == 404


def test_tty_logs_are_raw(api, unique_name) -> None:
    cid = api.run(["sh", "-c", "echo hello tty"], name=unique_name, Tty=True)
    api.wait(cid)
    status, raw, ctype = _logs(api, cid, "stdout=1&stderr=1")
    assert status == 200 and ctype == "application/vnd.docker.raw-stream"
    assert raw.replace(b"\r\n", b"\n") == b"hello tty\n"


def test_follow_streams_until_the_container_exits(api, unique_name) -> None:
    cid = api.run(["sh", "-c", "for i in 1 2 3; do echo line$i; sleep 0.3; done; echo bye >&2"],
                  name=unique_name)
    conn = api._conn()
    conn.request("GET", f"/containers/{cid}/logs?stdout=1&stderr=1&follow=1")
    resp = conn.getresponse()
    assert resp.status == 200
    raw = resp.read()  # returns only once the stream ends: after the exit
    conn.close()
    assert joined(raw, 1) == b"line1\nline2\nline3\n" and joined(raw, 2) == b"bye\n"
    assert api.inspect(cid)["State"]["Status"] == "exited"


def test_follow_ends_when_the_client_goes(api, busybox_engine, unique_name) -> None:
    cid = api.run(["sh", "-c", "while true; do echo tick; sleep 0.1; done"], name=unique_name)
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(busybox_engine.socket))
    s.sendall(f"GET /containers/{cid}/logs?stdout=1&follow=1 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = b""
    while data.count(b"tick") < 3:
        chunk = s.recv(4096)
        assert chunk
        data += chunk
    s.close()
    # the engine still answers and the container still runs
    assert api.inspect(cid)["State"]["Running"] is True
    assert api.post(f"/containers/{cid}/kill")[0] == 204


def test_docker_py_logs_and_run_attached(busybox_engine, unique_name) -> None:
    client = busybox_engine.client()
    out = client.containers.run("busybox", ["sh", "-c", "echo from-run; echo e >&2"], name=unique_name,
                                remove=False)
    assert out == b"from-run\n"
    c = client.containers.get(unique_name)
    assert c.logs() == b"from-run\ne\n" or sorted(c.logs().splitlines()) == [b"e", b"from-run"]
    assert c.logs(stderr=False) == b"from-run\n"
    c2 = client.containers.run("busybox", ["sh", "-c", "for i in 1 2 3; do echo s$i; sleep 0.2; done"],
                               detach=True, name=unique_name + "b")
    got = b"".join(c2.logs(stream=True, follow=True))
    assert got == b"s1\ns2\ns3\n"
    c.remove()
    c2.remove(force=True)
    client.close()


def test_sigterm_ends_open_streams(api, busybox_engine, unique_name) -> None:
    """Open logs -f, attach and exec streams must not hold the engine's shutdown."""
    import signal
    import subprocess
    from tests.engine.test_attach import hijacked
    cid = api.run(["sh", "-c", "while true; do echo t; sleep 0.2; done"], name=unique_name)
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(busybox_engine.socket))
    s.sendall(f"GET /containers/{cid}/logs?stdout=1&follow=1 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert s.recv(100)
    a, _, _ = hijacked(busybox_engine, f"/containers/{cid}/attach?stream=1&stdout=1")
    _, out = api.post(f"/containers/{cid}/exec", {"Cmd": ["sleep", "60"], "AttachStdout": True})
    e, _, _ = hijacked(busybox_engine, f"/exec/{out['Id']}/start", b"{}")
    busybox_engine.proc.send_signal(signal.SIGTERM)
    try:
        busybox_engine.proc.wait(30)  # aiohttp would wait 60 s per handler
    except subprocess.TimeoutExpired:
        pytest.fail("pystackd did not stop while streams were open")
    assert busybox_engine.proc.returncode == 0
    for sock in (s, a, e):
        sock.settimeout(10)
        while sock.recv(65536):
            pass  # the engine closed them
        sock.close()
    busybox_engine.start()  # the container still runs: let the fixture remove it
    assert api.inspect(cid)["State"]["Running"] is True


def test_history_is_streamed_not_loaded(tmp_path) -> None:
    """A big log is read line by line (tail keeps only N raw lines); the follow start is
    the end of the last complete line."""
    log = tmp_path / "big-json.log"
    line = json.dumps({"log": "x" * 100 + "\n", "stream": "stdout", "time": "2026-01-01T00:00:00Z"}) + "\n"
    with open(log, "w") as fh:
        for _ in range(20000):
            fh.write(line)
        fh.write(line[:30])  # a line being written
    it, offset, inode = logs.history_lines(log, None)
    assert not isinstance(it, list)
    assert sum(1 for _ in it) == 20000 and offset == 20000 * len(line)
    it, _, _ = logs.history_lines(log, 2)
    assert len(list(it)) == 2
    assert logs.end_of_log(tmp_path / "missing") == (0, None)

    import asyncio

    async def collect():
        out = []
        async for chunk in logs.stream_log(log, logs.LogOptions(tty=True), history=True, follow=False):
            out.append(chunk)
        return b"".join(out)
    assert len(asyncio.run(collect())) == 20000 * 101

    async def stop_early():
        gen = logs.stream_log(log, logs.LogOptions(), history=True, follow=False)
        first = await gen.__anext__()
        await gen.aclose()  # the producer thread must not stay blocked
        return first
    assert asyncio.run(asyncio.wait_for(stop_early(), 30))


def test_rotated_log_real_container(api, unique_name) -> None:
    """max-size/max-file rotation by the shim: logs reads across log.1 .. and follow goes on
    through the rotations without losing or repeating a line."""
    cid = api.create(["sh", "-c", "i=0; while [ $i -lt 300 ]; do i=$((i+1)); echo line-$i; "
                      "[ $((i % 50)) -eq 0 ] && sleep 0.1; done"], name=unique_name,
                     HostConfig={"LogConfig": {"Type": "json-file", "Config": {"max-size": "4k", "max-file": "50"}}})
    conn = api._conn()
    s_path = f"/containers/{cid}/logs?stdout=1&follow=1"
    assert api.post(f"/containers/{cid}/start")[0] == 204
    conn.request("GET", s_path)
    resp = conn.getresponse()
    raw = resp.read()
    conn.close()
    want = b"".join(b"line-%d\n" % i for i in range(1, 301))
    assert joined(raw) == want
    log_path = api.inspect(cid)["LogPath"]
    import glob
    assert len(glob.glob(log_path + ".*")) >= 3  # it did rotate
    assert joined(_logs(api, cid, "stdout=1")[1]) == want
    assert joined(_logs(api, cid, "stdout=1&tail=2")[1]) == b"line-299\nline-300\n"
