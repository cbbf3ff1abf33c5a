"""Per-leaf accuracy, the best subset of leaves and saliency maps of a TreeNet run (paper 000).

  python -m jssl.evaluate --config=configs/eval/treenet.py:runs/treenet_fmnist --workdir=runs/treenet_fmnist_eval

For the teacher encoder (as the TreeNet recipes' k-NN monitor), reports the k-NN
accuracy of the join's output Z ("pre_logits"; cosine, k = 20, T = 0.07) and, for the
leaf outputs z_j: each leaf's k-NN accuracy, the leaves ranked by accuracy on a
stratified 10% validation split of train (the linear probe's split), and the
concatenation of the s best leaves for s in 1, 2, 4, 8 and all, with s chosen on
validation; test is scored once per leaf and per subset, after every choice
(jssl/evaluators/treenet_eval.py). Writes treenet_saliency_*.png: for the first 8 test
images, |d ||z_j|| / d pixel| of the three best leaves as red, green and blue over the
image. Variants:
`--config.treenet.layers=leaves,leaf_hidden,leaf_pooled` (the layer is chosen on
validation too), `--config.treenet.protocols=knn,linear` (adds the linear probe per
leaf and subset: one grid per leaf, slow on a CPU), `--config.treenet.saliency_leaves=0,5,9`,
`--config.data.max_train_examples=10000` for a quicker CPU run. docs/treenet.md has more.
"""
from jssl.evaluators import eval_config


def get_config(arg=None):
  c = eval_config.base(arg, evals="knn,treenet")
  c.network = "teacher"
  c.knn.ks = (20,)
  c.knn.lightly = False
  return c
