#!/usr/bin/env bash
# Training on a Cloud TPU pod slice: the same command runs on every host of the slice.
#
#   launch/tpu_pod.sh TPU_NAME ZONE configs/neuralogcm.yaml [--set key=value ...]
#
# jax.distributed.initialize() auto-detects TPU pods, so every host just runs `neuralogcm train`
# with NEURALOGCM_DISTRIBUTED_AUTO=1 (which asks for the no-argument initialisation). The repository and its
# .venv must exist at the same path on every host (e.g. `gcloud ... scp --worker=all`), and
# data and checkpoints on storage every host can read (GCS via gcsfuse, or Filestore).
set -euo pipefail

TPU_NAME=${1:?usage: $0 TPU_NAME ZONE CONFIG.yaml [train arguments...]}
ZONE=${2:?zone}
CONFIG=${3:?config}
shift 3
REPO=${REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
ARGS=$(printf ' %q' "$@")

gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone "$ZONE" --worker=all --command \
  "cd $REPO && NEURALOGCM_DISTRIBUTED_AUTO=1 .venv/bin/python -m neuralogcm_jax.cli train --config $CONFIG$ARGS"
