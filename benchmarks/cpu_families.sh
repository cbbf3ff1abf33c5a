#!/usr/bin/env bash
# One `python -m jssl.benchmark` row per method family's Fashion-MNIST recipe, on this machine.
#
#   bash benchmarks/cpu_families.sh [OUT_MD] [MACHINE]
#
# Appends the Markdown rows to OUT_MD (default runs/benchmark/cpu_families.md) and writes one
# JSON per config under runs/benchmark/. Each recipe runs at its own batch size on its real
# input pipeline; the ViT recipes (about 30 s per step on a 2-core CPU) and TreeNet take 2
# timed steps after one warm-up step, the others 10 after 3. MFU is against the measured
# rate of a dense float32 matmul on this CPU (--peak_flops=measure), an assumed peak.
set -euo pipefail
OUT_MD=${1:-runs/benchmark/cpu_families.md}
MACHINE=${2:-"2-core x86_64 CPU"}
PY=${PYTHON:-python}
mkdir -p "$(dirname "$OUT_MD")" runs/benchmark
run() {   # run CONFIG STEPS WARMUP
  echo "== $1" >&2
  "$PY" -m jssl.benchmark --config="configs/$1" --steps="$2" --warmup="$3" --machine="$MACHINE" \
    --peak_flops=measure --append_md="$OUT_MD" --out="runs/benchmark/${1%.py}.json"
}
for c in quickstart.py byol_resnet_tiny_fmnist.py mocov3_resnet_tiny_fmnist.py dino_resnet_tiny_fmnist.py \
         co_byol_resnet_tiny_fmnist.py co_mocov3_resnet_tiny_fmnist.py co_dino_resnet_tiny_fmnist.py \
         vicreg_res_lh_fmnist.py supervised_res_lh_fmnist.py; do
  run "$c" 10 3
done
for c in treenet_fmnist.py treenet_cnn_fmnist.py dino_vit_tiny_fmnist.py ibot_vit_tiny_fmnist.py sove_vit_tiny_fmnist.py; do
  run "$c" 2 1
done
cat "$OUT_MD"
