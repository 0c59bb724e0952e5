#!/usr/bin/env bash
# Build a Horovod 0.28.1 wheel that works with the torch in the given Python
# environment, and cache it outside the repository.
#
# Usage: scripts/build_horovod.sh PYTHON CACHE_DIR
#
# The released sdist does not compile against PyTorch >= 2.1 (see the header of
# horovod-0.28.1-torch-cxx17.patch), so the wheel is built here from the sdist
# plus raylar's patch. Prints the path of the wheel on its last line of output.
set -euo pipefail

python_bin="$1"
cache_dir="$2"
horovod_version="0.28.1"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
patch_file="$here/horovod-${horovod_version}-torch-cxx17.patch"

mkdir -p "$cache_dir"
existing="$(ls "$cache_dir"/horovod-"$horovod_version"-*.whl 2>/dev/null | head -n 1 || true)"
if [[ -n "$existing" ]]; then
    echo "$existing"
    exit 0
fi

for tool in cmake g++ make patch; do
    if ! command -v "$tool" >/dev/null; then
        echo "error: building Horovod needs '$tool', which is not on PATH; install it (Debian: apt-get install cmake g++ make patch) and run the set-up again" >&2
        exit 1
    fi
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "raylar: building Horovod $horovod_version for this torch (about 5 minutes on 2 cores)" >&2
"$python_bin" -m pip download --quiet --no-deps --no-binary :all: \
    "horovod==$horovod_version" -d "$work"
tar xzf "$work/horovod-$horovod_version.tar.gz" -C "$work"
(cd "$work/horovod-$horovod_version" && patch -p1 --quiet < "$patch_file")

export HOROVOD_WITH_PYTORCH=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1
export HOROVOD_WITHOUT_TENSORFLOW=1 HOROVOD_WITHOUT_MXNET=1
export MAKEFLAGS="-j$(nproc)"
# NCCL GPU operations only where both the CUDA compiler and a CUDA build of torch exist.
if command -v nvcc >/dev/null && "$python_bin" -c 'import sys, torch; sys.exit(0 if torch.version.cuda else 1)'; then
    export HOROVOD_GPU_OPERATIONS=NCCL
    echo "raylar: CUDA found, building with NCCL GPU operations" >&2
fi

# No build isolation: the build must see the torch installed in the environment.
"$python_bin" -m pip wheel --no-deps --no-build-isolation \
    --wheel-dir "$work/dist" "$work/horovod-$horovod_version" >&2
wheel="$(ls "$work"/dist/horovod-*.whl)"
# Copy, then rename, so an interrupted build never leaves a partial wheel in the cache.
cp "$wheel" "$cache_dir/.partial.whl"
mv "$cache_dir/.partial.whl" "$cache_dir/$(basename "$wheel")"
echo "$cache_dir/$(basename "$wheel")"
