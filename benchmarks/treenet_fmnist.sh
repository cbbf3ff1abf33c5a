#!/usr/bin/env bash
# Equal-budget comparison on Fashion-MNIST: TreeNet (4 and 8 leaves, dense and average
# joins) vs the single CNN with as many parameters as the 8-leaf dense TreeNet.
#
#   bash benchmarks/treenet_fmnist.sh runs/treenet_cmp           # 500 steps x 64 (docs/treenet.md)
#   STEPS=2000 SEED=1 bash benchmarks/treenet_fmnist.sh runs/treenet_cmp_s1
#
# Every model gets configs/treenet_fmnist.py's DINO recipe with the same narrow leaves
# (4-8-16-24-32), dense join 128-128-64, batch, steps, seed, learning rate, warm-up and
# the quickstart's intensity augmentation (brightness/contrast jitter 0.8 on every view,
# solarize on 20% of both). Each run prints the k-NN accuracy of its teacher's join output
# (60,000-image bank) next to raw pixels; then `configs/eval/treenet.py` adds the linear
# probe, each leaf's k-NN and linear probe and the best subset of leaves (bank and probe on the first
# EVAL_TRAIN train images, validation = 10% of them) and, for the 8-leaf dense TreeNet,
# the same evaluation on all 60,000 train images with the saliency grid and a UMAP of
# the test set.
set -euo pipefail
OUT=${1:-runs/treenet_cmp}
STEPS=${STEPS:-500}; BATCH=${BATCH:-64}; SEED=${SEED:-0}; EVAL_TRAIN=${EVAL_TRAIN:-20000}
PY=${PYTHON:-python}
# The width that gives one leaf the 8-leaf dense TreeNet's parameter count (184,736):
#   python -m jssl.models.treenet prints the counts; jssl.models.treenet.matched_width finds it.
CNN_WIDTH=${CNN_WIDTH:-5.08}
COMMON=(--config.seed="$SEED" --config.total_steps="$STEPS" --config.batch_size="$BATCH"
        "--config.model.channels=(4,8,16,24,32)" --config.model.join_hidden_dim=128 --config.model.join_dim=64
        --config.optim.lr=2e-3 --config.optim.warmup_epochs=0.05 --config.optim.freeze_epochs=0.05
        "--config.aug.jitter=(0.8,0.8,0.0,0.0)" --config.aug.jitter_p=1.0 "--config.aug.solarize_p=(0.2,0.2)"
        --config.checkpoint_every_steps=250)
train() {   # name, overrides...
  local name=$1; shift
  $PY -m jssl.main --config=configs/treenet_fmnist.py --workdir="$OUT/$name" "${COMMON[@]}" "$@"
}
train m8_dense --config.model.num_leaves=8 --config.model.join=dense
train cnn --config.model.num_leaves=1 --config.model.join=dense --config.model.width="$CNN_WIDTH"
train m4_dense --config.model.num_leaves=4 --config.model.join=dense
train m4_avg --config.model.num_leaves=4 --config.model.join=average
train m8_avg --config.model.num_leaves=8 --config.model.join=average
for m in m8_dense cnn m4_dense m4_avg m8_avg; do
  $PY -m jssl.evaluate --config=configs/eval/treenet.py:"$OUT/$m" --workdir="$OUT/eval_$m" \
      --config.evals=knn,linear,treenet --config.treenet.protocols=knn,linear --config.treenet.saliency_images=0 --config.data.max_train_examples="$EVAL_TRAIN"
done
$PY -m jssl.evaluate --config=configs/eval/treenet.py:"$OUT/m8_dense" --workdir="$OUT/eval_m8_dense_pictures" \
    --config.evals=knn,linear,treenet,plots --config.plots.method=umap
