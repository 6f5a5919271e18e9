"""Engine-only extra: ``PUT /pystack/containers/{id}/files`` (atomic file write for hot
reload) on a running container, confined to the container's root."""
from __future__ import annotations

import io
import tarfile
import time


def _read(api, cid: str, path: str) -> bytes | None:
    status, raw = api.get(f"/containers/{cid}/archive?path={path}")
    if status != 200:
        return None
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        m = tar.next()
        return tar.extractfile(m).read() if m.isfile() else None


def _put(api, cid: str, query: str, data: bytes):
    return api.request("PUT", f"/pystack/containers/{cid}/files?{query}", data,
                       {"Content-Type": "application/octet-stream"})


def test_put_file_hot_reload(api, busybox_engine, unique_name) -> None:
    # the container watches the file: it must only ever see a whole version
    cid = api.run(["sh", "-c", "mkdir -p /app; echo v0 > /app/conf; ln -s / /app/root; "
                   "while true; do c=$(cat /app/conf); case \"$c\" in v*) ;; *) echo BAD:$c;; esac; "
                   "sleep 0.01; done"], name=unique_name)
    for _ in range(100):
        if _read(api, cid, "/app/conf") == b"v0\n":
            break
        time.sleep(0.05)
    for i in range(1, 30):
        status, body = _put(api, cid, "path=/app/conf", f"v{i}\n".encode() + b"x" * 20000)
        assert status == 200 and body == {"Path": "/app/conf", "Size": 20002 + len(str(i))}
    assert _read(api, cid, "/app/conf").startswith(b"v29\n")
    status, body = _put(api, cid, "path=/app/new/deep/file.py&mkdirs=1&mode=0600&uid=1000&gid=1000", b"print(1)\n")
    assert status == 200
    assert _read(api, cid, "/app/new/deep/file.py") == b"print(1)\n"
    from tests.engine.test_exec import _exec
    raw, _ = _exec(busybox_engine, api, cid, ["stat", "-c", "%a %u %g", "/app/new/deep/file.py"])
    from tests.engine.test_logs import joined
    assert joined(raw, 1) == b"600 1000 1000\n"
    # confined: ../ and the in-container link to / both land inside the container
    assert _put(api, cid, "path=../../../../tmp/pystack-escape-" + unique_name, b"x")[0] == 200
    import os
    assert not os.path.exists("/tmp/pystack-escape-" + unique_name)
    assert _put(api, cid, "path=/app/root/tmp/via-link", b"y")[0] == 200
    assert _read(api, cid, "/tmp/via-link") == b"y"
    # user mistakes
    assert _put(api, cid, "", b"x")[0] == 400
    assert _put(api, cid, "path=/nope/x", b"x")[0] == 404
    assert _put(api, cid, "path=/app/conf&mode=999", b"x")[0] == 400
    assert _put(api, cid, "path=/app/", b"x")[0] == 400
    assert _put(api, "nosuch", "path=/x", b"x")[0] == 404
    # the watcher never saw a partial file
    status, raw = api.get(f"/containers/{cid}/logs?stdout=1&stderr=1")
    assert b"BAD" not in raw
    api.post(f"/containers/{cid}/kill")
