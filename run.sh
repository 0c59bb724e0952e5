#!/usr/bin/env bash
# raylar's main job: set up the environment if needed, then run a Ray Tune
# sweep (`python -m raylar.tune`, the quickstart profile unless arguments name
# another). Extra arguments go to raylar.tune, e.g. ./run.sh --profile summitdev
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$repo/scripts/setup.sh"
exec "$repo/.venv/bin/python" -m raylar.tune "$@"
