#!/usr/bin/env bash
# Training on one machine with several GPUs: a single process drives all of them (no
# jax.distributed needed); the mesh puts the batch over every GPU.
#
#   launch/gpu_node.sh neuralogcm [--set key=value ...]      (a config name or a YAML path)
#
# Pick GPUs with CUDA_VISIBLE_DEVICES. data.batch_size is per GPU. To shard longitude as well
# (grids too big for one GPU), add --set mesh.x=2 (the batch then spans GPUs / 2).
# A stopped run (SIGTERM/SIGINT: checkpoint written, exit status 75) is restarted with the
# identical command, which resumes its latest checkpoint; RESTARTS (default 0) bounds how often
# this script does that itself, e.g. for a spot machine whose agent sends SIGTERM.
set -euo pipefail

CONFIG=${1:?usage: $0 CONFIG.yaml [train arguments...]}
shift
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-$REPO/.venv/bin/python}
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.9}
CACHE=${NEURALOGCM_CACHE:-$REPO/.jax_cache}
RESTARTS=${RESTARTS:-0}
STOPPED=75  # neuralogcm_jax.train.loop.STOPPED_EXIT_STATUS

for ((i = 0; ; i++)); do
  status=0
  "$PYTHON" -m neuralogcm_jax.cli train --config "$CONFIG" \
    --set "train.compilation_cache_dir=$CACHE" "$@" || status=$?
  if [ "$status" -ne "$STOPPED" ] || [ "$i" -ge "$RESTARTS" ]; then
    exit "$status"
  fi
  echo "neuralogcm: stopped with a checkpoint; restarting ($((i + 1))/$RESTARTS)" >&2
done
