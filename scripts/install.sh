#!/usr/bin/env bash
# Installs everything pystack and its tests need on a fresh Debian 12 / Ubuntu machine, as root:
# the Debian packages (kernel tools, runc/registry/skopeo/umoci/podman/docker.io as test oracles,
# busybox-static for the test image), then a virtualenv with pystack and its test extras,
# with its commands linked into /usr/local/bin.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv=${PYSTACK_VENV:-/opt/pystack/venv}

if [ "$(id -u)" != 0 ]; then
    echo "install.sh: run as root (sudo bash scripts/install.sh): a container engine needs root" >&2
    exit 1
fi

# Installing docker.io or docker-registry must not start their daemons: dockerd rewrites the
# firewall (FORWARD policy DROP) and would cut pystack's bridges. Block service starts while
# apt runs, and only if nothing else blocks them already.
made_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    made_policy=1
fi
trap '[ $made_policy = 1 ] && rm -f /usr/sbin/policy-rc.d' EXIT

packages=(
    python3 python3-venv python3-pip
    iproute2 iptables nftables kmod util-linux procps file
    busybox-static            # the test image
    runc                      # OCI runtime oracle
    docker-registry           # the reference registry, on loopback in tests
    skopeo umoci              # image interop oracles
    podman conmon catatonit   # drives pystack-runtime as its OCI runtime in a test
    docker.io                 # dockerd + docker CLI: Engine API oracle
    apache2-utils             # htpasswd for the Basic-auth registry test
    openssl                   # signs the token-auth registry test's JWTs
    libseccomp2
    xfsprogs                  # a reflink filesystem (loop-mounted XFS) for the volume snapshot tests
)
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${packages[@]}"

python=python3
if [ ! -x "$venv/bin/python" ]; then
    mkdir -p "$(dirname "$venv")"
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --upgrade pip setuptools wheel
"$venv/bin/python" -m pip install -q -e "$here[test]"
for cmd in pystack pystackd pystack-runtime; do
    ln -sf "$venv/bin/$cmd" "/usr/local/bin/$cmd"
done
echo "pystack installed: $("$venv/bin/pystack" --version)"
