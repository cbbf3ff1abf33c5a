#!/usr/bin/env bash
# Equal-budget comparison on Fashion-MNIST: SOVE vs DINO vs the iBOT-style baseline.
#
#   bash benchmarks/compare_fmnist.sh runs/compare            # CPU-sized budget
#   STEPS=23400 BATCH=256 DEPTH=12 bash benchmarks/compare_fmnist.sh runs/compare_full
#
# Every method gets the same ViT-Ti/4 (DEPTH blocks), batch, number of steps,
# multi-crop (2 x 28 + 4 x 12 px), optimiser schedule and seed; then the same
# evaluation: k-NN (DINO protocol, whole train split as bank, test queries) and a
# linear probe (lr/wd chosen on 10% of train, test reported once), on the teacher.
set -euo pipefail
OUT=${1:-runs/compare}
STEPS=${STEPS:-300}; BATCH=${BATCH:-64}; DEPTH=${DEPTH:-4}
PY=${PYTHON:-python}
# Short budgets: warm-ups expressed in epochs are shortened so that they end well
# before the last step (the same for all methods).
# The table in docs/sove.md was measured with the global-norm clipping the recipes had
# then; CLIP=per_tensor gives the recipes' current (reference) clipping.
CLIP=${CLIP:-global}
COMMON=(--config.total_steps="$STEPS" --config.batch_size="$BATCH" --config.model.depth="$DEPTH"
        --config.optim.clip_mode="$CLIP" --config.optim.warmup_epochs=0.05 --config.eval.train_examples=10000 --config.log_every_steps=25
        --config.checkpoint_every_steps=100000)
$PY -m jssl.main --config=configs/dino_vit_tiny_fmnist.py --workdir="$OUT/dino" "${COMMON[@]}" \
    --config.optim.freeze_epochs=0.05
$PY -m jssl.main --config=configs/ibot_vit_tiny_fmnist.py --workdir="$OUT/ibot" "${COMMON[@]}" \
    --config.optim.freeze_epochs=0.05 --config.ibot.warmup_teacher_temp_epochs=0.1
$PY -m jssl.main --config=configs/sove_vit_tiny_fmnist.py --workdir="$OUT/sove" "${COMMON[@]}" \
    --config.sove.warmup_teacher_temp_epochs=0.1
for m in dino ibot sove; do
  $PY -m jssl.evaluate --config=configs/eval/knn.py:"$OUT/$m" --workdir="$OUT/eval_knn_$m" --config.network=teacher
  $PY -m jssl.evaluate --config=configs/eval/linear.py:"$OUT/$m" --workdir="$OUT/eval_linear_$m" --config.network=teacher
done
grep -h "knn_k20_t0.07_cosine\|linear" "$OUT"/eval_*/results.md
