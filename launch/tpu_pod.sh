#!/usr/bin/env bash
# Training on a Cloud TPU pod slice: the same command runs on every host of the slice.
#
#   launch/tpu_pod.sh TPU_NAME ZONE neuralogcm [--set key=value ...]   (config name or YAML path)
#
# jax.distributed.initialize() auto-detects TPU pods, so every host just runs `neuralogcm train`
# with NEURALOGCM_DISTRIBUTED_AUTO=1 (which asks for the no-argument initialisation). The repository and its
# .venv must exist at the same path on every host (e.g. `gcloud ... scp --worker=all`), and
# data on storage every host can read (local disk copies, gcsfuse or Filestore); the checkpoint
# and output dirs may be gs:// URLs (--set train.out_dir=gs://bucket/runs/x).
#
# Maintenance events and spot pre-emption send SIGTERM: the run checkpoints and exits with
# status 75, and this script runs the identical command again (it resumes the latest complete
# checkpoint, train.resume: auto) up to RESTARTS times (default 100). Exit 0 (finished) or an
# error stops the loop. On a pre-empted (deleted) slice, recreate it and run this script again.
set -euo pipefail

TPU_NAME=${1:?usage: $0 TPU_NAME ZONE CONFIG.yaml [train arguments...]}
ZONE=${2:?zone}
CONFIG=${3:?config}
shift 3
REPO=${REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
ARGS=$(printf ' %q' "$@")
CACHE=${NEURALOGCM_CACHE:-$REPO/.jax_cache}
RESTARTS=${RESTARTS:-100}
STOPPED=75  # neuralogcm_jax.train.loop.STOPPED_EXIT_STATUS

for ((i = 0; ; i++)); do
  status=0
  gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone "$ZONE" --worker=all --command \
    "cd $REPO && NEURALOGCM_DISTRIBUTED_AUTO=1 .venv/bin/python -m neuralogcm_jax.cli train \
     --config $CONFIG --set train.compilation_cache_dir=$CACHE$ARGS" || status=$?
  if [ "$status" -ne "$STOPPED" ] || [ "$i" -ge "$RESTARTS" ]; then
    exit "$status"
  fi
  echo "neuralogcm: stopped with a checkpoint; restarting ($((i + 1))/$RESTARTS)" >&2
done
