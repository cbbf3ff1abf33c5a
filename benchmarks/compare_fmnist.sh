#!/usr/bin/env bash
# Equal-budget comparison on Fashion-MNIST: SOVE vs DINO vs the iBOT-style baseline.
#
#   bash benchmarks/compare_fmnist.sh runs/compare                  # each recipe's own steps, seeds 0 and 1
#   STEPS=2000 SEEDS="0 1 2" bash benchmarks/compare_fmnist.sh runs/compare_2k
#
# Every method trains its configs/<method>_vit_mini_fmnist.py recipe: the same mini ViT
# (patch 7, width 64, 4 blocks), two 28 px crops, augmentation,
# optimiser schedule and batch; only the method (and what it reads: DINO the mean of
# the patch tokens, iBOT-style and SOVE the [CLS] token) differs. Without STEPS each recipe runs
# its own number of steps, the ones that fit 28 minutes of training on a 2-core CPU
# (equal time: DINO's step is about half the others'); STEPS=N gives every method N
# steps (equal images). BATCH overrides the batch the same way. Each is evaluated the
# same way on the teacher at the final step: k-NN (DINO protocol, whole train split as
# bank, test queries) and a linear probe (lr / wd chosen on 10% of train, test reported
# once). Prints one row per method with the mean +- half the range (max - min) over seeds.
# Rerunning it finishes what is missing: a run directory with a summary.json is not
# trained again and one with eval/results.json not evaluated again, so a finished
# recipe run of the same settings (benchmarks/fmnist_recipe.py) can be copied in as
# OUT/<method>_s<seed>.
set -euo pipefail
OUT=${1:-runs/compare}
SEEDS=${SEEDS:-"0 1"}
BUDGET=()
[[ -n "${STEPS:-}" ]] && BUDGET+=(--config.total_steps="$STEPS")
[[ -n "${BATCH:-}" ]] && BUDGET+=(--config.batch_size="$BATCH")
PY=${PYTHON:-python}
for seed in $SEEDS; do
  for m in dino ibot sove; do
    run="$OUT/${m}_s$seed"
    if [[ ! -f "$run/summary.json" ]]; then   # a finished run (this script's or copied in) is not trained again
      $PY -m jssl.main --config="configs/${m}_vit_mini_fmnist.py" --workdir="$run" --config.seed="$seed" \
          "${BUDGET[@]}" --config.eval.every_steps=0 \
          --config.eval.pixels_baseline=False --config.checkpoint_every_steps=100000
    fi
    [[ -f "$run/eval/results.json" ]] || $PY -m jssl.evaluate --config=configs/eval/linear.py:"$run" \
        --workdir="$run/eval" --config.network=teacher
  done
done
$PY - "$OUT" $SEEDS <<'PY'
import json, sys
import numpy as np
out, seeds = sys.argv[1], sys.argv[2:]
print(f"| method | k-NN k=20 (mean +- half range over seeds {', '.join(seeds)}) | linear | per seed k-NN / linear |")
print("|---|---|---|---|")
for m, name in (("dino", "DINO"), ("ibot", "iBOT-style"), ("sove", "SOVE")):
  knn, lin = [], []
  for s in seeds:
    rows = json.load(open(f"{out}/{m}_s{s}/eval/results.json"))["results"]
    knn += [r["value"] for r in rows if r["metric"] == "knn_k20_t0.07_cosine"]
    lin += [r["value"] for r in rows if r["metric"] == "linear_test_acc"]
  per = ", ".join(f"{100 * a:.2f} / {100 * b:.2f}" for a, b in zip(knn, lin))
  print(f"| {name} | {100 * np.mean(knn):.2f}% +- {100 * np.ptp(knn) / 2:.2f} | "
        f"{100 * np.mean(lin):.2f}% +- {100 * np.ptp(lin) / 2:.2f} | {per} |")
PY
