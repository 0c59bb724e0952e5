# shellcheck shell=bash
# Environment of every raylar command on a SummitDev-style LSF node: the
# site's modules, then raylar's virtual environment. Sourced by
# cluster/summitdev.yaml's commands and by cluster/summitdev.lsf.

# FILL IN: the modules your site provides for Python, CUDA and the compiler
# raylar's Horovod was built with (`module avail`). These names are examples.
if command -v module > /dev/null 2>&1; then
    module load gcc/7.1.0 cuda/10.1.243 spectrum-mpi
fi

# FILL IN: where the raylar checkout lives on the shared file system.
RAYLAR_HOME=${RAYLAR_HOME:-$HOME/raylar}
# shellcheck source=/dev/null
source "$RAYLAR_HOME/.venv/bin/activate"

# Ray 2.60 clusters check a shared token (~/.ray/auth_token, on the shared
# home file system here); every node and driver must use it.
export RAY_AUTH_MODE=token
