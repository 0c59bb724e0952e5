#!/usr/bin/env bash
# Create or reuse the virtual environment .venv in the repository and install
# raylar's pinned stack into it. Safe to run again: a second run with an
# unchanged pyproject.toml returns in about a second.
#
# Environment:
#   RAYLAR_PYTHON       Python 3.11 interpreter for a new .venv (default: python3.11, then python3)
#   RAYLAR_WHEEL_CACHE  where built wheels are cached (default: ~/.cache/raylar/wheels)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/.venv"
python_for_venv="${RAYLAR_PYTHON:-$(command -v python3.11 || command -v python3)}"

if [[ ! -x "$venv/bin/python" ]]; then
    version="$("$python_for_venv" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    if [[ "$version" != "3.11" ]]; then
        echo "error: raylar needs Python 3.11, but $python_for_venv is Python $version; set RAYLAR_PYTHON to a Python 3.11 interpreter" >&2
        exit 1
    fi
    echo "raylar: creating $venv" >&2
    "$python_for_venv" -m venv "$venv"
fi
python="$venv/bin/python"

# GPU machines get the CUDA flavour of spconv; everything else the CPU wheel.
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
    flavour="cuda"
else
    flavour="cpu"
fi

stamp="$venv/.raylar-setup"
fingerprint="$(cat "$repo/pyproject.toml" "$repo/scripts/setup.sh" \
    "$repo/scripts/build_horovod.sh" "$repo/scripts/horovod-0.28.1-torch-cxx17.patch" \
    | sha256sum | cut -d' ' -f1)-$flavour"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$fingerprint" ]]; then
    exit 0
fi

"$python" -m pip install --quiet --upgrade "pip>=24" "setuptools>=77" wheel

# Horovod's build compiles against the installed torch, so torch comes first.
torch_pin="$(sed -n 's/^ *"\(torch==[^"]*\)".*/\1/p' "$repo/pyproject.toml")"
"$python" -m pip install --quiet "$torch_pin" cloudpickle psutil pyyaml packaging
torch_version="$("$python" -c 'import torch; print(torch.__version__)')"

cache_root="${RAYLAR_WHEEL_CACHE:-$HOME/.cache/raylar/wheels}"
wheel_dir="$cache_root/horovod-0.28.1-torch-$torch_version"
"$repo/scripts/build_horovod.sh" "$python" "$wheel_dir" >/dev/null

# --only-binary keeps pip from ever falling back to the unpatched sdist: if the
# cached wheel is missing, this fails instead of starting a build that cannot work.
echo "raylar: installing the pinned stack ($flavour)" >&2
"$python" -m pip install --quiet --find-links "$wheel_dir" --only-binary horovod \
    -e "$repo[$flavour,dev]"
"$python" -m pip check >&2

echo "$fingerprint" > "$stamp"
echo "raylar: environment ready in $venv" >&2
