"""The client's own URL quoting and socket path shortcut equal what they replace."""
from __future__ import annotations

import json
import random
import urllib.parse
from pathlib import Path

import pytest

from pystack.compose import client
from pystack.compose.autostart import _plain_path

SAMPLES = ["", "a", "a b", "a+b", "x/y:z@w", "ü ñ 漢字", "~_.-", "%41", "a&b=c", "\t\n",
           json.dumps({"label": ["com.docker.compose.project=p1"], "status": ["running"]})]


def test_quote_and_urlencode_equal_urllib():
    rng = random.Random(7)
    alphabet = "aZ09 _.-~/:@+&=?#%\"{}[]ü€\U0001F600\x00\x7f"
    texts = SAMPLES + ["".join(rng.choice(alphabet) for _ in range(rng.randrange(12)))
                       for _ in range(300)]
    for text in texts:
        for safe in ("/", "", "/:@", " "):
            assert client.quote(text, safe) == urllib.parse.quote(text, safe=safe)
    for i in range(0, len(texts) - 3, 3):
        query = {texts[i] or "k": texts[i + 1], "n": i, "b": "1", "j": texts[i + 2]}
        assert client.urlencode(query) == urllib.parse.urlencode(query)


@pytest.mark.parametrize("path", ["/run/pystack/pystack.sock", "/run/x.sock", "/a/../b", "/a/.b",
                                  "/a//b", "/a/./b", "/a/", "/a/.", "//a", "rel/x", "./x", "/"])
def test_plain_path_only_when_pathlib_agrees(path):
    if _plain_path(path):
        assert str(Path(path)) == path
