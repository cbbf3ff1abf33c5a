#!/usr/bin/env bash
# Multi-process training on this machine: NUM_PROCESSES CPU processes of one device each,
# joined by jax.distributed (coordinator on 127.0.0.1, collectives over TCP with gloo).
# A rehearsal of a multi-host run without a cluster: the same data stream, checkpoints
# and results as one process with NUM_PROCESSES devices.
#
#   launch/local.sh [--dry-run] NUM_PROCESSES CONFIG WORKDIR [--config.field=value ...]
#   launch/local.sh 2 configs/byol_resnet_tiny_fmnist.py runs/byol_2proc --config.total_steps=200
#
# Process 0 prints and writes the logs, metrics and summary; the others print only warnings
# and errors (their library logs go to WORKDIR/log.process<i>.txt). Ctrl-C or SIGTERM to
# this script reaches every process as SIGTERM (the processes themselves ignore Ctrl-C):
# they stop at the same step, save and exit 143; the same command resumes. --dry-run
# prints the commands instead of running them. Environment: PYTHON (default python3),
# JSSL_PORT (default a free port).
set -euo pipefail
usage="usage: $0 [--dry-run] NUM_PROCESSES CONFIG WORKDIR [--config.field=value ...]"
DRY_RUN=0
if [ "${1:-}" = "--dry-run" ]; then DRY_RUN=1; shift; fi
if [ $# -lt 3 ] || ! [[ $1 =~ ^[1-9][0-9]*$ ]] || [[ $2 == -* ]] || [[ $3 == -* ]]; then
  echo "$usage" >&2; exit 2
fi
N=$1; CONFIG=$2; WORKDIR=$3; shift 3
PYTHON=${PYTHON:-python3}
PORT=${JSSL_PORT:-$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
pids=()
for ((i = 0; i < N; i++)); do
  cmd=(env JAX_PLATFORMS=cpu XLA_FLAGS=--xla_force_host_platform_device_count=1
       "$PYTHON" -m jssl.main --coordinator_address=127.0.0.1:"$PORT" --num_processes="$N" --process_id="$i"
       --config="$CONFIG" --workdir="$WORKDIR" "$@")
  if [ "$DRY_RUN" = 1 ]; then
    printf '%q ' "${cmd[@]}"; echo "&"
  elif [ "$i" = 0 ]; then
    "${cmd[@]}" & pids+=($!)
  else
    "${cmd[@]}" >/dev/null & pids+=($!)
  fi
done
[ "$DRY_RUN" = 1 ] && { echo wait; exit 0; }
trap 'kill -TERM "${pids[@]}" 2>/dev/null || true' TERM INT
status=0
for pid in "${pids[@]}"; do
  while true; do
    rc=0; wait "$pid" || rc=$?
    kill -0 "$pid" 2>/dev/null || break   # a signal interrupted the wait, not the process's end
  done
  if [ "$rc" != 0 ] && [ "$status" = 0 ]; then status=$rc; fi
done
exit "$status"
