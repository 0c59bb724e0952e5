#!/usr/bin/env bash
# Set up the environment if needed, then run raylar's test suite. Extra
# arguments go to pytest, e.g. ./test.sh tests/test_stack.py -x
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$repo/scripts/setup.sh"
cd "$repo"
status=0
.venv/bin/python -m pytest "$@" || status=$?
# pytest exits with 5 when it collected no test; that is not a failure of the suite.
if [[ $status -eq 5 ]]; then
    echo "test.sh: pytest collected no tests" >&2
    exit 0
fi
exit $status
