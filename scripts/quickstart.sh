#!/usr/bin/env bash
# The README's main job, on a fresh Debian 12 / Ubuntu machine, as root:
#   1. install everything (scripts/install.sh);
#   2. make the busybox test image and import it into pystack's engine (`pystack image import`);
#   3. bring examples/quickstart up (`pystack up -d --wait`): an init job fills a named volume,
#      a web server serves it on 127.0.0.1:${QUICKSTART_PORT:-18080} behind a healthcheck, a
#      client fetches the page by the service name `web`;
#   4. show `pystack ps`, fetch the page through the published port, show `pystack logs client`;
#   5. take it all down (`pystack down -v`).
# The engine (pystackd) is started on demand by the first pystack command and keeps running
# (`pystack engine stop` stops it). PYSTACK_SKIP_INSTALL=1 skips step 1 (the tests use it);
# PYSTACK_HOST=unix:///path makes every step use that engine (pystackd or a dockerd).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv=${PYSTACK_VENV:-/opt/pystack/venv}
port=${QUICKSTART_PORT:-18080}
export QUICKSTART_PORT=$port

if [ -z "${PYSTACK_SKIP_INSTALL:-}" ]; then
    bash "$here/scripts/install.sh"
fi
export PATH="$venv/bin:$PATH"

step() { printf '\n==> %s\n' "$*"; }

step "making the busybox test image (busybox:latest)"
rootfs=$(mktemp -d /tmp/pystack-quickstart-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
"$venv/bin/python" -c 'import sys; from pystack.testimage import make_busybox_rootfs; make_busybox_rootfs(sys.argv[1])' "$rootfs"
pystack image import "$rootfs" busybox:latest

cd "$here/examples/quickstart"
step "pystack up -d --wait"
pystack up -d --wait --wait-timeout 60

step "pystack ps"
pystack ps -a

step "the page, through the published port 127.0.0.1:$port"
"$venv/bin/python" -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())' "http://127.0.0.1:$port/"

step "pystack logs client (it fetched http://web:8080/ by service name)"
for _ in $(seq 50); do
    out=$(pystack logs --no-log-prefix client)
    [ -n "$out" ] && break
    sleep 0.2
done
pystack logs client

step "pystack down -v"
pystack down -v
