#!/usr/bin/env bash
# Run a jssl recipe on every host of a Cloud TPU VM pod slice.
#
#   launch/tpu_pod.sh [--dry-run] TPU_NAME ZONE configs/dino_vits16_imagenet.py gs://bucket/runs/dino [--config.field=value ...]
#
# Copies this checkout to every worker, installs it, and starts the same command on all
# hosts; jax.distributed.initialize() finds the pod topology by itself. The workdir
# must be shared storage (a GCS bucket) so that every host writes one checkpoint.
# --dry-run prints the gcloud commands instead of running them.
set -euo pipefail
usage="usage: $0 [--dry-run] TPU_NAME ZONE CONFIG WORKDIR [--config.field=value ...]"
DRY_RUN=0
if [ "${1:-}" = "--dry-run" ]; then DRY_RUN=1; shift; fi
if [ $# -lt 4 ] || [[ $1 == -* ]] || [[ $2 == -* ]] || [[ $3 == -* ]] || [[ $4 == -* ]]; then
  echo "$usage" >&2; exit 2
fi
TPU=$1; ZONE=$2; CONFIG=$3; WORKDIR=$4; shift 4
run() {  # runs the command, or with --dry-run prints it, shell-quoted
  if [ "$DRY_RUN" = 1 ]; then printf '%q ' "$@" | sed 's/ $//'; echo; else "$@"; fi
}
# The command every worker runs, each argument quoted for the remote shell.
train=$(printf '%q ' python3 -m jssl.main --distributed --config="$CONFIG" --workdir="$WORKDIR" "$@")
run gcloud compute tpus tpu-vm scp --recurse --zone="$ZONE" --worker=all "$(pwd)" "$TPU":~/jssl
run gcloud compute tpus tpu-vm ssh "$TPU" --zone="$ZONE" --worker=all \
  --command="cd ~/jssl && python3 -m pip install -q -e . 'jax[tpu]' && ${train% }"
