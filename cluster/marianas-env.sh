# shellcheck shell=bash
# Environment of every raylar command on a Marianas-style Slurm node: the
# site's modules, then raylar's virtual environment. Sourced by
# cluster/marianas.yaml's commands and by cluster/marianas.slurm.

# FILL IN: the modules your site provides for Python, CUDA and the compiler
# raylar's Horovod was built with (`module avail`). These names are examples.
if command -v module > /dev/null 2>&1; then
    module load gcc/8.1.0 cuda/11.4 python/3.11
fi

# FILL IN: where the raylar checkout lives on the shared file system.
RAYLAR_HOME=${RAYLAR_HOME:-$HOME/raylar}
# shellcheck source=/dev/null
source "$RAYLAR_HOME/.venv/bin/activate"

# Ray 2.60 clusters check a shared token (~/.ray/auth_token, on the shared
# home file system here); every node and driver must use it.
export RAY_AUTH_MODE=token
