#!/usr/bin/env bash
# Training on one machine with several GPUs: a single process drives all of them (no
# jax.distributed needed); the mesh puts the batch over every GPU.
#
#   launch/gpu_node.sh configs/neuralogcm.yaml [--set key=value ...]
#
# Pick GPUs with CUDA_VISIBLE_DEVICES. data.batch_size is per GPU. To shard longitude as well
# (grids too big for one GPU), add --set mesh.x=2 (the batch then spans GPUs / 2).
set -euo pipefail

CONFIG=${1:?usage: $0 CONFIG.yaml [train arguments...]}
shift
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-$REPO/.venv/bin/python}
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.9}
exec "$PYTHON" -m neuralogcm_jax.cli train --config "$CONFIG" "$@"
