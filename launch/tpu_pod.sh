#!/usr/bin/env bash
# Run a jssl recipe on every host of a Cloud TPU VM pod slice.
#
#   launch/tpu_pod.sh TPU_NAME ZONE configs/dino_vits16_imagenet.py gs://bucket/runs/dino [--config.field=value ...]
#
# Copies this checkout to every worker, installs it, and starts the same command on all
# hosts; jax.distributed.initialize() finds the pod topology by itself. The workdir
# must be shared storage (a GCS bucket) so that every host writes one checkpoint.
set -euo pipefail
TPU=$1; ZONE=$2; CONFIG=$3; WORKDIR=$4; shift 4
gcloud compute tpus tpu-vm scp --recurse --zone="$ZONE" --worker=all "$(pwd)" "$TPU":~/jssl
gcloud compute tpus tpu-vm ssh "$TPU" --zone="$ZONE" --worker=all --command="
  cd ~/jssl && python3 -m pip install -q -e . 'jax[tpu]' &&
  python3 -m jssl.main --distributed --config=$CONFIG --workdir=$WORKDIR $*"
