#!/usr/bin/env bash
# Installs everything (scripts/install.sh), then runs the whole test suite.
# pytest's "no tests ran" (exit 5) is a failure here, never a green run.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bash "$here/scripts/install.sh" || exit 1
venv=${PYSTACK_VENV:-/opt/pystack/venv}
export PATH="$venv/bin:$PATH"
cd "$here"
"$venv/bin/python" -m pytest "$@"
rc=$?
if [ $rc = 5 ]; then
    echo "test.sh: pytest collected no tests: that is a failure" >&2
    exit 1
fi
exit $rc
