"""Docker json-file details without a container: sizes, long lines, rotation edge cases."""
from __future__ import annotations

import json

import pytest

from pystack.runtime.jsonlog import MAX_LINE, JsonLogWriter, parse_size, read_logs


@pytest.mark.parametrize("text,expected", [("10m", 10_000_000), ("512k", 512_000), ("1g", 10**9),
                                           ("1024", 1024), ("2kb", 2000), ("1Mi", 1 << 20),
                                           (None, -1), ("", -1)])
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("bad", ["ten", "5x", "m"])
def test_parse_size_rejects(bad):
    with pytest.raises(ValueError, match="max-size"):
        parse_size(bad)


def test_long_lines_split_like_docker_and_partial_lines_joined(tmp_path):
    w = JsonLogWriter(tmp_path / "l.log")
    w.write("stdout", b"a" * (MAX_LINE + 10) + b"\n")
    w.write("stdout", b"par")
    w.write("stdout", b"tial\n")
    w.write("stderr", b"no newline at end")
    w.close()
    logs = [e["log"] for e in read_logs(tmp_path / "l.log")]
    assert logs == ["a" * MAX_LINE, "a" * 10 + "\n", "partial\n", "no newline at end"]


def test_max_file_one_truncates(tmp_path):
    w = JsonLogWriter(tmp_path / "l.log", {"max-size": "200", "max-file": "1"})
    for i in range(50):
        w.write("stdout", f"line {i}\n".encode())
    w.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l.log"]
    assert (tmp_path / "l.log").stat().st_size < 200
    last = json.loads((tmp_path / "l.log").read_text().splitlines()[-1])
    assert last["log"] == "line 49\n"


def test_invalid_utf8_is_replaced_not_fatal(tmp_path):
    w = JsonLogWriter(tmp_path / "l.log")
    w.write("stdout", b"caf\xe9\n")
    w.close()
    assert next(read_logs(tmp_path / "l.log"))["log"] == "caf\ufffd\n"
