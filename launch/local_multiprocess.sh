#!/usr/bin/env bash
# Start N training processes on this machine, joined by jax.distributed over 127.0.0.1.
#
#   launch/local_multiprocess.sh N [neuralogcm train arguments...]
#
# Each process sees its own devices (on CPU: set XLA_FLAGS=--xla_force_host_platform_device_count=D
# to fake D devices per process); the job's mesh spans all N x D devices and CPU collectives go
# through gloo. Environment: PORT (coordinator port, default 12355 + a random offset),
# PYTHON (default: the project's .venv/bin/python if present, else python3), LOG_DIR,
# KILL_GRACE_S (default 10), NEURALOGCM_HEARTBEAT_TIMEOUT_S (default here 30).
# Process 0's output is shown; process i's goes to ${LOG_DIR:-/tmp}/neuralogcm_proc_i.log.
#
# Exit status: 0 when every process finished; otherwise the status of the first process that
# failed (75: stopped by SIGTERM/SIGINT after a checkpoint; rerun to resume).
#
# When one process dies or fails, the others cannot go on: they wait in their next collective
# for it. So as soon as any process exits with a status other than 0 or 75, the others get
# SIGTERM and, KILL_GRACE_S seconds later, SIGKILL (a process blocked in a collective never
# reaches its SIGTERM handler). This is what bounds a job with a dead process here: it ends
# within a second or so of the death plus KILL_GRACE_S. Independently of this script, JAX's
# coordination service terminates the survivors once the dead process has missed its heartbeats
# for NEURALOGCM_HEARTBEAT_TIMEOUT_S seconds (neuralogcm_jax/train/distributed.py).
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
KILL_GRACE_S=${KILL_GRACE_S:-10}
export JAX_PLATFORMS=${JAX_PLATFORMS:-cpu}
export NEURALOGCM_HEARTBEAT_TIMEOUT_S=${NEURALOGCM_HEARTBEAT_TIMEOUT_S:-30}

pids=()
stopping=0
# SIGTERM to every process still running (they checkpoint and exit 75 if they can).
term_all() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
}
# After a failure: SIGTERM, then SIGKILL to whatever is left after KILL_GRACE_S seconds.
stop_all() {
  [[ $stopping -eq 1 ]] && return
  stopping=1
  term_all
  ( sleep "$KILL_GRACE_S"
    for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done ) &
  killer=$!
}
trap term_all INT TERM

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

# Wait for whichever process ends first (not in launch order: a dead process 1 must not wait
# behind a process 0 that is blocked waiting for it). Bash reaps finished children itself, so
# `kill -0` fails for them and `wait PID` returns their saved status.
status=0
running=("${pids[@]}")
while [[ ${#running[@]} -gt 0 ]]; do
  still=()
  for pid in "${running[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      still+=("$pid")
      continue
    fi
    rc=0
    wait "$pid" || rc=$?
    if [[ $rc -ne 0 ]]; then
      [[ $status -eq 0 ]] && status=$rc
      if [[ $rc -ne 75 ]]; then
        echo "local_multiprocess.sh: process $pid exited with status $rc; stopping the others" >&2
        stop_all
      fi
    fi
  done
  running=("${still[@]+"${still[@]}"}")
  [[ ${#running[@]} -gt 0 ]] && sleep 0.5
done
if [[ -n "${killer:-}" ]]; then kill "$killer" 2>/dev/null || true; fi
exit $status
