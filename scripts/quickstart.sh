#!/usr/bin/env bash
# The README's main job: install everything, then run pystack on examples/quickstart.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bash "$here/scripts/install.sh"
cd "$here/examples/quickstart"
pystack config
