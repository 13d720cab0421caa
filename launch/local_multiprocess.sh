#!/usr/bin/env bash
# Start N training processes on this machine, joined by jax.distributed over 127.0.0.1.
#
#   launch/local_multiprocess.sh N [neuralogcm train arguments...]
#
# Each process sees its own devices (on CPU: set XLA_FLAGS=--xla_force_host_platform_device_count=D
# to fake D devices per process); the job's mesh spans all N x D devices and CPU collectives go
# through gloo. Environment: PORT (coordinator port, default 12355 + a random offset),
# PYTHON (default: the project's .venv/bin/python if present, else python3).
# Process 0's output is shown; process i's goes to ${LOG_DIR:-/tmp}/neuralogcm_proc_i.log.
# If any process fails, the others are stopped and the script exits with its status.
set -euo pipefail

if [[ $# -lt 1 || ! "$1" =~ ^[0-9]+$ || "$1" -lt 1 ]]; then
  echo "usage: $0 N [neuralogcm train arguments...]" >&2
  exit 2
fi
N=$1; shift
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$HERE/.venv/bin/python" ]]; then PYTHON="$HERE/.venv/bin/python"; else PYTHON=python3; fi
fi
PORT=${PORT:-$((12355 + RANDOM % 20000))}
LOG_DIR=${LOG_DIR:-/tmp}
export JAX_PLATFORMS=${JAX_PLATFORMS:-cpu}

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
}
trap cleanup INT TERM

for ((i = 0; i < N; i++)); do
  if [[ $i -eq 0 ]]; then
    NEURALOGCM_COORDINATOR="127.0.0.1:$PORT" NEURALOGCM_NUM_PROCESSES=$N NEURALOGCM_PROCESS_ID=$i \
      "$PYTHON" -m neuralogcm_jax.cli train "$@" &
  else
    NEURALOGCM_COORDINATOR="127.0.0.1:$PORT" NEURALOGCM_NUM_PROCESSES=$N NEURALOGCM_PROCESS_ID=$i \
      "$PYTHON" -m neuralogcm_jax.cli train --no_progress "$@" >"$LOG_DIR/neuralogcm_proc_$i.log" 2>&1 &
  fi
  pids+=($!)
done

status=0
for pid in "${pids[@]}"; do
  rc=0
  wait "$pid" || rc=$?
  if [[ $rc -ne 0 ]]; then
    [[ $status -eq 0 ]] && status=$rc
    cleanup
  fi
done
exit $status
